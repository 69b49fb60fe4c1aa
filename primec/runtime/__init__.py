"""The runtime of artefacts: simulation inputs, running an artefact and reporting, exit calibration."""
