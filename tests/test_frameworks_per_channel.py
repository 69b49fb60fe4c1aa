"""Per-channel and per-neuron neuron parameters from snnTorch: a conv SNN with learnable
per-channel beta and threshold (and alpha for Synaptic), random values, compiled from its
state_dict and --arch, encoded as .pbc and .pmac, simulated on every N-Digits test sample: the
output spikes equal snnTorch's own forward at every step, in float64 and float32."""

from __future__ import annotations

import framework_archs as fa
import numpy as np
import pytest
import torch
from framework_check import ARCHS, quiet
from primec.backends import BACKENDS
from primec.backends.isa import Integrate, Lif
from primec.backends.simulator import Simulator

from primec.errors import PrimecError
from primec.pipeline import BackendOptions, compile_model

snntorch = pytest.importorskip("snntorch")
from test_frameworks_snntorch import snntorch_output_spikes  # noqa: E402

MODELS = ("snntorch_per_channel", "snntorch_per_channel_zero", "snntorch_per_channel_synaptic")


def compiled_artefacts(name: str, folder) -> dict[str, object]:
    """The model's .pbc and .pmac, each decoded back to the program the simulator runs."""
    path = folder / f"{name}.pt"
    torch.save(getattr(fa, name)().state_dict(), path)
    emit = BackendOptions(emit=("bytecode", "macro"))
    result = compile_model(path, arch=f"{ARCHS}:{name}", log=quiet, backend=emit)
    return {kind: BACKENDS[kind].decode(data) for kind, data in result.artefacts.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_per_channel_spikes_equal_snntorch_every_step(name, ndigits_x, tmp_path) -> None:
    torch.set_num_threads(1)
    expected = {
        dt: snntorch_output_spikes(name, ndigits_x, dt) for dt in (torch.float64, torch.float32)
    }
    assert 0.05 < expected[torch.float64].mean() < 0.9, "the model must spike"
    for kind, program in compiled_artefacts(name, tmp_path).items():
        tables = [r for r in program.neurons if isinstance(r["keep"], str)]
        assert len(tables) >= 3, "the parameters must reach the artefact per channel"
        last = [ins.spike_out for ins in program.instrs if isinstance(ins, Lif)][-1]
        result = Simulator(program, trace=(last,)).run(ndigits_x, 64, early_exit=False)
        simulated = result.spikes[last]
        for dtype, spikes in expected.items():
            flips = int((simulated.reshape(spikes.shape) != spikes).sum())
            assert flips == 0, f"{name} {kind}: {flips} of {spikes.size} spikes differ ({dtype})"


def test_parameter_tables_hold_snntorch_values(tmp_path) -> None:
    """The artefact's tables are snnTorch's clamped beta and threshold, channel by channel."""
    net = fa.snntorch_per_channel_synaptic()
    programs = compiled_artefacts("snntorch_per_channel_synaptic", tmp_path)
    for program in programs.values():
        lifs = [program.neurons[i.params] for i in program.instrs if isinstance(i, Lif)]
        syns = [program.neurons[i.params] for i in program.instrs if isinstance(i, Integrate)]
        for record, syn, cell in zip(lifs, syns, (net[2], net[5], net[8]), strict=True):
            beta = cell.beta.detach().clamp(0, 1).double().numpy()
            assert np.array_equal(program.tensors[record["keep"]], beta)
            threshold = cell.threshold.detach().double().numpy()
            assert np.array_equal(program.tensors[record["threshold"]], threshold)
            alpha = cell.alpha.detach().clamp(0, 1).double().numpy()
            assert np.array_equal(program.tensors[syn["keep"]], alpha)


def test_per_channel_threshold_must_be_positive() -> None:
    from primec.frontend.frameworks import adopt

    net = fa.snntorch_per_channel()
    with torch.no_grad():
        net[5].threshold[3] = -0.5
    with pytest.raises(PrimecError, match=r"Leaky at '5': threshold=-0\.5 is not modelled"):
        adopt(net, fa.PRIMEC_STEP, "framework_archs.py")


def test_per_channel_nan_beta_is_refused() -> None:
    from primec.frontend.frameworks import adopt

    net = fa.snntorch_per_channel()
    with torch.no_grad():
        net[2].beta[1] = float("nan")
    with pytest.raises(PrimecError, match=r"Leaky at '2': beta holds NaN or infinite values"):
        adopt(net, fa.PRIMEC_STEP, "framework_archs.py")


def test_beta_of_the_wrong_size_is_one_clear_error() -> None:
    from primec.frontend import Source, export
    from primec.frontend.frameworks import adopt

    net = fa.snntorch_per_channel()
    net[2].beta = torch.nn.Parameter(torch.rand(7, 1, 1))  # the layer has 8 channels
    snn = adopt(net, fa.PRIMEC_STEP, "framework_archs.py")
    with pytest.raises(PrimecError, match=r"LIF keep has shape \[7, 1, 1\], which does not") as e:
        export(Source("model", tmp_path_free(), module=snn))
    assert "neuron's shape [8, 15, 15]" in str(e.value)


def tmp_path_free():
    """A path for messages only (export writes nothing)."""
    from pathlib import Path

    return Path("w.pt")
