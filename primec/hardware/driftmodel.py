"""The target's drift model as artefacts carry it: the `[drift]` table written into the program's
meta (`drift`) when compiled, and read back, checked, by the validator and the simulator, so an
artefact ages by its own target's parameters even when that target is a file no longer at hand.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from primec.errors import PrimecError
from primec.hardware.target import DriftSpec, Target, parameter_problem

# The drift model counts ln(t / 1 s): an artefact's drift entry says so (`reference_time_s`).
DRIFT_REFERENCE_TIME_S = 1.0


def drift_entry(target: Target) -> dict[str, Any] | None:
    """The target's `[drift]` table as artefacts carry it (meta `drift`): its parameters, the
    time the model's ln t counts from, and the provenance of each parameter; None without one."""
    if target.drift is None:
        return None
    notes = dict(target.provenance)
    fields = dataclasses.fields(DriftSpec)
    return {
        "parameters": {f.name: getattr(target.drift, f.name) for f in fields},
        "reference_time_s": DRIFT_REFERENCE_TIME_S,
        "provenance": {f.name: notes.get(f"drift.{f.name}", "") for f in fields},
        "target": target.name,
    }


def drift_from_entry(entry: Any) -> DriftSpec:
    """The `DriftSpec` of an artefact's drift entry; a `PrimecError` naming the first problem
    (missing or unknown keys, wrong types, NaN, out-of-range values)."""
    if not isinstance(entry, dict) or set(entry) != set(_DRIFT_ENTRY_KEYS):
        raise PrimecError(
            f"the drift entry must be an object with keys {', '.join(_DRIFT_ENTRY_KEYS)}"
        )
    parameters, provenance = entry["parameters"], entry["provenance"]
    fields = {f.name: f for f in dataclasses.fields(DriftSpec)}
    for name, table in (("parameters", parameters), ("provenance", provenance)):
        if not isinstance(table, dict) or set(table) != set(fields):
            raise PrimecError(f"drift {name} must be an object with keys {', '.join(fields)}")
    for name, spec_field in fields.items():
        problem = parameter_problem(spec_field, parameters[name])
        if problem:
            raise PrimecError(f"drift parameter {name} {problem}")
        if not isinstance(provenance[name], str):
            raise PrimecError(f"drift provenance of {name} must be a string")
    if entry["reference_time_s"] != DRIFT_REFERENCE_TIME_S:
        raise PrimecError(
            f"drift reference_time_s must be {DRIFT_REFERENCE_TIME_S} (the model counts ln t "
            f"from 1 s), got {entry['reference_time_s']!r}"
        )
    if not isinstance(entry["target"], str):
        raise PrimecError(f"drift target must be a string, got {entry['target']!r}")
    return DriftSpec(**{name: float(parameters[name]) for name in fields})


_DRIFT_ENTRY_KEYS = ("parameters", "provenance", "reference_time_s", "target")


def drift_meta(target: Target) -> dict[str, Any]:
    """What a compiled program's meta holds of the drift model: `drift` when the target has one."""
    entry = drift_entry(target)
    return {} if entry is None else {"drift": entry}
