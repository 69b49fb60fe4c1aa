"""The latent sampler and prime-fsvae through the frontend: PyTorch = onnxruntime = interpreter."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import fsvae_reference as ref  # noqa: E402
import snn_models as zoo  # noqa: E402
from test_fsvae import active_fsvae  # noqa: E402

from primec.core import interpret  # noqa: E402
from primec.core.builder import GraphBuilder  # noqa: E402
from primec.core.ops import ShapeError  # noqa: E402
from primec.core.verify import verify  # noqa: E402
from primec.errors import PrimecError  # noqa: E402
from primec.frontend.from_onnx import import_onnx  # noqa: E402
from primec.nn.fsvae import repeat_input  # noqa: E402
from primec.nn.sampler import sample_latent  # noqa: E402


@pytest.fixture(scope="module")
def exported():
    net = active_fsvae().float()
    images = torch.rand(3, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        record = net.record(repeat_input(images))
    return net, zoo.onnx_of(net), repeat_input(images).numpy(), record


def test_interpreter_sampler_matches_torch_and_the_reference_with_an_offset():
    q = (torch.rand(5, 6 * 7) > 0.5).double()
    step = torch.full((5, 1), 3.0)
    expected, _ = sample_latent(q, step, k=7, seed=11, sample_offset=40)
    attrs = {"k": 7, "seed": 11, interpret.SAMPLE_OFFSET: 40}
    got, step_out = interpret.sample_bernoulli([q.numpy(), step.numpy()], attrs)
    assert np.array_equal(got, expected.numpy()) and np.all(step_out == 4.0)
    assert got[2, 4] == q[2, 4 * 7 + ref.draw(11, 42, 3, 4, 7)]


def test_export_writes_the_sampler_as_a_primec_op_with_a_function_body(exported):
    _, model, _, _ = exported
    onnx.checker.check_model(model, full_check=True)
    ops = [(n.domain, n.op_type) for n in model.graph.node]
    assert ops.count(("primec", "SampleBernoulli")) == 1
    assert ops.count(("", "ConvTranspose")) == 4
    assert "SampleBernoulli" in {f.name for f in model.functions}
    sampler = next(n for n in model.graph.node if n.op_type == "SampleBernoulli")
    assert {a.name: a.i for a in sampler.attribute} == {"k": 20, "seed": 0}


def test_onnxruntime_draws_the_same_latents_and_spikes_as_pytorch(exported):
    _, model, x, record = exported
    out = zoo.run_onnx(model, x)
    assert np.array_equal(out["sampler.z"], record["sampler"].numpy())
    for path in ("encoder.lif0", "posterior.lif1", "decoder.lif2"):
        assert np.array_equal(out[f"{path}.spike_out"], record[path].numpy()), path
    # float32 on both sides, summed in different orders: tanh keeps the error below 1e-6
    assert np.abs(out["readout.y"] - record["readout"].numpy()).max() < 1e-6


def test_interpreter_runs_the_imported_fsvae_like_pytorch(exported):
    _, model, x, record = exported
    graph = import_onnx(model)
    out = interpret.run(graph, {graph.step_inputs[0].name: x})
    assert np.array_equal(out["sampler.z"], record["sampler"].numpy())
    assert np.array_equal(out["decoder.lif2.spike_out"], record["decoder.lif2"].numpy())
    assert np.abs(out["readout.y"] - record["readout"].numpy()).max() < 1e-6
    tail = interpret.run(graph, {graph.step_inputs[0].name: x[1:]}, sample_offset=1)
    assert np.array_equal(tail["sampler.z"], out["sampler.z"][1:])


def _sampler_graph(q_size: int, **attrs):
    b = GraphBuilder("sampler")
    q, step = b.input("q", (q_size,)), b.state("step", (1,))
    z, step_out = b.op("sample_bernoulli", q, step, **attrs)
    b.output(z)
    b.set_state(step, step_out)
    verify(b.build())


@pytest.mark.parametrize(
    "q_size, attrs, message",
    [
        (40, {"k": 20, "seed": 1.5}, "seed"),
        (40, {"k": 20, "seed": -3}, "seed must be in"),
        (41, {"k": 20, "seed": 0}, r"channels\*k"),
        (40, {"k": 0, "seed": 0}, "k must be >= 1"),
    ],
)
def test_bad_sampler_attributes_are_refused(q_size, attrs, message):
    _sampler_graph(40, k=20, seed=7)  # a good one verifies
    with pytest.raises((ShapeError, PrimecError), match=message):
        _sampler_graph(q_size, **attrs)


def test_an_onnx_sampler_seed_that_is_not_an_integer_is_reported(exported):
    _, model, _, _ = exported
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    sampler = next(n for n in broken.graph.node if n.op_type == "SampleBernoulli")
    seed = next(a for a in sampler.attribute if a.name == "seed")
    sampler.attribute.remove(seed)
    sampler.attribute.append(onnx.helper.make_attribute("seed", 0.5))
    with pytest.raises(PrimecError, match="must be an integer"):
        import_onnx(broken)
