"""Lowering placed IR to the instruction IR, golden-tested like a pass: disassembly and cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from primec.backends.lower import lower

from primec.errors import PrimecError
from primec.hardware.target import DEFAULT_TARGET, load_target
from primec.pipeline import read_ir

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
