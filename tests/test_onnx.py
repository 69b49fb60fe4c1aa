"""The ONNX step graph: primec-domain ops with function bodies that onnxruntime runs, time-loop
facts in the metadata, module paths on every node, size independent of T, and an importer that
lists every problem at once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto
from onnx import helper as oh

sys.path.insert(0, str(Path(__file__).parent))
import snn_models as zoo  # noqa: E402

from primec import frontend as fe  # noqa: E402
from primec import nn as pnn  # noqa: E402
from primec.cli import main  # noqa: E402
from primec.errors import PrimecError  # noqa: E402
from primec.frontend import convention as cv  # noqa: E402
from primec.frontend.problems import Problem  # noqa: E402


@pytest.fixture(scope="module")
def released() -> pnn.SNN:
    net = pnn.prime_nmnist()
    net.load_state_dict(torch.load(pnn.RELEASED_WEIGHTS, weights_only=True, map_location="cpu"))
    return net.eval()


@pytest.fixture(scope="module")
def released_onnx(released) -> onnx.ModelProto:
    return zoo.onnx_of(released)


def _meta(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _node_loc(node: onnx.NodeProto) -> str:
    return next(p.value for p in node.metadata_props if p.key == cv.NODE_LOC)


def test_export_writes_neurons_as_primec_ops_with_function_bodies(released_onnx):
    onnx.checker.check_model(released_onnx, full_check=True)
    ops = [(n.domain, n.op_type) for n in released_onnx.graph.node]
    assert ops.count(("primec", "Supermask")) == 3
    assert ops.count(("primec", "LIF")) == 2
    assert ops.count(("primec", "Integrator")) == 1
    assert ops.count(("primec", "ReadoutMean")) == 1
    functions = sorted(f.name for f in released_onnx.functions)
    assert functions == ["Integrator", "LIF", "ReadoutMean", "Supermask"]
    lif = next(n for n in released_onnx.graph.node if n.op_type == "LIF")
    attrs = {a.name: oh.get_attribute_value(a) for a in lif.attribute}
    assert attrs["reset"] == b"zero" and attrs["reset_timing"] == b"before_leak"
    assert attrs["strict"] == 1 and np.float32(attrs["keep"]) == np.float32(0.2)


def test_export_records_time_loop_facts_and_module_paths(released_onnx):
    meta = _meta(released_onnx)
    assert meta[cv.META_TIMESTEPS] == "10"
    assert meta[cv.META_READOUT] == "mean"
    assert meta[cv.META_ENCODING] == "event_counts"
    pairs = json.loads(meta[cv.META_STATES])
    assert pairs[0] == ["features.lif0.membrane", "features.lif0.membrane_out"]
    assert [i.name for i in released_onnx.graph.input][1:] == [i for i, _ in pairs]
    locs = {_node_loc(n) for n in released_onnx.graph.node}
    assert locs == {
        "features.conv0",
        "features.lif0",
        "features.pool0",
        "features.conv1",
        "features.lif1",
        "features.pool1",
        "classifier.flatten",
        "classifier.linear0",
        "classifier.out",
        "readout",
    }


def _near_threshold_flips(
    got: np.ndarray, want: np.ndarray, membrane: np.ndarray, threshold: float
) -> tuple[int, int]:
    """(spike differences, of which how many are not explained by a membrane at the threshold)."""
    differ = got != want
    unexplained = differ & (np.abs(membrane - threshold) > 1e-5)
    return int(differ.sum()), int(unexplained.sum())


def _torch_float32(net: pnn.SNN, x: torch.Tensor) -> dict[str, np.ndarray]:
    with torch.no_grad():
        return {k: v.numpy() for k, v in net.float().record(x).items()}


@pytest.mark.parametrize("name", ["prime_nmnist", *sorted(zoo.ZOO)])
def test_onnxruntime_running_the_step_in_a_loop_agrees_with_pytorch(name, released):
    net = released if name == "prime_nmnist" else zoo.ZOO[name]().eval()
    x = zoo.example_input(net, batch=4)
    ran = zoo.run_onnx(zoo.onnx_of(net), x.numpy())
    want = _torch_float32(net, x)
    total = 0
    for path, neuron in net.stateful():
        if not isinstance(neuron, pnn.LIF):
            continue
        flips, unexplained = _near_threshold_flips(
            ran[f"{path}.spike_out"], want[path], ran[f"{path}.membrane_out"], neuron.threshold
        )
        print(f"{name} {path}: {flips} float32 spike flips between onnxruntime and PyTorch")
        assert unexplained == 0
        total += flips
    output = next(o.name for o in zoo.onnx_of(net).graph.output)
    if total == 0:  # a flipped spike changes everything downstream of it: reported above
        np.testing.assert_allclose(ran[output], want["readout"], rtol=0, atol=1e-5)


def test_export_does_not_grow_with_timesteps(released):
    short, long = pnn.prime_nmnist(), pnn.prime_nmnist()
    short.load_state_dict(released.state_dict())
    long.load_state_dict(released.state_dict())
    short.timesteps, long.timesteps = 10, 1000
    a, b = zoo.onnx_of(short), zoo.onnx_of(long)
    assert _meta(a)[cv.META_TIMESTEPS] == "10" and _meta(b)[cv.META_TIMESTEPS] == "1000"
    assert len(a.graph.node) == len(b.graph.node)
    for model in (a, b):
        del model.metadata_props[:]
    assert a.SerializeToString() == b.SerializeToString()
    graph_a, graph_b = fe.import_onnx(zoo.onnx_of(short)), fe.import_onnx(zoo.onnx_of(long))
    assert len(graph_a.nodes) == len(graph_b.nodes)
    assert graph_a.replace(meta=()) == graph_b.replace(meta=())


def _single_op_model(op: str, inputs: dict[str, tuple], outputs: tuple[str, ...], **attrs):
    spec = cv.PRIMEC_OPS[op]
    node = oh.make_node(op, list(spec.inputs), list(spec.outputs), domain=cv.DOMAIN, **attrs)
    graph = oh.make_graph(
        [node],
        op,
        [oh.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [oh.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
    )
    return oh.make_model(
        graph,
        opset_imports=cv.opset_imports(),
        functions=[cv.function(op)],
        ir_version=cv.IR_VERSION,
    )


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


@pytest.mark.parametrize("name", sorted(zoo.LIF_VARIANTS))
def test_lif_function_body_matches_pytorch_bit_for_bit(name):
    neuron = zoo.LIF_VARIANTS[name].float()
    generator = torch.Generator().manual_seed(1)
    current, membrane = (torch.randn(2, 64, generator=generator) * 0.5).unbind(0)
    spike = (torch.rand(64, generator=generator) < 0.4).float()
    attrs = _attrs_of(neuron)
    model = _single_op_model(
        "LIF",
        {n: [64] for n in ("current", "membrane", "spike")},
        ("spike_out", "membrane_out"),
        **attrs,
    )
    got_spike, got_membrane = _ort(
        model, {"current": current.numpy(), "membrane": membrane.numpy(), "spike": spike.numpy()}
    )
    want_spike, (want_membrane, _) = neuron(current, membrane, spike)
    assert np.array_equal(got_membrane, want_membrane.numpy())
    assert np.array_equal(got_spike, want_spike.numpy())


def _attrs_of(neuron: pnn.LIF) -> dict:
    return {
        "keep": neuron.keep,
        "threshold": neuron.threshold,
        "strict": int(neuron.strict),
        "reset": neuron.reset,
        "reset_timing": neuron.reset_timing,
        "slope": neuron.slope,
    }


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9])
def test_supermask_function_body_keeps_the_same_synapses(sparsity):
    generator = torch.Generator().manual_seed(2)
    weight = torch.randn(7, 9, generator=generator)
    scores = torch.round(torch.randn(7, 9, generator=generator), decimals=1)  # with ties
    model = _single_op_model(
        "Supermask", {"weight": [7, 9], "scores": [7, 9]}, ("y",), sparsity=sparsity, gain=0.01
    )
    (got,) = _ort(model, {"weight": weight.numpy(), "scores": scores.numpy()})
    want = torch.ops.primec.supermask(weight, scores, sparsity, 0.01)
    assert np.array_equal(got, want.numpy())


def test_readout_function_bodies_match_pytorch():
    x, total = torch.randn(2, 3, 4, 5).unbind(0)
    count = torch.full((3, 1), 2.0)
    model = _single_op_model(
        "ReadoutMean",
        {"x": [3, 4, 5], "sum": [3, 4, 5], "count": [3, 1]},
        ("mean", "sum_out", "count_out"),
    )
    got = _ort(model, {"x": x.numpy(), "sum": total.numpy(), "count": count.numpy()})
    for a, b in zip(got, torch.ops.primec.readout_mean(x, total, count), strict=True):
        assert np.array_equal(a, b.numpy())
    model = _single_op_model(
        "ReadoutExpTanh", {"x": [3, 5], "acc": [3, 5]}, ("y", "acc_out"), decay=0.8
    )
    got = _ort(model, {"x": x[:, 0].numpy(), "acc": total[:, 0].numpy()})
    want = torch.ops.primec.readout_exp_tanh(x[:, 0], total[:, 0], 0.8)
    np.testing.assert_allclose(got[0], want[0].numpy(), atol=1e-6)
    assert np.array_equal(got[1], want[1].numpy())


def test_float32_attributes_import_as_the_decimal_they_stand_for(released_onnx):
    graph = fe.import_onnx(released_onnx)
    lif = next(n for n in graph.nodes if n.op == "lif")
    assert lif.attr("threshold") == 0.2 and lif.attr("keep") == 0.2 and lif.attr("slope") == 0.1
    assert next(n for n in graph.nodes if n.op == "supermask").attr("gain") == 0.01


def test_every_imported_node_carries_its_module_path(released_onnx):
    graph = fe.import_onnx(released_onnx)
    assert all(node.loc.path for node in graph.nodes)
    assert {n.loc.path for n in graph.nodes if n.op == "lif"} == {"features.lif0", "features.lif1"}


def _foreign_model() -> onnx.ModelProto:
    """An ONNX file from elsewhere: plain-op neuron, training-mode layers, a sigmoid, no metadata."""
    c = 4
    init = [
        oh.make_tensor("w", TensorProto.FLOAT, [c, 2, 3, 3], np.ones(c * 18).tolist()),
        oh.make_tensor("ratio", TensorProto.FLOAT, [], [0.5]),
        oh.make_tensor("train", TensorProto.BOOL, [], [True]),
        oh.make_tensor("thr", TensorProto.FLOAT, [], [0.2]),
        *[
            oh.make_tensor(n, TensorProto.FLOAT, [c], np.ones(c).tolist())
            for n in ("g", "b", "m", "v")
        ],
    ]
    nodes = [
        oh.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3]),
        oh.make_node(
            "BatchNormalization",
            ["c", "g", "b", "m", "v"],
            ["n", "rm", "rv"],
            name="bn",
            training_mode=1,
        ),
        oh.make_node("Dropout", ["n", "ratio", "train"], ["d"], name="drop"),
        oh.make_node("Sigmoid", ["d"], ["s"], name="act"),
        oh.make_node("Greater", ["s", "thr"], ["spk"], name="fire"),
        oh.make_node("Sqrt", ["v"], ["sd"], name="unfolded_bn"),
    ]
    graph = oh.make_graph(
        nodes,
        "foreign",
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 8, 8])],
        [oh.make_tensor_value_info("spk", TensorProto.BOOL, None)],
        init,
    )
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])


def test_import_lists_every_unsupported_op_at_once():
    with pytest.raises(PrimecError) as caught:
        fe.import_onnx(_foreign_model(), source="foreign.onnx")
    message = str(caught.value)
    for expected in (
        "bn: BatchNorm in training mode; fix: call model.eval()",
        "drop: dropout in training mode; fix: call model.eval()",
        "act: unsupported op Sigmoid",
        "fire: unsupported op Greater; fix: a neuron written with plain ops",
        "unfolded_bn: unsupported op Sqrt; fix: looks like an unfolded BatchNorm",
        "primec.states",
        "primec.timesteps",
    ):
        assert expected in message
    assert message.count("\n  - ") == 9


def test_check_command_lists_all_problems_and_exits_non_zero(tmp_path):
    path = tmp_path / "foreign.onnx"
    onnx.save(_foreign_model(), path)
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 2
    assert result.output.count("error:") == 1
    assert (
        "Sigmoid" in result.output
        and "Greater" in result.output
        and "training mode" in result.output
    )


def test_problem_lines_name_location_node_and_fix():
    line = Problem("unsupported op Sigmoid", "act_1", "features.act", "replace it").line()
    assert line == "  - features.act (node act_1): unsupported op Sigmoid; fix: replace it"
