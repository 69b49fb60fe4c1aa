"""Cross-check the target's per-operation energies against an independent component library.

The independent model is CiMLoop/Accelergy's component library, published as the `hwcomponents`
packages (hwcomponents, hwcomponents-adc: Murmann-survey ADC model, hwcomponents-neurosim:
NeuroSim's array periphery, hwcomponents-library: Aladdin/ISAAC digital blocks and wires), asked
at the target's node (40 nm) and bit widths. Each operation class gets the ratio ours / theirs;
agreement is within 25% or the difference is explained in docs/energy.md ("Cross-check").

Those packages need Python >= 3.12 (primec's venv may be older), and the NeuroSim binary in the
hwcomponents-neurosim wheel needs glibc >= 2.38; on older systems build it from the wheel's own
sources (docs/energy.md says how). Run, from the repository root:

    python3.12 bench/energy_crosscheck.py [--target prime-40nm-256k] [--json FILE]

The last run's numbers are in bench/results/energy_crosscheck.json and docs/energy.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WITHIN = 0.25  # agreement the issue asks for, as a relative difference
PACKAGES = ("hwcomponents", "hwcomponents-adc", "hwcomponents-neurosim", "hwcomponents-library")
# Why a class differs from the independent model by more than 25% (docs/energy.md, "Cross-check").
EXPLAINED = {
    "energy.cell_read_pj": "NeuroSim lets a cell conduct only while its column settles (~0.5 ns, "
    "whatever the read pulse); we price the 10 ns read pulse of measured macros. Our low bound "
    "(0.0002 pJ) is NeuroSim's figure",
    "energy.digital_add_pj": "two published 45 nm libraries disagree: Aladdin's 16-bit adder "
    "(0.105 pJ) is Horowitz's 32-bit figure; our high bound (0.11 pJ) covers it",
    "energy.digital_multiply_pj": "Aladdin's 16-bit multiplier (3.17 pJ) is 4.5x Horowitz's "
    "(0.71 pJ at 40 nm) and equals his 32-bit one; our high bound (3.2 pJ) covers it",
    "energy.lif_update_pj": "follows from the multiplies above (4.9 of the 5.1 pJ gap); our high bound "
    "(7 pJ) covers Aladdin's 6.9 pJ",
    "energy.macro_transfer_pj_per_bit": "the library's wire switches every bit (C V^2); we "
    "assume random data toggles half of them (0.5 C V^2), and add no router; high bound 1 pJ",
}
# A NeuroSim cell file for the target's cells (1T1R ReRAM, read in current mode).
CELL = """-MemCellType: memristor
-CellArea (F^2): 100
-CellAspectRatio: 1
-ResistanceOnAtSetVoltage (ohm): {r_on}
-ResistanceOffAtSetVoltage (ohm): {r_off}
-ResistanceOnAtResetVoltage (ohm): {r_on}
-ResistanceOffAtResetVoltage (ohm): {r_off}
-ResistanceOnAtReadVoltage (ohm): {r_on}
-ResistanceOffAtReadVoltage (ohm): {r_off}
-ResistanceOnAtHalfResetVoltage (ohm): {r_on}
-AccessTransistorResistance (ohm): 15000
-CapacitanceOn (F): 1e-16
-CapacitanceOff (F): 1e-16
-ReadMode: current
-ReadVoltage (V): {volts}
-ReadPower (uW): {read_uw}
-ResetMode: voltage
-ResetVoltage (V): 2.0
-ResetPulse (ns): 10
-ResetEnergy (pJ): 0.6
-SetMode: voltage
-SetVoltage (V): 2.0
-SetPulse (ns): 10
-SetEnergy (pJ): 0.6
-AccessType: CMOS
-ReadFloating: false
"""


def independent(params: dict[str, Any], node_m: float) -> dict[str, dict[str, Any]]:
    """Per operation class: the independent model's pJ and how it was asked."""
    import hwcomponents as hwc

    def pj(name: str, attrs: dict[str, Any], action: str) -> float:
        return hwc.get_action_cost(name, attrs, action, {}).energy * 1e12

    read_s = params["read.latency_ns"] * 1e-9
    array = _array_attrs(params, node_m)
    digital = {"tech_node": node_m, "width": 16}
    multiply, add = pj("multiplier", digital, "read"), pj("adder", digital, "add")
    register = pj("register", digital, "read") + pj("register", digital, "write")
    rows = {
        "energy.cell_read_pj": (pj("memorycell", array, "read"), "NeuroSim memory cell, our cell"),
        "energy.row_drive_pj": (pj("arrayrowdrivers", array, "read"), "NeuroSim row drivers"),
        "energy.adc_conversion_pj": (
            pj(
                "adc",
                {"n_bits": params["adc.bits"], "tech_node": node_m, "throughput": 1 / read_s},
                "convert",
            ),
            "hwcomponents-adc (Murmann survey), one conversion per read",
        ),
        "energy.digital_add_pj": (add, "Aladdin 16-bit adder"),
        "energy.digital_multiply_pj": (multiply, "Aladdin 16-bit multiplier"),
        "energy.lif_update_pj": (
            2 * multiply + 3 * add + register,
            "Aladdin: 2 multiplies + 3 adds + 16-bit register read and write",
        ),
        "energy.macro_transfer_pj_per_bit": (
            pj("wire", {"length": 2e-3, "tech_node": node_m, "voltage": 0.9}, "read"),
            "library wire, 2 mm at 0.9 V",
        ),
    }
    return {key: {"theirs_pj": value, "model": how} for key, (value, how) in rows.items()}


def _array_attrs(params: dict[str, Any], node_m: float) -> dict[str, Any]:
    """NeuroSim's array attributes for the target's array and a cell file of its cells."""
    volts = params["read.voltage_v"]
    r_on, r_off = 1e6 / params["cells.formed_mean_us"], 1e6 / params["cells.g_off_us"]
    cell = Path(tempfile.mkdtemp()) / "primec.cell"
    read_uw = volts**2 / r_on * 1e6
    cell.write_text(CELL.format(r_on=r_on, r_off=r_off, volts=volts, read_uw=read_uw))
    return {
        "tech_node": node_m,
        "cycle_period": params["read.latency_ns"] * 1e-9,
        "rows": params["array.rows"],
        "cols": params["array.cols"],
        "cols_active_at_once": params["array.cols"],
        "cell_config": str(cell),
        "average_input_value": 1.0,  # priced per driven row and conducting cell, as primec counts
        "average_cell_value": 0.5,  # half the pairs kept as formed, half reset (PRIME sparsity 0.5)
        "read_pulse_width": 10e-9,
        "adc_resolution": params["adc.bits"],
    }


def adc_sweep(params: dict[str, Any], node_m: float, bits: tuple[int, ...] = (4, 6, 8)) -> list:
    """ADC energy by bits: ours (linear in bits) beside hwcomponents-adc's."""
    import hwcomponents as hwc

    from primec.hardware.costmodel import adc_energy_pj

    rate = 1e9 / params["read.latency_ns"]
    return [
        {
            "bits": b,
            "ours_pj": adc_energy_pj(params, b),
            "theirs_pj": hwc.get_action_cost(
                "adc", {"n_bits": b, "tech_node": node_m, "throughput": rate}, "convert", {}
            ).energy
            * 1e12,
        }
        for b in bits
    ]


def crosscheck(target_name: str) -> dict[str, Any]:
    """The cross-check table for a target: ours, theirs and the ratio per operation class."""
    from primec.hardware.target import load_target

    target = load_target(target_name)
    params = {key: value for key, value, _ in target.parameters()}
    node_m = target.process_nm * 1e-9
    rows = independent(params, node_m)
    for key, row in rows.items():
        row["ours_pj"] = params[key]
        row["ratio"] = params[key] / row["theirs_pj"]
        row["within_25pct"] = abs(row["ratio"] - 1) <= WITHIN
    return {
        "target": target.name,
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "packages": {name: metadata.version(name) for name in PACKAGES},
        "classes": rows,
        "adc_by_bits": adc_sweep(params, node_m),
    }


def markdown_table(result: dict[str, Any]) -> str:
    """The cross-check as the Markdown table docs/energy.md shows."""
    lines = [
        "| class | ours (pJ) | independent (pJ) | ours / theirs | independent model | within 25%? |",
        "|---|---|---|---|---|---|",
    ]
    for key, row in result["classes"].items():
        verdict = "yes" if row["within_25pct"] else f"no: {EXPLAINED.get(key, 'UNEXPLAINED')}"
        lines.append(
            f"| `{key}` | {row['ours_pj']:.4g} | {row['theirs_pj']:.4g} | {row['ratio']:.2f} | {row['model']} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Print the cross-check table and optionally write it as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="prime-40nm-256k")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = crosscheck(args.target)
    print(f"{'class':36} {'ours pJ':>10} {'theirs pJ':>10} {'ratio':>7}  independent model")
    for key, row in result["classes"].items():
        print(
            f"{key:36} {row['ours_pj']:10.4g} {row['theirs_pj']:10.4g} {row['ratio']:7.2f}  {row['model']}"
        )
    for row in result["adc_by_bits"]:
        print(
            f"ADC {row['bits']} bits: ours {row['ours_pj']:.3g} pJ, theirs {row['theirs_pj']:.3g} pJ"
        )
    print()
    print(markdown_table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
