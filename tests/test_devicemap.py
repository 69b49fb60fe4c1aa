"""Device maps: synthesis, the file format and its checks, binding a model to a chip and the
compile-time check that the model's weights are its cells, stuck-cell avoidance."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from primec.cli import main
from primec.errors import PrimecError
from primec.hardware.choices import resolve_target
from primec.hardware.devicemap import (
    HEALTHY,
    STUCK_HIGH,
    DeviceMap,
    as_formed_layout,
    bind_device_map,
    load,
    save,
    supermask_layers,
    synth,
)
from primec.hardware.target import load_target
from primec.nn import prime_nmnist

TARGET = load_target("prime-40nm-256k")


@pytest.fixture(scope="module")
def chip() -> DeviceMap:
    return synth(TARGET, seed=7, macros=1)


def test_synth_is_reproducible_and_follows_the_target(chip: DeviceMap) -> None:
    again = synth(TARGET, seed=7, macros=1)
    assert np.array_equal(chip.g, again.g) and np.array_equal(chip.fault, again.fault)
    assert not np.array_equal(chip.g, synth(TARGET, seed=8, macros=1).g)
    assert chip.g.shape == (1, 1, 512, 512) and chip.g.dtype == np.float32
    healthy = chip.g[chip.fault == HEALTHY]
    assert abs(float(healthy.mean()) - TARGET.cells.formed_mean_us) < 0.1
    assert abs(float(healthy.std()) - TARGET.cells.formed_std_us) < 0.1
    assert np.all(chip.g[chip.fault == STUCK_HIGH] == TARGET.cells.g_max_us)
    stuck = np.count_nonzero(chip.fault != HEALTHY) / chip.fault.size
    assert 0.0005 < stuck < 0.0015


def test_save_load_round_trip_is_byte_identical(chip: DeviceMap, tmp_path: Path) -> None:
    save(chip, tmp_path / "a.npz")
    save(load(tmp_path / "a.npz", TARGET), tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def write_map(path: Path, **changes) -> Path:
    """A valid one-macro map with some fields replaced (for the bad-input cases)."""
    arrays = {
        "format": np.array("primec-devicemap"),
        "version": np.array(1),
        "target": np.array(TARGET.name),
        "units": np.array("uS"),
        "seed": np.array(0),
        "g": np.full((1, 1, 512, 512), 25.0, np.float32),
        "fault": np.zeros((1, 1, 512, 512), np.int8),
    }
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"g": np.zeros((1, 1, 256, 512), np.float32)}, "needs \\[macros, 1, 512, 512\\]"),
        ({"units": np.array("S")}, "in 'S'; primec expects 'uS'"),
        ({"g": np.full((1, 1, 512, 512), 2.5e-5, np.float32)}, "wrong units"),
        ({"fault": np.zeros((1, 1, 512, 511), np.int8)}, "fault has shape"),
        ({"target": np.array("other-chip")}, "made for target 'other-chip'"),
        ({"g": None}, "missing g"),
        ({"version": np.array(9)}, "version 9"),
        (
            {"g": np.full((1, 1, 512, 512), 150.0, np.float32)},
            "150 uS is above the target.s maximum",
        ),
    ],
)
def test_bad_device_maps_are_refused(tmp_path: Path, changes, message) -> None:
    with pytest.raises(PrimecError, match=message):
        load(write_map(tmp_path / "bad.npz", **changes), TARGET)


def bound_model(chip: DeviceMap) -> torch.nn.Module:
    """A fresh prime-nmnist model whose frozen weights are the chip's cells."""
    model = prime_nmnist(seed=3)
    bound = bind_device_map(model, chip, TARGET)
    assert bound == {"features.conv0": 600, "features.conv1": 19200, "classifier.linear0": 23040}
    return model


def test_bound_weights_are_the_cells_they_are_placed_on(chip: DeviceMap) -> None:
    model = bound_model(chip)
    layers = [layer for layer, _ in supermask_layers(model)]
    layout = as_formed_layout(layers, TARGET, chip)
    (piece,) = layout.pieces[(1, 0)]  # features.conv1 is one tile: rows (c, p, q), outputs o
    slot = piece.slot
    weight = model.features.conv1.weight.detach().numpy()
    g = chip.g[slot.macro, slot.array].astype(np.float64)
    row, out = 3 * 5 + 2, 17  # c=0, p=3, q=2
    expected = g[slot.row + row, slot.col + 2 * out] - g[slot.row + row, slot.col + 2 * out + 1]
    assert weight[out, 0, 3, 2] == np.float32(expected)


def compile_cli(tmp_path: Path, model: torch.nn.Module, chip_path: Path, *extra: str):
    weights = tmp_path / "bound.pt"
    torch.save(model.state_dict(), weights)
    args = ["compile", str(weights), "--arch", "prime-nmnist", "--device-map", str(chip_path)]
    return CliRunner().invoke(main, [*args, *extra])


@pytest.mark.slow
def test_device_map_round_trip_and_one_perturbed_cell(chip: DeviceMap, tmp_path: Path) -> None:
    runner = CliRunner()
    chip_path = tmp_path / "chip.npz"
    synth_args = ["devicemap", "synth", "--seed", "7", "--macros", "1", "-o", str(chip_path)]
    assert runner.invoke(main, synth_args).exit_code == 0
    model = bound_model(load(chip_path, TARGET))
    ok = compile_cli(tmp_path, model, chip_path, "--report", str(tmp_path / "r.json"))
    assert ok.exit_code == 0, ok.output
    # Perturb the cell that holds G+ of conv1's weight [17, 0, 3, 2] (kept or not, see below).
    layers = [layer for layer, _ in supermask_layers(model)]
    (piece,) = as_formed_layout(layers, TARGET, chip).pieces[(1, 0)]
    slot = piece.slot
    kept = model.features.conv1.scores.detach().abs()
    out, c, p, q = np.unravel_index(int(kept.argmax()), kept.shape)
    row, col = slot.row + (c * 5 + p) * 5 + q, slot.col + 2 * out
    perturbed = dataclasses.replace(chip, g=chip.g.copy())
    perturbed.g[slot.macro, slot.array, row, col] += 1.0
    save(perturbed, chip_path)
    output = tmp_path / "placed.pir"
    bad = compile_cli(tmp_path, model, chip_path, "--emit", "ir", "-o", str(output))
    assert bad.exit_code == 2
    assert f"layer features.conv1: weight [{out}, {c}, {p}, {q}]" in bad.output
    assert f"macro 0, array 0, row {row}, columns {col}/{col + 1}" in bad.output
    assert "1 kept weight(s) of this layer differ" in bad.output
    assert not output.exists()


def test_placement_moves_tiles_off_stuck_cells(chip: DeviceMap) -> None:
    layers = [layer for layer, _ in supermask_layers(prime_nmnist())]
    clean = dataclasses.replace(chip, fault=np.zeros_like(chip.fault))
    (first,) = (p.slot for p in as_formed_layout(layers, TARGET, clean).pieces[(1, 0)])
    fault = np.zeros_like(chip.fault)
    fault[first.macro, first.array, first.row + 5, first.col + 7] = STUCK_HIGH
    layout = as_formed_layout(layers, TARGET, dataclasses.replace(chip, fault=fault))
    assert layout.pieces[(1, 0)][0].slot != first
    assert [(m.tile.layer, m.stuck_first, m.stuck_chosen) for m in layout.moves] == [(1, 1, 0)]
    assert layout.stuck_under_tiles == 0


def test_max_macros_and_device_map_limit_the_target(chip: DeviceMap, tmp_path: Path) -> None:
    save(chip, tmp_path / "chip.npz")
    target, choices = resolve_target("prime-40nm-256k", tmp_path / "chip.npz", max_macros=3)
    limit = (choices.macro_limit(target), choices.limit_reason(target))
    assert limit == (1, "the device map's 1 macro(s)")
    target, choices = resolve_target("prime-40nm-256k", None, max_macros=3)
    assert (choices.macro_limit(target), choices.limit_reason(target)) == (3, "--max-macros 3")


def test_a_map_at_float32s_rounding_of_g_max_is_the_target_s_maximum(tmp_path: Path) -> None:
    """Maps hold float32: a cell at g_max of a target whose g_max float32 cannot hold exactly
    (99.9 uS rounds up) is at the maximum, not above it; the artefact validator agrees."""
    target = replace(TARGET, cells=replace(TARGET.cells, g_max_us=99.9))
    assert float(np.float32(99.9)) > 99.9
    g = np.full((1, 1, 512, 512), 25.0, np.float32)
    g[0, 0, 0, 0] = 99.9
    assert load(write_map(tmp_path / "edge.npz", g=g), target).g.max() == np.float32(99.9)
    g[0, 0, 0, 0] = 99.91
    with pytest.raises(PrimecError, match="above the target's maximum"):
        load(write_map(tmp_path / "over.npz", g=g), target)
