"""prime-fsvae compiled to .pbc and .pmac: the ideal simulator equals the PyTorch model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from primec.backends import read_artefact  # noqa: E402
from primec.backends.isa import Lif, Sample  # noqa: E402
from primec.backends.simulator import Noise, Simulator  # noqa: E402
from primec.passes.analog_input import input_quantum  # noqa: E402
from test_fsvae import active_fsvae  # noqa: E402

from primec.cli import main  # noqa: E402
from primec.core import interpret  # noqa: E402
from primec.datasets.inpaint import make_split  # noqa: E402
from primec.errors import PrimecError  # noqa: E402
from primec.hardware.target import load_target  # noqa: E402
from primec.pipeline import DEFAULT_TARGET, BackendOptions, compile_model  # noqa: E402


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fsvae")
    net = active_fsvae().float()
    weights = folder / "fsvae.pt"
    torch.save(net.state_dict(), weights)
    options = BackendOptions(emit=("bytecode", "macro"))
    result = compile_model(weights, arch="prime-fsvae", log=lambda _: None, backend=options)
    for name, suffix in (("bytecode", "pbc"), ("macro", "pmac")):
        (folder / f"fsvae.{suffix}").write_bytes(result.artefacts[name])
    return net, folder, result


def traced_buffers(program) -> dict[int, str]:
    """Every LIF's spike buffer and the sampler's latent buffer, by module path."""
    found = {}
    for i, ins in enumerate(program.instrs):
        if isinstance(ins, Lif | Sample):
            path = program.debug[i].value.rsplit(".", 1)[0]
            found[ins.spike_out if isinstance(ins, Lif) else ins.z] = path
    return found


@pytest.mark.parametrize("suffix", ["pbc", "pmac"])
def test_ideal_simulation_equals_the_float64_model(compiled, suffix):
    net, folder, _ = compiled
    x = make_split("test", 16).x[:6]
    with torch.no_grad():
        record = net.double().record(torch.from_numpy(x).double())
    program = read_artefact(folder / f"fsvae.{suffix}")
    buffers = traced_buffers(program)
    assert set(buffers.values()) >= {"encoder.lif0", "posterior.lif1", "sampler", "decoder.lif2"}
    # batches of 4 put samples 4 and 5 in a second batch: the draws follow the sample index
    result = Simulator(program, Noise(), trace=tuple(buffers)).run(x, 4, early_exit=False)
    for buffer, path in buffers.items():
        expected = record[path].numpy().reshape(result.spikes[buffer].shape)
        assert np.array_equal(result.spikes[buffer], expected), path
    # partial sums are exact in float64; only the affine, decay and tanh round: ~1e-16
    assert np.abs(result.readouts - record["readout"].numpy()).max() < 1e-12


def test_a_chip_among_others_draws_the_latents_it_draws_alone(compiled):
    # rows are (sample, chip): each row's sampler key must be its sample, not its row
    _, folder, _ = compiled
    x = make_split("test", 16).x[:3]
    program = read_artefact(folder / "fsvae.pbc")
    z = next(ins.z for ins in program.instrs if isinstance(ins, Sample))
    noisy = Noise(program=0.02, read=0.01, seed=5)
    alone = Simulator(program, noisy, trace=(z,), chips=(1,)).run_chips(x, 2, early_exit=False)
    among = Simulator(program, noisy, trace=(z,), chips=(0, 1, 2)).run_chips(x, 2, early_exit=False)
    assert np.array_equal(among[1].spikes[z], alone[0].spikes[z])
    assert np.array_equal(among[1].readouts, alone[0].readouts)
    assert not np.array_equal(among[0].readouts, among[1].readouts)  # the chips do differ


def test_the_sampler_is_in_the_bytecode_and_the_first_layer_is_driven_bit_serially(compiled):
    _, _, result = compiled
    samples = [ins for ins in result.program.instrs if isinstance(ins, Sample)]
    assert [(s.k, s.seed) for s in samples] == [(20, 0)]
    conv0 = next(
        n for n in result.graph.nodes if n.op == "crossbar" and n.loc.path == "encoder.conv0"
    )
    assert (conv0.attr("drive"), conv0.attr("planes"), conv0.attr("input_quantum")) == (
        "bit_serial",
        8,
        1 / 128,
    )
    assert result.graph.meta_value("input_offset") == -1.0


def test_input_quantum_is_the_power_of_two_that_spans_the_range():
    assert input_quantum(-1.0, 1.0, 8) == 1 / 128
    assert input_quantum(0.0, 1.0, 8) == 1 / 256
    assert input_quantum(-1.0, 1.0, 4) == 1 / 8
    assert load_target(DEFAULT_TARGET).input.bits == 8


def test_inputs_off_the_drivers_grid_are_refused(compiled):
    _, _, result = compiled
    graph = result.graph
    x = make_split("test", 2).x[:1].copy()
    x[0, :, 0, 0, 0] = -0.999  # not -1 + k/128
    with pytest.raises(PrimecError, match="not an integer multiple"):
        interpret.run(graph, {graph.step_inputs[0].name: x})


def test_one_macro_is_refused_naming_the_layer_and_the_shortfall(compiled, tmp_path):
    _, folder, _ = compiled
    out = tmp_path / "one.pmac"
    args = ["compile", str(folder / "fsvae.pt"), "--arch", "prime-fsvae", "--emit", "macro"]
    result = CliRunner().invoke(main, [*args, "-o", str(out), "--max-macros", "1"])
    assert result.exit_code != 0 and not out.exists()
    assert "does not fit" in result.output and "needs 8 macros" in result.output
