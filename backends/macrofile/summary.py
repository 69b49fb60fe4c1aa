"""The macro file's summary: what `primec inspect model.pmac` prints."""

from __future__ import annotations

import json
from pathlib import Path

from primec.backends.isa import Read
from primec.backends.macrofile.codec import read, read_members
from primec.backends.macrofile.pairs import PAIR_CODES, layer_pairs

from primec.hardware.earlyexit import ExitTable


def summary(path: str | Path) -> str:
    """What `primec inspect model.pmac` prints: arrays, pair operations, layers, exit table."""
    program = read(path)
    manifest = json.loads(read_members(Path(path).read_bytes(), str(path))["manifest.json"])
    lines = [
        f"macro file {path}: model {program.name}, target {program.meta['target']} (#{program.meta['target_hash']}), T={program.timesteps}"
    ]
    for array in manifest["arrays"]:
        pairs = array["pairs"]
        lines.append(
            f"  macro {array['macro']} array {array['array']}: keep {pairs['keep']:,}, reset {pairs['reset']:,}, program {pairs['program']:,}, unused {pairs['unused']:,} pairs"
        )
    per_layer = layer_pairs(program)
    for layer in program.meta["layers"]:
        pairs = per_layer.get(layer["value"], dict.fromkeys(PAIR_CODES, 0))
        lines.append(
            f"  layer {layer['layer']}: {layer['kind']} {layer['mode']}, drive {layer['drive']} x{layer['planes']}, quantum {layer['input_quantum']:g}, gain {layer['gain']:g}; "
            f"pairs keep {pairs['keep']:,}, reset {pairs['reset']:,}, program {pairs['program']:,}"
        )
    adc = manifest["adc"]
    lines.append(
        f"  ADC {adc['bits']} bits, full scale {adc['full_scale_ua']:g} uA at {adc['read_voltage_v']:g} V read"
        + calibration_words(adc)
    )
    drift = program.meta.get("drift")
    if drift:
        terms = ", ".join(f"{k} {v:g}" for k, v in drift["parameters"].items())
        lines.append(f"  drift model of {drift['target']}: {terms}")
    table = program.exit_table
    lines.append(f"  early exit: {describe_table(table)}")
    lines.append(
        f"  schedule: {len(program.instrs)} instructions per timestep, {sum(isinstance(i, Read) for i in program.instrs)} tile reads"
    )
    return "\n".join(lines)


def calibration_words(adc: dict) -> str:
    """The calibrated ADC ranges of a manifest's `adc` entry, as a clause (empty without)."""
    tiles = adc.get("read_full_scale_ua", [])
    columns = [v for row in adc.get("column_full_scale_ua", []) for v in row]
    words = ""
    for what, values in (("tile", tiles), ("column", columns)):
        if values:
            words += f"; calibrated per {what} {min(values):.3g}-{max(values):.3g} uA"
    return words


def describe_table(table: ExitTable | None) -> str:
    """An early-exit table in words."""
    if table is None:
        return "none (all T steps)"
    threshold = (
        f"per-step thresholds {', '.join(f'{v:.4g}' for v in table.thresholds)}"
        if table.thresholds
        else f"threshold {table.threshold:.4g}"
    )
    stable = f", stable {table.stable} steps" if table.stable > 1 else ""
    return f"{table.rule}, {threshold}, temperature {table.temperature:g}, min steps {table.min_steps}, max steps {table.max_steps or 'T'}{stable}"
