"""The certified float32 fast path of ideal mode (`backends/simulator/certified.py`) gives the
exact path's results: every spike of every layer, readouts, predictions, exit steps and counts,
on the whole N-Digits test split and in any batch size; a hand-built layer whose float32 sum
rounds across the threshold is repaired (and would spike wrongly without the repair); anything
the analysis does not cover runs the exact path.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from primec.backends.isa import Lif, Pool, Scale
from primec.backends.program import Program
from primec.backends.simulator import Noise, Simulator, certified
from primec.backends.simulator.certified import (
    MAX_STEPS,
    CertifiedLayer,
    CertifiedReads,
    _State,
    float32_weights,
)
from primec.backends.simulator.fused import FusedLayer
from released import single_thread
from simresults import assert_same, released_with_exit_rule
from test_simulator_fused import spike_outs

from primec.datasets import load_split


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    yield from single_thread()


@pytest.fixture(scope="module")
def program() -> Program:
    """The released classifier with PRIME's early-exit rule (rows leave at different steps)."""
    return released_with_exit_rule()


def test_both_hidden_layers_are_certified_and_the_classifier_is_not(program: Program) -> None:
    sim = Simulator(program)
    assert len(sim.certified) == 2
    fused = {layer.fused.indices[0] for layer in sim.certified.values()}
    assert all(isinstance(program.instrs[i], Scale) for i in fused)
    # The classifier's reads and the readout stay on the exact path.
    assert len(sim.reads) > len(sim.certified)
    chains = {j for layer in sim.certified.values() for j in layer.fused.indices}
    writers = {
        j
        for j, ins in enumerate(program.instrs)
        if program.readout in [getattr(ins, name) for name in ins.WRITES]
    }
    assert writers and not writers & chains


@pytest.mark.slow
def test_fast_path_equals_exact_on_the_whole_test_split(program: Program) -> None:
    """Every output on the 359 test samples, with early exit; the repairs are exercised."""
    x = load_split("test")[0]
    fast = Simulator(program, trace=spike_outs(program))
    exact = Simulator(program, trace=spike_outs(program), certify=False)
    assert not exact.certified
    assert_same(fast.run(x, 64), exact.run(x, 64))
    print(f"repaired neuron-steps on the test split: {fast.repairs}")
    assert fast.repairs > 0


@pytest.mark.slow
def test_fast_path_results_do_not_depend_on_the_batch_size(program: Program) -> None:
    x = load_split("test")[0][:64]
    exact = Simulator(program, trace=spike_outs(program), certify=False).run(x, 64)
    fast = Simulator(program, trace=spike_outs(program))
    for batch in (1, 7, 64):
        assert_same(fast.run(x, batch), exact)


class OneLayer(CertifiedReads):
    """The mixin alone, driving one hand-built certified layer."""

    def __init__(self, layer: CertifiedLayer, tile: object, steps: int) -> None:
        self.certified, self._by_tile = {layer.read: layer}, {id(tile): layer}
        self.fast, self.repairs, self.program = True, 0, None
        self._states = {layer.read: _State(steps)}


def hand_built(threshold: float) -> tuple[CertifiedLayer, torch.Tensor]:
    """One output channel, a 1x3 kernel of weights 1, 2^-30, 2^-30 and a 2x2 sum pool: on
    three inputs of level 1 the exact sum is 1 + 2^-29, the float32 sum 1 (in any order)."""
    weight64 = torch.tensor([1.0, 2.0**-30, 2.0**-30], dtype=torch.float64).view(1, 1, 1, 3)
    weight32, norms = float32_weights(weight64, 1.0)
    params = {"keep": 0.5, "threshold": threshold, "strict": False, "slope": 1.0}
    params |= {"reset": "zero", "reset_timing": "before_leak"}
    fused = FusedLayer(
        scale=Scale(dst=1, src=0, factors=(0.5,)),
        lif=Lif(spike_out=3, membrane_out=4, current=2, membrane=5, spike=6, params=0),
        pool=Pool(dst=7, src=3, kind="sum", kernel=(2, 2), stride=(2, 2), padding=(0, 0)),
        factors=np.array([0.5]),
        keep=0.5,
        threshold=threshold,
        strict=False,
        slope=1.0,
        indices=(0, 1, 2, 3),
    )
    layer = CertifiedLayer(0, fused, weight32, weight64, norms, (1, 1), 1.0, 4, params)
    return layer, weight64


def run_layer(layer: CertifiedLayer, levels: torch.Tensor) -> tuple[list, int]:
    """levels [T, rows, 1, 2, 4]: (spikes, pooled) per step through the certified path."""
    tile = object()
    sim = OneLayer(layer, tile, len(levels))
    rows = levels.shape[1]
    u, s = (torch.zeros(rows, 1, 2, 2, dtype=torch.float64) for _ in range(2))
    out = []
    for step in levels:
        env = {0: sim._product(tile, step, 1), 5: u, 6: s}
        counts = dict.fromkeys(("digital_multiplies", "neuron_updates", "digital_adds"), 0)
        sim.certified_fused(0, layer, env, counts)
        u, s = env[4], env[3]
        out.append((s.clone(), env[7].clone()))
    return out, sim.repairs


def exact_reference(weight64: torch.Tensor, levels: torch.Tensor, threshold: float) -> list:
    """The layer in float64, written out: conv, x 0.5, keep x U x (1 - s) + I, threshold."""
    u = s = torch.zeros(levels.shape[1], 1, 2, 2, dtype=torch.float64)
    out = []
    for step in levels:
        current = F.conv2d(step, weight64) * 0.5
        u = 0.5 * u * (1 - s) + current
        s = (u >= threshold).double()
        out.append((s, F.avg_pool2d(s, 2) * 4))
    return out


def test_a_float32_sum_rounded_across_the_threshold_is_repaired(monkeypatch) -> None:
    """Threshold 0.5 + 2^-31 lies between the float32 current (0.5) and the exact one
    (0.5 + 2^-30): the exact layer spikes, the float32 sums alone would not; the bound (about
    2^-21) flags the neurons, the replay repairs them, and a row of zeros needs no repair."""
    threshold = 0.5 + 2.0**-31
    layer, weight64 = hand_built(threshold)
    levels = torch.zeros(3, 2, 1, 2, 4, dtype=torch.float64)
    # Row 0's exact currents: 0.5 + 2^-30 (column 0), exactly the threshold (column 1: one
    # 2^-30 weight sees a 1); row 1 is all zeros.
    levels[:, 0, 0, :, :3] = 1.0
    expected = exact_reference(weight64, levels, threshold)
    assert expected[0][0][0].sum() == 4, "the exact layer spikes at every neuron of row 0"
    got, repairs = run_layer(layer, levels)
    assert repairs > 0
    for (spikes, pooled), (want_spikes, want_pooled) in zip(got, expected, strict=True):
        assert torch.equal(spikes, want_spikes)
        assert torch.equal(pooled, want_pooled)
    monkeypatch.setattr(certified, "_repair", lambda *args: None)
    unrepaired, _ = run_layer(layer, levels)
    assert unrepaired[0][0][0].sum() == 0, "without the repair the float32 path misses spikes"


def test_far_from_the_threshold_nothing_is_repaired() -> None:
    """The same sums against a threshold far outside the bound: no flag, the same spikes."""
    layer, weight64 = hand_built(0.25)
    levels = torch.zeros(3, 2, 1, 2, 4, dtype=torch.float64)
    levels[:, 0, 0, :, :3] = 1.0
    got, repairs = run_layer(layer, levels)
    assert repairs == 0
    for (spikes, _), (want, _) in zip(got, exact_reference(weight64, levels, 0.25), strict=True):
        assert torch.equal(spikes, want)


@pytest.mark.parametrize(
    "noise",
    [Noise(read=0.02, seed=1), Noise(adc=8), Noise(program=0.05, stuck=0.002), Noise(input=8)],
    ids=["read", "adc", "chip-errors", "input"],
)
def test_noise_and_chip_errors_run_the_exact_path(program: Program, noise: Noise) -> None:
    sim = Simulator(program, noise)
    assert not sim.certified
    assert sim._certified_schedule(10) is sim.schedule


def test_plane_by_plane_reads_run_the_exact_path(program: Program) -> None:
    """ADC calibration reads ideal currents plane by plane (`per_plane`, a plane hook)."""
    sim = Simulator(program)
    sim.per_plane = True
    assert sim._certified_schedule(10) is sim.schedule and not sim.fast
    sim.per_plane, sim.plane_hook = False, lambda i, current: None
    assert sim._certified_schedule(10) is sim.schedule and not sim.fast


def test_neuron_variants_run_the_exact_path(program: Program) -> None:
    """A Lif with a parameter beyond the analysed ones is neither fused nor certified."""
    neurons = [p | {"v_reset": 0.0} if "keep" in p else p for p in program.neurons]
    assert not Simulator(replace(program, neurons=neurons)).certified


def test_long_runs_take_the_exact_path_with_the_same_results(program: Program) -> None:
    """Past MAX_STEPS the step-major replay from step 0 would cost too much: with early exit
    the exact schedule runs. Without it the batch runs layer-major, whose replay starts from
    the neuron's last spike and has no step limit (`tests/test_simulator_layermajor.py`)."""
    sim = Simulator(program)
    assert sim._certified_schedule(MAX_STEPS + 1) is sim.schedule and not sim.fast
    x = np.tile(load_split("test")[0][:2], (1, -(-(MAX_STEPS + 1) // 10), 1, 1, 1))
    exact = Simulator(program, certify=False)
    assert_same(sim.run(x), exact.run(x))  # rows leave the batch at different steps
    assert sim.repairs == 0
    assert_same(sim.run(x[:, :10]), exact.run(x[:, :10]))
    assert sim.repairs > 0
    assert_same(sim.run(x, early_exit=False), exact.run(x, early_exit=False))
