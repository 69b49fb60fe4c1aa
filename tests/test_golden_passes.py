"""Golden tests of the mapping passes: tests/golden/passes/<pass>/<case>.in.pir (weights in
<case>.in.npz) is run through <pass> on the small golden target; the result must print exactly as
<case>.out.pir, or, for an error case, fail with exactly the message in <case>.err.txt.

The input files are the source of truth: the builders below only write an input that does not
exist yet, and `pytest --update-golden` rewrites the expected files alone; review the diff before
committing it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from ir_zoo import Net, tiny_conv, tiny_deconv, tiny_mlp
from primec.passes import PASSES

from primec.core.ir import Graph
from primec.core.passmanager import PassManager
from primec.core.text import print_graph, read_graph_file, save_graph
from primec.core.verify import verify
from primec.errors import PrimecError
from primec.hardware.choices import NO_CHOICES, Choices
from primec.hardware.target import Target, load_target
from primec.pipeline import PASS_PIPELINE

GOLDEN = Path(__file__).resolve().parent / "golden" / "passes"
TARGET = load_target(GOLDEN / "small-target.toml")


def before(name: str, graph: Graph, target: Target = TARGET) -> Graph:
    """The graph as pass `name` receives it: every earlier pass of the pipeline applied."""
    for earlier in PASS_PIPELINE[: PASS_PIPELINE.index(name)]:
        graph = PASSES[earlier](graph, target)
    return graph


def weight_from_input() -> Graph:
    net = Net("weight_from_input")
    w = net.b.input("w", (2, 3))
    s = net.b.weight(np.ones((2, 3), np.float32), loc="fc", name="fc.scores")
    masked = net.b.op("supermask", w, s, loc="fc", sparsity=0.5, gain=0.1)
    net.b.output(net.b.op("linear", net.b.input("x", (3,)), masked, loc="fc"))
    return net.b.build()


def batch_norm_of_input() -> Graph:
    net = Net("batch_norm_of_input")
    x = net.b.input("x", (2,))
    mean = net.b.input("mean", (2,))
    ones = net.b.weight(np.ones(2, np.float32), loc="bn", name="bn.weight")
    net.b.output(net.b.op("batch_norm", x, ones, ones, mean, ones, loc="bn"))
    return net.b.build()


def cropping_deconv() -> Graph:
    net = Net("cropping_deconv")
    x = net.b.input("x", (1, 4, 4))
    w = net.plain("deconv", (1, 1, 3, 3), 0.5)
    attrs = {"stride": (2, 2), "padding": (3, 3)}
    net.b.output(net.b.op("conv_transpose2d", x, w, loc="deconv", **attrs))
    return net.b.build()


def conv_of_conv() -> Graph:
    net = Net("conv_of_conv")
    x = net.b.input("x", (1, 4, 4))
    c0 = net.conv(x, net.plain("conv0", (2, 1, 3, 3), 0.5), "conv0")
    net.b.output(
        net.conv(net.bias("conv0", c0, 0.1), net.plain("conv1", (1, 2, 1, 1), 0.5), "conv1")
    )
    return net.b.build()


def oversized_weight() -> Graph:
    net = Net("oversized_weight")
    formed = np.full((2, 3), 5.0, np.float32)
    formed[1, 2] = 500.0
    scores = np.arange(6, dtype=np.float32).reshape(2, 3)
    w = net.supermask("fc", (2, 3), 0.1, 0.5, (formed, scores))
    net.b.output(net.b.op("linear", net.b.input("x", (3,)), w, loc="fc"))
    return net.b.build()


def oversized_layer() -> Graph:
    net = Net("oversized_layer")
    x = net.b.input("x", (64,))
    s = net.lif("lif", x, keep=0.5, threshold=0.5)
    net.b.output(net.b.op("linear", s, net.supermask("fc", (8, 64), 0.1), loc="fc"))
    return net.b.build()


def analog_conv() -> Graph:
    """A padded conv on signed analog pixels (as prime-fsvae's first layer), then a LIF."""
    net = Net("analog_conv", 8)
    net.b.meta.update(timesteps=4, readout="exp_tanh", input_encoding="analog_repeat")
    x = net.b.input("x", (1, 3, 3))
    c = net.conv(x, net.supermask("conv0", (2, 1, 3, 3), 0.05), "conv0", padding=(1, 1))
    net.b.output(net.lif("lif0", c, keep=0.25, threshold=0.2))
    return net.b.build()


ONE_MACRO = Choices(max_macros=1)

# (pass, case) -> (input graph builder, the compile's choices beside the target)
CASES: dict[tuple[str, str], tuple[Callable[[], Graph], Choices]] = {
    ("fold-masks", "tiny_conv"): (lambda: before("fold-masks", tiny_conv()), NO_CHOICES),
    ("fold-masks", "weight_from_input"): (weight_from_input, NO_CHOICES),
    ("fold-affine", "tiny_mlp"): (lambda: before("fold-affine", tiny_mlp()), NO_CHOICES),
    ("fold-affine", "batch_norm_of_input"): (batch_norm_of_input, NO_CHOICES),
    ("lower-crossbar", "tiny_conv"): (lambda: before("lower-crossbar", tiny_conv()), NO_CHOICES),
    ("lower-crossbar", "tiny_deconv"): (
        lambda: before("lower-crossbar", tiny_deconv()),
        NO_CHOICES,
    ),
    ("lower-crossbar", "cropping_deconv"): (cropping_deconv, NO_CHOICES),
    ("dce", "tiny_conv"): (lambda: before("dce", tiny_conv()), NO_CHOICES),
    ("analog-input", "analog_conv"): (lambda: before("analog-input", analog_conv()), NO_CHOICES),
    ("analog-input", "tiny_conv"): (lambda: before("analog-input", tiny_conv()), NO_CHOICES),
    ("choose-drive", "analog_conv"): (lambda: before("choose-drive", analog_conv()), NO_CHOICES),
    ("choose-drive", "tiny_conv"): (lambda: before("choose-drive", tiny_conv()), NO_CHOICES),
    ("choose-drive", "tiny_mlp"): (lambda: before("choose-drive", tiny_mlp()), NO_CHOICES),
    ("choose-drive", "conv_of_conv"): (lambda: before("choose-drive", conv_of_conv()), NO_CHOICES),
    ("map-pairs", "tiny_mlp"): (lambda: before("map-pairs", tiny_mlp()), NO_CHOICES),
    ("map-pairs", "oversized_weight"): (
        lambda: before("map-pairs", oversized_weight()),
        NO_CHOICES,
    ),
    ("tile", "tiny_conv"): (lambda: before("tile", tiny_conv()), NO_CHOICES),
    ("tile", "tiny_mlp"): (lambda: before("tile", tiny_mlp()), NO_CHOICES),
    ("tile", "oversized_layer"): (lambda: before("tile", oversized_layer()), NO_CHOICES),
    ("place", "tiny_conv"): (lambda: before("place", tiny_conv()), NO_CHOICES),
    ("place", "tiny_mlp"): (lambda: before("place", tiny_mlp()), NO_CHOICES),
    ("place", "one_macro"): (lambda: before("place", tiny_conv()), ONE_MACRO),
    ("schedule", "tiny_conv"): (lambda: before("schedule", tiny_conv()), NO_CHOICES),
    ("schedule", "not_placed"): (lambda: before("place", tiny_conv()), NO_CHOICES),
}


def run_case(pass_name: str, graph: Graph, choices: Choices) -> str:
    """The pass's printed result, or its error message."""
    try:
        return print_graph(verify(PASSES[pass_name](verify(graph), TARGET, choices)))
    except PrimecError as exc:
        return f"error: {exc}\n"


@pytest.mark.parametrize("pass_name,case", sorted(CASES), ids=lambda v: v)
def test_golden(pass_name: str, case: str, update_golden: bool) -> None:
    folder = GOLDEN / pass_name
    source = folder / f"{case}.in.pir"
    build, choices = CASES[(pass_name, case)]
    if update_golden and not source.exists():
        save_graph(build(), source)
    graph, _, _ = read_graph_file(source)
    got = run_case(pass_name, graph, choices)
    expected = folder / f"{case}.{'err.txt' if got.startswith('error:') else 'out.pir'}"
    if update_golden:
        expected.write_text(got, encoding="utf-8")
    assert expected.exists(), f"{expected} is missing: run pytest --update-golden and review it"
    assert got == expected.read_text(encoding="utf-8")


def test_every_mapping_pass_has_golden_cases() -> None:
    mapping = PASS_PIPELINE[: PASS_PIPELINE.index("schedule") + 1]
    assert set(mapping) <= {p for p, _ in CASES}


ERROR_CASES = sorted(k for k in CASES if (GOLDEN / k[0] / f"{k[1]}.err.txt").exists())
# Passes that raise nothing: dce removes, analog-input leaves every graph it cannot drive to
# choose-drive (which names the layer), so neither has an error case.
NEVER_FAIL = {"dce", "analog-input"}


def test_every_pass_that_can_fail_has_an_error_case() -> None:
    assert {name for name, _ in ERROR_CASES} == set(PASS_PIPELINE) - NEVER_FAIL


@pytest.mark.parametrize("pass_name,case", ERROR_CASES, ids=lambda v: v)
def test_errors_inside_every_pass_show_the_ir_around_the_node(pass_name: str, case: str) -> None:
    graph, _, _ = read_graph_file(GOLDEN / pass_name / f"{case}.in.pir")
    _, choices = CASES[(pass_name, case)]
    with pytest.raises(PrimecError) as caught:
        PassManager(dict(PASSES), log=lambda _: None).run(graph, [pass_name], TARGET, choices)
    error = caught.value
    assert error.message.startswith(f"pass {pass_name} failed")
    value = re.search(r"-> %(\S+?),", error.where).group(1)
    marked = [line for line in error.context.splitlines() if line.startswith("> ")]
    assert len(marked) == 1 and marked[0].startswith(f">   %{value} = "), error.context
