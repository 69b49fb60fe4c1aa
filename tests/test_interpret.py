"""The reference interpreter against independent references: PyTorch and hand-computed values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from primec.core.interpret import run, supermask_keep
from primec.pipeline import read_ir

GOLDEN = Path(__file__).parent / "golden" / "ir"


def weight(graph, name: str) -> torch.Tensor:
    node = next(n for n in graph.nodes if n.outputs[0].name == name)
    return torch.from_numpy(node.attr("value").array().astype(np.float64))


def run_once(path: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a stateless golden graph for one step; return its outputs without the time axis."""
    graph = read_ir(GOLDEN / "ops" / path)
    out = run(graph, {k: v[:, None] for k, v in feeds.items()})
    return {k: v[:, 0] for k, v in out.items()}, graph


def test_conv2d_matches_torch() -> None:
    x = np.random.default_rng(0).normal(size=(3, 2, 5, 5))
    out, graph = run_once("conv2d.pir", {"x": x})
    expected = F.conv2d(torch.from_numpy(x), weight(graph, "w"), stride=2, padding=1, groups=2)
    np.testing.assert_allclose(out["y"], expected.numpy(), rtol=0, atol=1e-12)


def test_conv_transpose2d_matches_torch() -> None:
    x = np.random.default_rng(1).normal(size=(2, 1, 3, 3))
    out, graph = run_once("conv_transpose2d.pir", {"x": x})
    expected = F.conv_transpose2d(
        torch.from_numpy(x), weight(graph, "w"), stride=2, padding=1, output_padding=1
    )
    np.testing.assert_allclose(out["y"], expected.numpy(), rtol=0, atol=1e-12)


def test_linear_by_hand() -> None:
    out, _ = run_once("linear.pir", {"x": np.array([[1.0, 2.0, 3.0]])})
    np.testing.assert_array_equal(out["y"], [[14.0, 0.0]])


def test_add_mul_by_hand() -> None:
    x = np.arange(8.0).reshape(1, 2, 2, 2)
    out, _ = run_once("add_mul.pir", {"x": x})
    bias = np.array([0.5, -1.0]).reshape(1, 2, 1, 1)
    np.testing.assert_array_equal(out["y"], (x + bias) ** 2)


def test_affine_by_hand() -> None:
    out, _ = run_once("affine.pir", {"x": np.array([[[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]])})
    np.testing.assert_array_equal(out["y"], [[[2.25, 4.25, 6.25], [0.5, 0.0, -0.5]]])


def test_batch_norm_matches_torch() -> None:
    x = np.random.default_rng(2).normal(size=(3, 4, 2, 2))
    out, graph = run_once("batch_norm.pir", {"x": x})
    w = {n: weight(graph, n) for n in ("gamma", "beta", "mean", "var")}
    expected = F.batch_norm(
        torch.from_numpy(x), w["mean"], w["var"], w["gamma"], w["beta"], eps=0.001
    )
    np.testing.assert_allclose(out["y"], expected.numpy(), rtol=0, atol=1e-12)


def test_pools_match_torch() -> None:
    x = np.random.default_rng(3).normal(size=(2, 2, 5, 5))
    out, _ = run_once("pools.pir", {"x": x})
    tx = torch.from_numpy(x)
    np.testing.assert_allclose(out["a"], F.avg_pool2d(tx, 2, 2).numpy(), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(out["m"], F.max_pool2d(tx, 3, 2, padding=1).numpy())


def test_shape_ops_and_leaky_relu() -> None:
    x = np.random.default_rng(4).normal(size=(2, 2, 3, 4))
    out, _ = run_once("shape_ops.pir", {"x": x})
    np.testing.assert_array_equal(out["r"], x.reshape(2, 4, 6))
    np.testing.assert_array_equal(
        out["l"], F.leaky_relu(torch.from_numpy(x.reshape(2, -1)), 0.1).numpy()
    )


def test_supermask_by_hand() -> None:
    # |scores| sorted: .05 .1 .2 .3 .6 .7 .8 .9; n=8, k = 1 + round(3.5) = 5 -> keep |s| >= 0.6.
    out, _ = run_once("supermask.pir", {"x": np.array([[1.0, 1.0, 1.0, 1.0]])})
    kept = np.array([[6.0, 0.0, 0.0, 8.0], [0.0, 4.0, 0.0, -7.0]]) * 0.01
    np.testing.assert_allclose(out["y"], [kept.sum(axis=1)], rtol=0, atol=1e-15)


@pytest.mark.parametrize(("n", "kept"), [(600, 300), (19200, 9600), (23040, 11520), (7, 4)])
def test_supermask_keeps_half(n: int, kept: int) -> None:
    scores = np.random.default_rng(n).normal(size=n)
    assert supermask_keep(scores, 0.5).sum() == kept


def test_neuron_variants_by_hand() -> None:
    graph = read_ir(GOLDEN / "ops" / "neurons.pir")
    currents = np.array([[[0.6, 0.2, -1.0], [0.6, 0.0, 0.5], [0.0, 0.3, 0.5]]])  # [B=1, T=3, 3]
    out = run(graph, {"i": currents}, trace=True)
    # snnTorch Leaky, keep .9, subtract after leak, threshold 1: u1 = .6, .54+.6=1.14 (spike), .9*1.14-1+0 = .026
    np.testing.assert_allclose(out["u1.n"][0, :, 0], [0.6, 1.14, 0.026], atol=1e-12)
    np.testing.assert_array_equal(out["s1.n"][0, :, 0], [0.0, 1.0, 0.0])
    # FSVAE-style, keep .25, zero reset before leak, threshold .2 non-strict: u2[1] = .2 >= .2 spikes.
    np.testing.assert_allclose(
        out["u2.n"][0, :, 1], [0.2, 0.0, 0.3], atol=1e-12
    )  # reset to 0 after the spike
    np.testing.assert_array_equal(out["s2.n"][0, :, 1], [1.0, 0.0, 1.0])
    # Integrator keep .5 and the exponential readout with decay .8, tanh.
    u3 = np.array([-1.0, -0.5 + 0.5, 0.5])
    acc = np.array([-1.0, -0.8 + 0.0, -0.64 + 0.5])
    np.testing.assert_allclose(out["u3.n"][0, :, 2], u3, atol=1e-12)
    np.testing.assert_allclose(out["y"][0, :, 2], np.tanh(acc), atol=1e-12)


class SmallConvSNN(torch.nn.Module):
    """The small conv SNN of small_conv_snn.pir, written directly in PyTorch from PRIME.md."""

    def __init__(self, w0: torch.Tensor, w1: torch.Tensor) -> None:
        super().__init__()
        self.w0, self.w1 = w0, w1

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        batch, steps = x.shape[:2]
        u = torch.zeros(batch, 2, 4, 4, dtype=x.dtype)
        s = torch.zeros_like(u)
        out = torch.zeros(batch, 3, dtype=x.dtype)
        spikes, outs = [], []
        for t in range(steps):
            u = u * (1 - s) * 0.2 + F.conv2d(x[:, t], self.w0, padding=1)
            u = F.leaky_relu(u, 0.1)
            s = (u > 0.2).to(x.dtype)
            y = F.linear(F.avg_pool2d(s, 2).flatten(1), self.w1)
            out = F.leaky_relu(out + y, 0.1)
            spikes.append(s)
            outs.append(out)
        outs_t = torch.stack(outs, 1)
        steps_so_far = torch.arange(1, steps + 1, dtype=x.dtype).reshape(1, -1, 1)
        return {
            "spikes": torch.stack(spikes, 1),
            "out": outs_t,
            "mean": outs_t.cumsum(1) / steps_so_far,
        }


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_small_conv_snn_matches_pytorch(dtype: torch.dtype) -> None:
    graph = read_ir(GOLDEN / "small_conv_snn.pir")
    x = np.random.default_rng(5).poisson(0.7, size=(16, 10, 1, 4, 4)).astype(np.float32)
    ours = run(graph, {"x": x}, trace=True)
    model = SmallConvSNN(weight(graph, "w0").to(dtype), weight(graph, "w1").to(dtype))
    ref = {k: v.double().numpy() for k, v in model(torch.from_numpy(x).to(dtype)).items()}
    # Weights and inputs are exact in binary, so float32 and float64 agree to the last spike here.
    np.testing.assert_array_equal(ours["s0.next"], ref["spikes"])
    assert ref["spikes"].sum() > 0 and (1 - ref["spikes"]).sum() > 0
    np.testing.assert_allclose(ours["uo.next"], ref["out"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours["mean"], ref["mean"], rtol=0, atol=1e-5)


def test_random_weights_small_conv_snn_matches_float64_pytorch() -> None:
    rng = np.random.default_rng(6)
    graph = read_ir(GOLDEN / "small_conv_snn.pir")
    w0, w1 = rng.normal(0, 0.5, size=(2, 1, 3, 3)), rng.normal(0, 0.5, size=(3, 8))
    from primec.core.ir import Weight

    swap = {"w0": w0.astype(np.float32), "w1": w1.astype(np.float32)}
    nodes = tuple(
        n.__class__(
            n.op, n.inputs, n.outputs, (("value", Weight.of(swap[n.outputs[0].name])),), n.loc
        )
        if n.op == "weight"
        else n
        for n in graph.nodes
    )
    graph = graph.replace(nodes=nodes)
    x = rng.poisson(0.7, size=(32, 20, 1, 4, 4)).astype(np.float32)
    ours = run(graph, {"x": x}, trace=True)
    model = SmallConvSNN(*(torch.from_numpy(swap[k].astype(np.float64)) for k in ("w0", "w1")))
    ref = {k: v.numpy() for k, v in model(torch.from_numpy(x).double()).items()}
    np.testing.assert_array_equal(ours["s0.next"], ref["spikes"])
    np.testing.assert_allclose(ours["mean"], ref["mean"], rtol=0, atol=1e-9)
