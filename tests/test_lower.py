"""Lowering placed IR to the instruction IR, golden-tested like a pass: disassembly and cells."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from primec.backends.isa import EndStep, ExitTest
from primec.backends.lower import lower
from primec.backends.program import DebugEntry, Program
from primec.backends.verify import ProgramError, verify_program
from primec.passes import PASSES

from primec.core.ir import Weight
from primec.core.passmanager import PassFailed, PassManager, PassOptions
from primec.core.rewrite import with_attrs
from primec.core.text import parse_graph
from primec.core.verify import verify
from primec.errors import PrimecError
from primec.hardware.choices import Choices
from primec.hardware.devicemap import bind_device_map, synth
from primec.hardware.geometry import PAIR
from primec.hardware.mapping import placed_tiles
from primec.hardware.target import DEFAULT_TARGET, load_target
from primec.nn import prime_nmnist
from primec.pipeline import BackendOptions, ExitOptions, compile_model, read_ir

GOLDEN = Path(__file__).parent / "golden" / "lower"
TARGETS = {"tiny_conv": Path(__file__).parent / "golden" / "passes" / "small-target.toml"}


def target_for(case: str):
    return load_target(TARGETS.get(case, DEFAULT_TARGET))


def listing(program) -> str:
    """The disassembly plus, per array, where the non-off cells are and their sum."""
    lines = [program.disassembly(), ""]
    off = program.meta["target_parameters"]["cells.g_off_us"]
    for (macro, array), cells in sorted(program.arrays.items()):
        rows, cols = np.nonzero(cells != off)
        lines.append(
            f"array m{macro}.a{array}: {rows.size} cells off g_off, rows {rows.min()}..{rows.max()}, "
            f"cols {cols.min()}..{cols.max()}, sum {cells.sum():.6f} uS"
        )
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("case", ["tiny_conv", "small_conv_snn"])
def test_lowering_golden(case: str, update_golden: bool) -> None:
    program = lower(read_ir(GOLDEN / f"{case}.in.pir"), target_for(case))
    actual = listing(program)
    expected = GOLDEN / f"{case}.expected.txt"
    if update_golden:
        expected.write_text(actual)
    assert actual == expected.read_text()


def test_every_tile_holds_its_weights() -> None:
    graph = read_ir(GOLDEN / "small_conv_snn.in.pir")
    program = lower(graph, load_target(DEFAULT_TARGET))
    crossbars = {n.outputs[0].name: n for n in graph.nodes if n.op == "crossbar"}
    for ins, debug in zip(program.instrs, program.debug, strict=True):
        if type(ins).__name__ != "Read":
            continue
        node = crossbars[debug.value]
        rows, cols = program.tensors[ins.rows], program.tensors[ins.cols]
        block = program.arrays[(ins.macro, ins.array)][
            ins.row0 : ins.row0 + len(rows), ins.col0 : ins.col0 + 2 * len(cols)
        ]
        weights = node.attr("formed").array() * node.attr("mask").array()
        scale = node.attr("us_per_unit")
        np.testing.assert_array_equal(
            (block[:, 0::2] - block[:, 1::2]) / scale,
            weights[np.ix_(rows, cols)].astype(np.float64),
        )


def test_unplaced_graph_is_refused() -> None:
    with pytest.raises(PrimecError, match="is not tiled and placed"):
        lower(read_ir(GOLDEN / "not_placed.in.pir"), load_target(DEFAULT_TARGET))


HAND = """graph @hand(%x: f32[1,2]) -> (%y: f32[2,1]) {{
  %y = crossbar(%x) {{formed = weight<f32[2,2] = [0.5, -0.25, 1.0, 0.0]>, mask = weight<bool[2,2] = [1, 1, 1, 0]>, gain = 1.0, mode = "{mode}", kind = "linear", weight_shape = [2, 2], drive = "binary", planes = 1}} : f32[2,1]
  return %y
}}
"""


@pytest.mark.parametrize(
    "mode,scale,g_pos,g_neg",
    [
        # largest |w| = 1 in a window of 100 - 0.5 uS: scale 2^floor(log2 99.5) = 64 uS per unit;
        # G+ = 0.5 + 64 max(w, 0), G- = 0.5 + 64 max(-w, 0); the pruned pair is reset (0.5, 0.5).
        ("programmed", 64.0, [[32.5, 0.5], [64.5, 0.5]], [[0.5, 16.5], [0.5, 0.5]]),
        # as formed: centred on the formed mean 25 uS, G+/- = 25 +/- w/2.
        ("as_formed", 1.0, [[25.25, 24.875], [25.5, 0.5]], [[24.75, 25.125], [24.5, 0.5]]),
    ],
)
def test_map_pairs_decides_the_conductances_by_hand(mode, scale, g_pos, g_neg) -> None:
    graph = verify(parse_graph(HAND.format(mode=mode)))
    (node,) = PASSES["map-pairs"](graph, load_target(DEFAULT_TARGET)).nodes
    assert node.attr("us_per_unit") == scale
    np.testing.assert_array_equal(node.attr("g_pos_us").array(), g_pos)
    np.testing.assert_array_equal(node.attr("g_neg_us").array(), g_neg)


@pytest.mark.parametrize(
    "w,g_pos,g_neg",
    [
        # 25 +/- 30 would put G- at -5 uS: the centre moves up to g_off + |w|/2 = 30.5.
        (60.0, 60.5, 0.5),
        (-60.0, 0.5, 60.5),
        # the widest pair the window holds: one cell at each end.
        (99.5, 100.0, 0.5),
        # 48 still fits around the mean (G- = 1 uS): unchanged.
        (48.0, 49.0, 1.0),
    ],
)
def test_large_as_formed_weights_move_their_pair_centre_into_range(w, g_pos, g_neg) -> None:
    text = HAND.format(mode="as_formed").replace("[0.5, -0.25", f"[{w}, -0.25")
    (node,) = PASSES["map-pairs"](verify(parse_graph(text)), load_target(DEFAULT_TARGET)).nodes
    assert node.attr("g_pos_us").array()[0, 0] == g_pos
    assert node.attr("g_neg_us").array()[0, 0] == g_neg
    assert g_pos - g_neg == w


def test_an_as_formed_weight_far_from_the_mean_compiles(tmp_path) -> None:
    """A 60 uS weight used to fail lowering as an ill-formed program (G- = -5 uS)."""
    (tmp_path / "hand.pir").write_text(
        HAND.format(mode="as_formed").replace("[0.5, -0.25", "[60.0, -0.25")
    )
    compiled = compile_model(
        tmp_path / "hand.pir", log=lambda _: None, backend=BackendOptions(("bytecode", "macro"))
    )
    assert compiled.artefacts["macro"]
    assert compiled.artefacts["bytecode"]
    program = compiled.program
    (ins,) = [i for i in program.instrs if type(i).__name__ == "Read"]
    row = ins.row0 + list(program.tensors[ins.rows]).index(0)
    col = ins.col0 + 2 * list(program.tensors[ins.cols]).index(0)
    g_pos, g_neg = program.arrays[(ins.macro, ins.array)][row, col : col + 2]
    assert (g_pos, g_neg) == (60.5, 0.5)


def test_lower_copies_the_carried_conductances() -> None:
    """Lowering reads each pair's cells from the IR; it derives nothing from the weights."""
    graph = read_ir(GOLDEN / "small_conv_snn.in.pir")
    index, node = next((i, n) for i, n in enumerate(graph.nodes) if n.op == "crossbar")
    tile = placed_tiles(node)[0]
    row, output = int(tile.rows[0]), int(tile.outputs[0])
    g_pos = np.array(node.attr("g_pos_us").array())
    g_pos[row, output] = 42.0
    nodes = list(graph.nodes)
    nodes[index] = with_attrs(node, g_pos_us=Weight.of(g_pos))
    program = lower(graph.replace(nodes=tuple(nodes)), load_target(DEFAULT_TARGET))
    cell = program.arrays[(tile.macro, tile.array)][tile.row, PAIR.column(tile.col, 0)]
    assert cell == 42.0


def test_a_bound_chip_lends_its_measured_cells_to_the_artefact(tmp_path: Path) -> None:
    """As formed on a bound chip, a kept pair is the measured cells it lands on; pruned pairs
    are reset. (Before map-pairs carried the cells, this compile wrote G = 25 -/+ w/2, which
    went negative and could not be encoded.)"""
    target = load_target(DEFAULT_TARGET)
    chip = synth(target, seed=7, macros=1)
    model = prime_nmnist(seed=3)
    bind_device_map(model, chip, target)
    torch.save(model.state_dict(), tmp_path / "bound.pt")
    compiled = compile_model(
        tmp_path / "bound.pt",
        "prime-nmnist",
        target=target,
        log=lambda _: None,
        choices=Choices(device_map=chip),
        backend=BackendOptions(("bytecode",), ExitOptions(threshold=0.8)),
    )
    assert compiled.artefacts["bytecode"]
    crossbars = {n.outputs[0].name: n for n in compiled.graph.nodes if n.op == "crossbar"}
    checked = 0
    for ins, debug in zip(compiled.program.instrs, compiled.program.debug, strict=True):
        if type(ins).__name__ != "Read":
            continue
        mask = crossbars[debug.value].attr("mask").array()
        rows, outputs = compiled.program.tensors[ins.rows], compiled.program.tensors[ins.cols]
        kept = np.repeat(mask[np.ix_(rows, outputs)], 2, axis=1)  # one flag per cell of a pair
        window = np.s_[ins.row0 : ins.row0 + len(rows), ins.col0 : ins.col0 + 2 * len(outputs)]
        measured = chip.g[ins.macro, ins.array][window].astype(np.float64)
        cells = compiled.program.arrays[(ins.macro, ins.array)][window]
        np.testing.assert_array_equal(cells, np.where(kept, measured, target.cells.g_off_us))
        checked += int(kept.sum())
    assert checked > 1000


def golden_program():
    return lower(read_ir(GOLDEN / "small_conv_snn.in.pir"), load_target(DEFAULT_TARGET))


def first_read(program) -> int:
    return next(i for i, ins in enumerate(program.instrs) if type(ins).__name__ == "Read")


def broken(program, index: int, instr=None, debug=None):
    """The program with instruction `index` (or its debug entry) replaced."""
    instrs, entries = list(program.instrs), list(program.debug)
    instrs[index] = instr or instrs[index]
    entries[index] = debug or entries[index]
    return dataclasses.replace(program, instrs=tuple(instrs), debug=tuple(entries))


def test_lowered_programs_verify() -> None:
    program = golden_program()
    assert verify_program(program) is program


def test_verifier_shows_the_instruction_and_its_ir_node() -> None:
    program = golden_program()
    index = first_read(program)
    read = program.instrs[index]
    bad = broken(program, index, dataclasses.replace(read, planes=0))
    with pytest.raises(ProgramError) as caught:
        verify_program(bad, "after pass lower")
    error = caught.value
    assert "needs 1..32 bit planes" in error.message
    entry = program.debug[index]
    assert error.where == (
        f"after pass lower: instruction {index} (from %{entry.value} = crossbar, loc {entry.loc})"
    )
    marked = next(line for line in error.context.splitlines() if line.startswith("> "))
    assert marked.startswith(f">  {index:3d}  read") and f"// %{entry.value} = crossbar" in marked


@pytest.mark.parametrize(
    "change,message",
    [
        ("no debug", "has no debug entry to its IR node"),
        ("end early", "ends the step before its last"),
        ("exit elsewhere", "exit_test reads buffer"),
        ("unknown buffer", "names buffer 9999"),
        ("off the array", "fall outside the 512 x 512 array"),
    ],
)
def test_verifier_refuses_hand_broken_programs(change: str, message: str) -> None:
    program = golden_program()
    index, last = first_read(program), len(program.instrs) - 2
    read = program.instrs[index]
    cases = {
        "no debug": lambda: broken(program, index, debug=DebugEntry("", "crossbar", "")),
        "end early": lambda: broken(program, index, EndStep()),
        "exit elsewhere": lambda: broken(program, last, ExitTest(program.readout + 1)),
        "unknown buffer": lambda: broken(program, index, dataclasses.replace(read, src=9999)),
        "off the array": lambda: broken(program, index, dataclasses.replace(read, row0=510)),
    }
    with pytest.raises(ProgramError, match=message):
        verify_program(cases[change]())


def test_pass_manager_verifies_the_instruction_ir_after_a_backend_stage() -> None:
    program = golden_program()
    bad = broken(program, first_read(program), EndStep())
    manager = PassManager(
        {"lower": lambda graph, target, choices: bad}, verifiers={Program: verify_program}
    )
    with pytest.raises(PassFailed, match="pass lower produced an ill-formed program"):
        manager.run(read_ir(GOLDEN / "small_conv_snn.in.pir"), ["lower"])
    unchecked = PassManager(
        {"lower": lambda graph, target, choices: bad},
        PassOptions(verify=False),
        verifiers={Program: verify_program},
    )
    assert unchecked.run(None, ["lower"]).value is bad
