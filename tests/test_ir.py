"""The IR's text form, verifier and golden files: canonical printing, round trips, diagnostics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from primec.core.builder import GraphBuilder
from primec.core.text import parse_graph, print_graph, read_graph_file, save_graph
from primec.errors import PrimecError
from primec.pipeline import read_ir

GOLDEN = Path(__file__).parent / "golden" / "ir"
VALID = sorted(
    p
    for p in GOLDEN.rglob("*.pir")
    if "errors" not in p.parts and not p.name.endswith(".expected.pir")
)
ERRORS = sorted((GOLDEN / "errors").glob("*.pir"))


def check_golden(actual: str, expected_path: Path, update: bool) -> None:
    """Compare with a golden file, or rewrite it under --update-golden."""
    if update:
        expected_path.write_text(actual)
        return
    assert expected_path.exists(), (
        f"no golden file {expected_path}; run pytest --update-golden and review it"
    )
    assert actual == expected_path.read_text()


def weights_of(graph) -> dict[str, np.ndarray]:
    return {d: w.array() for d, w in graph.weights().items()}


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_golden_canonical_form(path: Path, update_golden: bool) -> None:
    graph = read_ir(path)
    text = print_graph(graph)
    check_golden(text, path.with_suffix(".expected.pir"), update_golden)
    again = parse_graph(text, weights=weights_of(graph))
    assert again == graph
    assert print_graph(again) == text


@pytest.mark.parametrize("path", ERRORS, ids=lambda p: p.stem)
def test_golden_diagnostics(path: Path, update_golden: bool) -> None:
    with pytest.raises(PrimecError) as caught:
        read_ir(path)
    message = str(caught.value).replace(str(GOLDEN), "GOLDEN")
    check_golden(message + "\n", path.with_suffix(".expected.txt"), update_golden)


def test_use_before_def_names_value_and_line() -> None:
    with pytest.raises(PrimecError) as caught:
        read_ir(GOLDEN / "errors" / "use_before_def.pir")
    text = str(caught.value)
    assert "%b is used before it is defined" in text
    assert "use_before_def.pir:2:" in text


def test_syntax_error_has_line_and_column() -> None:
    with pytest.raises(PrimecError) as caught:
        read_ir(GOLDEN / "errors" / "syntax_error.pir")
    assert "syntax_error.pir:2:22" in str(caught.value)


def test_unknown_op_lists_known_ops() -> None:
    with pytest.raises(PrimecError) as caught:
        read_ir(GOLDEN / "errors" / "unknown_op.pir")
    assert "unknown op 'gelu'" in str(caught.value)
    assert "conv2d" in str(caught.value) and "lif" in str(caught.value)


def test_side_file_round_trip_is_byte_identical(tmp_path: Path) -> None:
    graph = read_ir(GOLDEN / "small_conv_snn.pir")
    save_graph(graph, tmp_path / "a.pir")
    loaded, _, _ = read_graph_file(tmp_path / "a.pir")
    assert loaded == graph
    assert all(
        np.array_equal(w.array(), graph.weights()[d].array()) for d, w in loaded.weights().items()
    )
    save_graph(loaded, tmp_path / "b.pir")
    assert (tmp_path / "a.pir").read_bytes() == (tmp_path / "b.pir").read_bytes()
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_corrupted_side_file_is_refused(tmp_path: Path) -> None:
    graph = read_ir(GOLDEN / "small_conv_snn.pir")
    save_graph(graph, tmp_path / "a.pir")
    digest = next(iter(graph.weights()))
    other = np.zeros(graph.weights()[digest].type.shape, dtype=np.float32)
    np.savez(tmp_path / "a.npz", **{digest: other})
    with pytest.raises(PrimecError, match="does not match its content"):
        read_graph_file(tmp_path / "a.pir")


def test_weights_compare_by_content() -> None:
    a = GraphBuilder("g")
    x = a.input("x", (3,))
    a.output(a.op("add", x, a.weight(np.array([1, 2, 3], dtype=np.float32))))
    b = GraphBuilder("g")
    y = b.input("x", (3,))
    b.output(b.op("add", y, b.weight(np.array([1, 2, 3], dtype=np.float32))))
    assert a.build() == b.build()
    c = GraphBuilder("g")
    z = c.input("x", (3,))
    c.output(c.op("add", z, c.weight(np.array([1, 2, 4], dtype=np.float32))))
    assert a.build() != c.build()


# --- property test: random graphs round-trip through the text form -------------------------

UNARY = (
    "leaky_relu",
    "avg_pool2d",
    "max_pool2d",
    "conv2d",
    "add",
    "mul",
    "affine",
    "lif",
    "integrator",
)


@st.composite
def random_graphs(draw: st.DrawFn):
    """Random well-formed step graphs over [C,H,W] values, ending in flatten/linear/readout."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    b = GraphBuilder(draw(st.sampled_from(["g", "net", "snn_1"])))
    channels, size = draw(st.integers(1, 3)), draw(st.integers(4, 7))
    value = b.input("x", (channels, size, size))
    for _ in range(draw(st.integers(1, 6))):
        value = _random_layer(b, draw, rng, value)
    flat = b.op("flatten", value, loc="flatten")
    w = b.weight(rng.normal(size=(3, flat.type.shape[0])).astype(np.float32), loc="fc")
    out = b.op("linear", flat, w, loc="fc")
    if draw(st.booleans()):
        total, count = b.state("sum", (3,)), b.state("count", (1,))
        mean, total_n, count_n = b.op("readout_mean", out, total, count, loc="readout")
        b.set_state(total, total_n)
        b.set_state(count, count_n)
        out = mean
    else:
        acc = b.state("acc", (3,))
        out, acc_n = b.op(
            "readout_exp_tanh", out, acc, decay=draw(st.floats(0.1, 1.0)), loc="readout"
        )
        b.set_state(acc, acc_n)
    b.output(out)
    b.meta["timesteps"] = draw(st.integers(1, 1000))
    b.meta["readout"] = draw(st.sampled_from(["mean", "exp_tanh"]))
    return b.build()


def _random_layer(b: GraphBuilder, draw: st.DrawFn, rng: np.random.Generator, value):
    op = draw(st.sampled_from(UNARY))
    channels, height, _ = value.type.shape
    loc = draw(st.sampled_from(["", "features.conv0", "a.b/c:1"]))
    if op == "leaky_relu":
        return b.op(op, value, slope=draw(st.floats(0.0, 1.0)), loc=loc)
    if op in ("avg_pool2d", "max_pool2d"):
        kernel = draw(st.integers(1, min(2, height)))
        return b.op(op, value, kernel=(kernel, kernel), stride=(1, 1), loc=loc)
    if op == "conv2d":
        out = draw(st.integers(1, 3))
        w = b.weight(rng.normal(size=(out, channels, 3, 3)).astype(np.float32), loc=loc)
        return b.op(op, value, w, padding=(1, 1), loc=loc)
    if op in ("add", "mul"):
        return b.op(
            op, value, b.weight(rng.normal(size=(channels, 1, 1)).astype(np.float32)), loc=loc
        )
    if op == "affine":
        scale = b.weight(rng.normal(size=(channels,)).astype(np.float32))
        return b.op(
            op, value, scale, b.weight(rng.normal(size=(channels,)).astype(np.float32)), loc=loc
        )
    membrane = b.state("u", value.type.shape)
    if op == "integrator":
        new = b.op(op, value, membrane, keep=draw(st.floats(0.0, 1.0)), loc=loc)
        b.set_state(membrane, new)
        return new
    spike = b.state("s", value.type.shape)
    fired, new = b.op(
        op,
        value,
        membrane,
        spike,
        keep=draw(st.floats(0.0, 1.0)),
        threshold=draw(st.floats(0.01, 2.0)),
        strict=draw(st.booleans()),
        reset=draw(st.sampled_from(["zero", "subtract", "none"])),
        reset_timing=draw(st.sampled_from(["before_leak", "after_leak"])),
        slope=draw(st.sampled_from([1.0, 0.1, 0.0])),
        loc=loc,
    )
    b.set_state(membrane, new)
    b.set_state(spike, fired)
    return fired


@settings(max_examples=60, deadline=None)
@given(random_graphs())
def test_random_graphs_round_trip(graph) -> None:
    from primec.core.verify import verify

    verify(graph)
    text = print_graph(graph)
    again = parse_graph(text, weights=weights_of(graph))
    assert again == graph
    assert print_graph(again) == text
