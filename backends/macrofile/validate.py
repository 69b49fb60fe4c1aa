"""The macro file's own checks, on top of the shared artefact validator
(`primec.backends.validate`): its errors are `MacroFileError`s, and the ADC and write-verify
settings the manifest tells the chip are the program's target's.
"""

from __future__ import annotations

from typing import Any

from primec.backends.isa import Read
from primec.backends.program import Program
from primec.backends.validate import ADC_RANGES, column_ranges_name
from primec.backends.validate import validate as validate_program

from primec.errors import PrimecError


class MacroFileError(PrimecError):
    """A macro file that is malformed, corrupted or inconsistent."""


def validate(program: Program, where: str) -> None:
    """The shared artefact validator (`primec.backends.validate`), as macro-file errors."""
    validate_program(program, where, MacroFileError)


def check_settings(manifest: dict[str, Any], program: Program, where: str) -> None:
    """The ADC and write-verify settings the chip is told are the target's the program was
    compiled and is simulated for."""
    params = program.meta["target_parameters"]
    expected = {
        "adc": adc_settings(program),
        "write_verify_tolerance_us": params["cells.write_verify_tolerance_us"],
    }
    for key, value in expected.items():
        if manifest.get(key) != value:
            raise MacroFileError(
                f"manifest {key} is {manifest.get(key)!r}, but the program's target says {value!r}",
                where=where,
                hint="recompile the model; the manifest was edited",
            )


def adc_settings(program: Program) -> dict[str, Any]:
    """The ADC settings the chip is told: bits, full scale and read voltage, and the calibrated
    full scale of each read (in schedule order) and of each read's outputs (one list per read)
    when the program has them."""
    params = program.meta["target_parameters"]
    settings = {
        "bits": params["adc.bits"],
        "full_scale_ua": params["adc.full_scale_ua"],
        "read_voltage_v": params["read.voltage_v"],
    }
    if ADC_RANGES in program.tensors:
        settings["read_full_scale_ua"] = [float(v) for v in program.tensors[ADC_RANGES]]
    reads = sum(isinstance(i, Read) for i in program.instrs)
    if reads and column_ranges_name(0) in program.tensors:
        settings["column_full_scale_ua"] = [
            [float(v) for v in program.tensors[column_ranges_name(k)]] for k in range(reads)
        ]
    return settings
