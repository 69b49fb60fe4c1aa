"""The mapping passes hold the interpreter's meaning: after *every* pass, on every zoo model, the
step outputs equal those of the imported graph (spikes exactly; other values to 1e-9 relative,
the only change being the order of float64 sums). The graph is verified before and after each
pass. A near-threshold count says how close any spike came to flipping.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ir_zoo import ZOO, Net, prime_classifier, vgg
from primec.passes import PASSES

from primec.core.interpret import run
from primec.core.ir import Graph
from primec.core.printer import format_value, print_graph
from primec.core.text import parse_graph
from primec.core.verify import VerifyError, verify
from primec.errors import PrimecError
from primec.hardware.mapping import (
    AS_FORMED,
    Slot,
    Tile,
    layer_matrix,
    matrix_index,
    pack,
    placed_tiles,
)
from primec.hardware.target import load_target
from primec.pipeline import PASS_PIPELINE, read_ir

TARGET = load_target("prime-40nm-256k")
RTOL = 1e-9  # float64 summation order only


def spike_outputs(graph: Graph) -> set[str]:
    """Names of the graph outputs that are spikes."""
    return {n.outputs[0].name for n in graph.nodes if n.op == "lif"}


def assert_same(reference: dict, got: dict, spikes: set[str], where: str) -> None:
    """Spikes identical, every other output within RTOL."""
    for name, want in reference.items():
        if name in spikes:
            flips = int(np.count_nonzero(got[name] != want))
            assert flips == 0, f"{where}: {flips} spikes of {name} flipped"
            continue
        np.testing.assert_allclose(
            got[name], want, rtol=RTOL, atol=1e-12, err_msg=f"{where}: {name}"
        )


def check_every_pass(graph: Graph, inputs: dict, target=TARGET) -> Graph:
    """Run the pipeline, verifying and comparing the interpreter after each pass."""
    reference = run(verify(graph), inputs)
    spikes = spike_outputs(graph)
    for name in PASS_PIPELINE:
        graph = verify(PASSES[name](graph, target))
        assert_same(reference, run(graph, inputs), spikes, f"after {name}")
    return graph


@pytest.mark.parametrize("model", [m for m in ZOO if m != "vgg"])
def test_every_pass_keeps_outputs(model: str) -> None:
    zoo = ZOO[model]
    inputs = zoo.inputs(np.random.default_rng(11), 3, 5)
    placed = check_every_pass(zoo.build(), inputs)
    assert placed.meta_value("macros_used") == 1


@pytest.mark.slow
def test_every_pass_keeps_outputs_on_vgg() -> None:
    inputs = ZOO["vgg"].inputs(np.random.default_rng(12), 1, 2)
    placed = check_every_pass(vgg(), inputs)
    assert placed.meta_value("macros_used") > 1


def test_placed_prime_matches_independent_reference() -> None:
    """The placed PRIME classifier against tests/prime_reference.py in float64."""
    import torch
    from prime_reference import effective_weights, load_released, run_prime

    from primec.pipeline import PASS_PIPELINE as passes

    graph = prime_classifier()
    for name in passes:
        graph = PASSES[name](graph, TARGET)
    x = np.random.default_rng(3).integers(0, 3, (2, 10, 2, 34, 34)).astype(np.float64)
    # W * gain * mask in float64 on both sides (the released tensors are float32).
    state = {k: v.double() for k, v in load_released().items()}
    want = run_prime(effective_weights(state), torch.from_numpy(x), torch.float64)
    got = run(graph, {"x": x})
    assert np.array_equal(got["features.lif0.spike_out"], want["spikes0"].numpy())
    assert np.array_equal(got["features.lif1.spike_out"], want["spikes1"].numpy())
    np.testing.assert_allclose(got["readout_mean.mean"], want["readout"].numpy(), rtol=RTOL)


def test_prime_fits_one_array_at_its_lower_bound() -> None:
    graph = prime_classifier()
    for name in PASS_PIPELINE:
        graph = PASSES[name](graph, TARGET)
    from primec.hardware.mapreport import mapping_report

    report = mapping_report(graph, TARGET)
    assert (report["arrays_used"], report["arrays_lower_bound"], report["macros_used"]) == (1, 1, 1)
    assert report["pairs_reset"] == 42840 - 21420
    assert [layer["weights_kept"] for layer in report["layers"]] == [300, 9600, 11520]


def test_placed_tiles_never_overlap_and_stay_inside_arrays() -> None:
    graph = vgg(width=0.5)
    for name in PASS_PIPELINE:
        graph = PASSES[name](graph, TARGET)
    used: dict[tuple[int, int], np.ndarray] = {}
    for node in (n for n in graph.nodes if n.op == "crossbar"):
        for slot, rows, cols in tiles_of(node):
            cells = used.setdefault((slot.macro, slot.array), np.zeros((512, 512), int))
            assert slot.row + rows <= 512 and slot.col + cols <= 512
            cells[slot.row : slot.row + rows, slot.col : slot.col + cols] += 1
    assert max(int(c.max()) for c in used.values()) == 1
    cells = sum(int(c.sum()) for c in used.values())
    assert len(used) <= 1.15 * math.ceil(cells / TARGET.cells_per_array)


def tiles_of(node):
    """(slot, physical rows, physical columns) of each tile of a placed crossbar."""
    for tile in placed_tiles(node):
        yield (
            Slot(tile.macro, tile.array, tile.row, tile.col),
            len(tile.rows),
            2 * len(tile.outputs),
        )


PLACE_IN_A_FRESH_PROCESS = """
import hashlib, sys
sys.path.insert(0, {tests!r})
from ir_zoo import vgg
from primec.core.text import print_graph
from primec.hardware.target import DEFAULT_TARGET, load_target
from primec.passes import PASSES
from primec.pipeline import PASS_PIPELINE, read_ir
graph, target = vgg(width=0.3), load_target(DEFAULT_TARGET)
for name in PASS_PIPELINE:
    graph = PASSES[name](graph, target)
print(hashlib.sha256(print_graph(graph).encode()).hexdigest())
"""


def test_placement_is_deterministic_across_processes() -> None:
    """Two interpreters with different hash seeds (set and dict orders) place identically."""
    script = PLACE_IN_A_FRESH_PROCESS.format(tests=str(Path(__file__).resolve().parent))
    digests = [
        subprocess.run(
            [sys.executable, "-c", script],
            env=os.environ | {"PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    ]
    assert len(digests[0]) == 64 and digests[0] == digests[1]


def test_pool_fold_and_drive_choices_of_prime() -> None:
    graph = prime_classifier()
    for name in PASS_PIPELINE[: PASS_PIPELINE.index("choose-drive") + 1]:
        graph = PASSES[name](graph, TARGET)
    ops = [n.op for n in graph.nodes]
    assert "avg_pool2d" not in ops and ops.count("sum_pool2d") == 2 and "flatten" not in ops
    bars = [n for n in graph.nodes if n.op == "crossbar"]
    assert [(n.attr("drive"), n.attr("planes"), n.attr("input_scale")) for n in bars] == [
        ("bit_serial", 8, 1.0),
        ("bit_serial", 3, 0.25),
        ("bit_serial", 3, 0.25),
    ]


def test_non_power_of_two_pool_stays_and_drives_multi_level() -> None:
    net = Net("pool3")
    x = net.b.input("x", (1, 6, 6))
    s = net.lif("lif", x, keep=0.5, threshold=0.5)
    p = net.b.op("avg_pool2d", s, loc="pool", kernel=(3, 3), stride=(3, 3))
    net.b.output(net.conv(p, net.supermask("conv", (2, 1, 2, 2), 0.1), "conv"))
    graph = net.b.build()
    inputs = {"x": np.random.default_rng(0).integers(0, 2, (2, 3, 1, 6, 6)).astype(float)}
    placed = check_every_pass(graph, inputs)
    bar = next(n for n in placed.nodes if n.op == "crossbar")
    assert "avg_pool2d" in [n.op for n in placed.nodes]
    assert (bar.attr("planes"), bar.attr("input_quantum")) == (4, 1 / 9)


def test_interpreter_refuses_an_input_the_planes_cannot_drive() -> None:
    graph = ZOO["tiny_conv"].build()
    for name in PASS_PIPELINE:
        graph = PASSES[name](graph, TARGET)
    x = np.full((1, 1, 1, 6, 6), 0.5)
    with pytest.raises(PrimecError, match="not an integer multiple"):
        run(graph, {"x": x})


@pytest.mark.parametrize(
    "kind,shape,groups",
    [
        ("conv2d", (4, 3, 2, 3), 1),
        ("conv2d", (4, 2, 3, 3), 2),
        ("conv_transpose2d", (3, 2, 3, 2), 1),
        ("conv_transpose2d", (4, 1, 3, 3), 2),
        ("linear", (5, 7), 1),
    ],
)
def test_matrix_index_agrees_with_layer_matrix(kind, shape, groups) -> None:
    weight = np.arange(1, math.prod(shape) + 1, dtype=np.float64).reshape(shape)
    index = matrix_index(kind, shape, groups)
    by_index = np.where(index >= 0, weight.reshape(-1)[np.maximum(index, 0)], 0)
    assert np.array_equal(layer_matrix(kind, weight, groups), by_index)
    assert np.array_equal(np.sort(index[index >= 0]), np.arange(weight.size))


@pytest.mark.parametrize(
    "op,shape,attrs",
    [
        ("conv2d", (6, 2, 3, 3), {"groups": 2, "padding": (1, 1)}),
        ("conv2d", (3, 4, 2, 2), {"stride": (2, 1), "dilation": (1, 2)}),
        ("conv_transpose2d", (4, 3, 3, 3), {"groups": 2, "stride": (2, 2), "padding": (1, 1)}),
        ("conv_transpose2d", (4, 2, 2, 3), {"dilation": (2, 1), "output_padding": (0, 0)}),
    ],
)
def test_conv_variants_lower_exactly(op, shape, attrs) -> None:
    net = Net("variant")
    x = net.b.input("x", (4, 5, 5))
    net.b.output(net.b.op(op, x, net.plain("layer", shape, 0.5), loc="layer", **attrs))
    graph = net.b.build()
    inputs = {"x": np.random.default_rng(0).integers(0, 4, (2, 2, 4, 5, 5)).astype(float)}
    check_every_pass(graph, inputs)


# ---- property test: small random SNNs on small random targets ------------------------------


@st.composite
def small_snn(draw):
    """A random conv/linear SNN with optional bias, BatchNorm, pools and supermasks."""
    net = Net("random", draw(st.integers(0, 1000)))
    channels, size = draw(st.integers(1, 3)), draw(st.integers(4, 7))
    x = net.b.input("x", (channels, size, size))
    for i in range(draw(st.integers(1, 2))):
        out, pad = draw(st.integers(1, 4)), draw(st.integers(0, 1))
        k = draw(st.integers(1, min(3, size + 2 * pad)))
        w = (
            net.supermask(f"c{i}", (out, channels, k, k), 0.1)
            if draw(st.booleans())
            else net.plain(f"c{i}", (out, channels, k, k), 0.3)
        )
        x = net.conv(x, w, f"c{i}", padding=(pad, pad))
        if draw(st.booleans()):
            x = net.bias(f"c{i}", x, 0.1)
        if draw(st.booleans()):
            x = net.batch_norm(f"bn{i}", x)
        x = net.lif(f"lif{i}", x, keep=0.5, threshold=0.3)
        channels, size = out, x.type.shape[1]
        pool = draw(st.sampled_from(["", "avg_pool2d", "max_pool2d"]))
        if pool and size >= 2:
            x = net.b.op(pool, x, loc=f"pool{i}", kernel=(2, 2), stride=(2, 2))
            size = x.type.shape[1]
    flat = net.b.op("flatten", x, loc="flatten")
    fc = net.b.op("linear", flat, net.supermask("fc", (3, flat.type.size), 0.1), loc="fc")
    net.readout_mean(net.integrator("out", fc, keep=1.0, slope=0.1))
    return net.b.build()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    small_snn(),
    st.integers(1, 4),
    st.sampled_from([2, 4, 6]),
    st.integers(1, 3),
    st.integers(0, 99),
)
def test_random_snns_keep_their_outputs(graph, rows, cols, per_macro, seed) -> None:
    target = dataclasses.replace(
        TARGET,
        array=dataclasses.replace(TARGET.array, rows=rows, cols=cols),
        chip=dataclasses.replace(TARGET.chip, arrays_per_macro=per_macro, macros=10_000),
    )
    shape = graph.step_inputs[0].type.shape
    inputs = {"x": np.random.default_rng(seed).integers(0, 3, (2, 3, *shape)).astype(float)}
    placed = check_every_pass(graph, inputs, target)
    crossbars = [node for node in placed.nodes if node.op == "crossbar"]
    used = {(tile.macro, tile.array) for node in crossbars for tile in placed_tiles(node)}
    assert placed.meta_value("arrays_used") == len(used) >= 1


def placed_golden() -> Graph:
    return read_ir(Path(__file__).parent / "golden" / "lower" / "tiny_conv.in.pir")


def test_tile_records_print_parse_and_decode_once() -> None:
    graph = placed_golden()
    node = next(n for n in graph.nodes if n.op == "crossbar")
    first = node.attr("tiles")[1]
    assert (
        format_value(first) == "tile<rows 8:9, outputs 0:3, macro 2, array 0, at (3, 0), queue 0>"
    )
    assert parse_graph(print_graph(graph), weights=graph_weights(graph)) == graph
    decoded = placed_tiles(node)[1]
    row_map, col_map = node.attr("row_map").array(), node.attr("col_map").array()
    assert (decoded.macro, decoded.array, decoded.row, decoded.col, decoded.queue) == (
        2,
        0,
        3,
        0,
        0,
    )
    np.testing.assert_array_equal(decoded.rows, row_map[8:9])
    np.testing.assert_array_equal(decoded.outputs, col_map[0:3])


@pytest.mark.parametrize(
    "old,new,message",
    [
        ("tile<rows 8:9,", "tile<rows 8:12,", "tile rows 8:12 must lie in \\[0, 9\\]"),
        (
            "outputs 0:3, macro 2, array 0, at (3, 0), queue 0>",
            "outputs 0:3>",
            "placed all together",
        ),
        ("macro 2, array 0, at (3, 0)", "macro 2, array 0, at (-3, 0)", "is negative"),
        ("at (3, 0), queue 0>", "at (3, 0)>", "queued all together"),
        ("tile<rows 8:9,", "tile<rows 7:9,", "tiles hold 30 of the 9 x 3 mapped weights"),
    ],
)
def test_verifier_refuses_broken_tile_records(old: str, new: str, message: str) -> None:
    graph = placed_golden()
    text = print_graph(graph)
    assert old in text
    with pytest.raises(VerifyError, match=message):
        verify(parse_graph(text.replace(old, new, 1), weights=graph_weights(graph)))


def test_a_tile_is_placed_before_it_is_queued() -> None:
    text = print_graph(placed_golden()).replace(
        ", macro 2, array 0, at (3, 0), queue 0>", ", queue 0>"
    )
    with pytest.raises(PrimecError, match="expected 'macro', found 'queue'"):
        parse_graph(text)


def graph_weights(graph: Graph) -> dict:
    return {digest: w.array() for digest, w in graph.weights().items()}


def debug_lines(caplog, pass_name: str, graph: Graph, target=TARGET, choices=None) -> list[str]:
    """The debug log lines one pass writes (what `primec -v` shows)."""
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="primec"):
        PASSES[pass_name](graph, target, *(() if choices is None else (choices,)))
    return [r.getMessage() for r in caplog.records]


def test_lower_crossbar_says_why_a_pool_stays_digital(caplog) -> None:
    net = Net("pool3")
    x = net.b.input("x", (1, 6, 6))
    s = net.lif("lif", x, keep=0.5, threshold=0.5)
    p = net.b.op("avg_pool2d", s, loc="pool", kernel=(3, 3), stride=(3, 3))
    net.b.output(net.conv(p, net.supermask("conv", (2, 1, 2, 2), 0.1), "conv"))
    graph = PASSES["fold-affine"](PASSES["fold-masks"](net.b.build(), TARGET), TARGET)
    (line,) = debug_lines(caplog, "lower-crossbar", graph)
    assert line.endswith(f"average pool %{p.name} stays digital: its 3x3 window's 1/9 is not exact")


def test_tile_says_why_an_as_formed_layer_keeps_its_emptied_rows(caplog) -> None:
    text = HAND_AS_FORMED.replace("[1, 1, 1, 0]", "[1, 1, 0, 0]")  # row 1 emptied
    graph = PASSES["map-pairs"](verify(parse_graph(text)), TARGET)
    (line,) = debug_lines(caplog, "tile", graph)
    assert line == (
        "layer y keeps 1 emptied row(s) and 0 emptied output(s): as formed, its cells are where "
        "the weights already are"
    )
    tiled = PASSES["tile"](graph, TARGET).nodes[0]
    assert tiled.attr("row_map").type.size == 2  # and it does keep them


def test_place_says_why_it_did_not_avoid_stuck_cells(caplog) -> None:
    # Three full-width tiles of 200 + 200 + 112 rows fill one array exactly; a stuck cell in row
    # 0 moves the first down a row, and then the last no longer fits: placement ignores it.
    tiles = [Tile(0, t, rows, 256, AS_FORMED) for t, rows in enumerate((200, 200, 112))]
    stuck = np.zeros((1, 512, 512), dtype=np.int64)
    stuck[0, 0, 0] = 1
    tables = np.zeros((1, 513, 513), dtype=np.int64)
    tables[:, 1:, 1:] = stuck.cumsum(axis=1).cumsum(axis=2)
    with caplog.at_level(logging.DEBUG, logger="primec"):
        layout = pack(tiles, TARGET, tables, limit=1)
    assert layout.arrays_used == 1 and layout.stuck_under_tiles == 1
    assert [r.getMessage() for r in caplog.records] == [
        "stuck cells not avoided: tile 2 of layer 0 then finds no array within 1"
    ]


HAND_AS_FORMED = """graph @hand(%x: f32[1,2]) -> (%y: f32[2,1]) {
  %y = crossbar(%x) {formed = weight<f32[2,2] = [0.5, -0.25, 1.0, 0.0]>, mask = weight<bool[2,2] = [1, 1, 1, 0]>, gain = 1.0, mode = "as_formed", kind = "linear", weight_shape = [2, 2], drive = "binary", planes = 1} : f32[2,1]
  return %y
}
"""
