"""The applications on top of the compiler: demo, training, plots, inspection, CLI docs."""
