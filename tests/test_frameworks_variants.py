"""The LIF variants the framework models need (reset target v_reset, leak target v_leak, input
gain, the after_input reset timing, >= firing): one equation, held at every boundary: hand
computation = primec.nn (eager) = onnxruntime (the LIFGeneral function body) = the IR
interpreter = the simulator running the compiled artefact. Plain LIFs keep their old encoding."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from framework_check import quiet
from primec.backends.isa import Lif
from primec.backends.simulator import Simulator
from snn_models import onnx_of, run_onnx
from torch import nn

import primec.nn as pnn
from primec.core.interpret import lif
from primec.pipeline import BackendOptions, compile_model

VARIANTS = {
    "after_input_subtract": dict(reset="subtract", reset_timing="after_input"),
    "after_input_zero": dict(reset="zero", reset_timing="after_input"),
    "reset_to_v_reset": dict(reset="zero", strict=False, v_reset=-0.25),
    "leak_to_v_leak": dict(reset="zero", v_reset=0.125, v_leak=0.125, input_gain=0.5),
    "decay_input": dict(reset="subtract", strict=False, input_gain=0.5),
}


def hand_lif(current, u, s, keep, thr, strict, reset, timing, v_reset, v_leak, gain):
    """The op's equation (docs/onnx.md), one neuron, plain Python floats."""

    def do_reset(x):
        return {"zero": x * (1 - s) + v_reset * s, "subtract": x - thr * s, "none": x}[reset]

    def leak(x):
        return v_leak + keep * (x - v_leak)

    if timing == "before_leak":
        u = leak(do_reset(u)) + gain * current
    elif timing == "after_leak":
        u = do_reset(leak(u)) + gain * current
    else:
        u = do_reset(leak(u) + gain * current)
    return float(u > thr if strict else u >= thr), u


def test_interpreter_matches_the_hand_equation() -> None:
    rng = np.random.default_rng(0)
    for timing in ("before_leak", "after_leak", "after_input"):
        for reset in ("zero", "subtract", "none"):
            attrs = dict(keep=0.75, threshold=0.5, strict=True, reset=reset, reset_timing=timing)
            attrs |= dict(slope=1.0, v_reset=-0.5, v_leak=0.25, input_gain=0.5)
            current, u = rng.normal(size=(2, 1, 64))
            s = (rng.random((1, 64)) < 0.5).astype(float)
            fired, updated = lif([current, u, s], attrs)
            for k in range(64):
                args = (current[0, k], u[0, k], s[0, k], 0.75, 0.5, True, reset, timing)
                want_s, want_u = hand_lif(*args, -0.5, 0.25, 0.5)
                assert updated[0, k] == pytest.approx(want_u, abs=1e-12)
                assert fired[0, k] == want_s


def variant_net(options: dict) -> pnn.SNN:
    """A small conv SNN whose hidden and output neurons are the variant."""
    torch.manual_seed(3)
    layers = OrderedDict(
        conv=nn.Conv2d(2, 4, 3),
        lif0=pnn.LIF(0.8, 0.5, **options),
        flat=nn.Flatten(),
        fc=nn.Linear(4 * 6 * 6, 10),
        lif1=pnn.LIF(0.9, 0.25, **options),
    )
    with torch.no_grad():  # strong enough that every variant spikes on sparse inputs
        layers["conv"].weight.mul_(2.0)
        layers["fc"].weight.mul_(4.0)
    return pnn.SNN(
        {"layers": nn.Sequential(layers)},
        pnn.MeanReadout(),
        input_shape=(2, 8, 8),
        timesteps=6,
        input_encoding="spikes",
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_equal_at_every_boundary(variant: str, tmp_path: Path) -> None:
    net = variant_net(VARIANTS[variant]).eval()
    x = (torch.rand((16, 6, 2, 8, 8), generator=torch.Generator().manual_seed(1)) < 0.4).float()
    with torch.no_grad():
        eager = net.record(x)
    model = onnx_of(net)
    assert "LIFGeneral" in {f.name for f in model.functions}
    ort_out = run_onnx(model, x.numpy())
    spikes_ort = [v for k, v in ort_out.items() if k.endswith("lif1.spike_out")]
    assert np.array_equal(spikes_ort[0], eager["layers.lif1"].numpy())
    path = tmp_path / "net.pt2"
    pnn.save_step(net, path)
    program = compile_model(path, log=quiet, backend=BackendOptions()).program
    records = [program.neurons[ins.params] for ins in program.instrs if isinstance(ins, Lif)]
    assert all(r["reset_timing"] == net.layers.lif0.reset_timing for r in records)
    last = [ins.spike_out for ins in program.instrs if isinstance(ins, Lif)][-1]
    result = Simulator(program, trace=(last,)).run(x.numpy(), 16, early_exit=False)
    expected = eager["layers.lif1"].numpy()
    assert 10 <= expected.sum() < 0.98 * expected.size, (
        "the variant must spike for the test to mean anything"
    )
    assert np.array_equal(result.spikes[last].reshape(expected.shape), expected)


def test_plain_lif_records_and_onnx_stay_as_they_were(tmp_path: Path) -> None:
    """No variant set: the ONNX op is the old LIF and the neuron record has the old six fields."""
    net = variant_net({})
    model = onnx_of(net)
    assert {f.name for f in model.functions} == {"LIF", "ReadoutMean"}
    path = tmp_path / "net.pt2"
    pnn.save_step(net, path)
    program = compile_model(path, log=quiet, backend=BackendOptions()).program
    fields = {"keep", "threshold", "strict", "reset", "reset_timing", "slope"}
    assert all(set(record) == fields for record in program.neurons)
