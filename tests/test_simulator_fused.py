"""The simulator's fused CPU kernels (`backends/simulator/fused.py`) compute the same bits as the
instruction-by-instruction torch path they replace: on the released classifier over the whole
N-Digits test split (every output), with every kind of noise, in any batch size, and on
hand-built membranes that sit exactly on the threshold or just beside it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from primec.backends.isa import Lif, Pool, Reshape, Scale
from primec.backends.program import Program
from primec.backends.simulator import Noise, Simulator
from primec.backends.simulator.digital import _membrane, _pool
from primec.backends.simulator.fused import FusedLayer, _lif_pool, fused_layers, row_drives
from released import single_thread
from simresults import assert_same, released_with_exit_rule

from primec.datasets import load_split


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    yield from single_thread()


program = pytest.fixture(scope="module", name="program")(released_with_exit_rule)


def spike_outs(program: Program) -> tuple[int, ...]:
    return tuple(ins.spike_out for ins in program.instrs if isinstance(ins, Lif))


def test_the_classifier_runs_both_hidden_layers_fused(program: Program) -> None:
    fused = [entry for _, entry, _ in Simulator(program).schedule if isinstance(entry, FusedLayer)]
    assert len(fused) == 2
    assert all(layer.pool is not None for layer in fused)
    unfused = Simulator(program, fuse=False).schedule
    assert not any(isinstance(entry, FusedLayer) for _, entry, _ in unfused)


def test_a_traced_membrane_is_not_fused(program: Program) -> None:
    """A membrane someone reads must exist as a tensor of its own: that layer stays unfused."""
    first = next(ins for ins in program.instrs if isinstance(ins, Lif))
    schedule = Simulator(program, trace=(first.membrane,)).schedule
    assert sum(isinstance(entry, FusedLayer) for _, entry, _ in schedule) == 1


NOISES = {
    "ideal": None,
    "read-adc": Noise(read=0.02, adc=8, seed=1),
    "read": Noise(read=0.05, seed=2),
    "adc": Noise(adc=5, seed=3),
    "every-chip-error": Noise(program=0.05, read=0.02, stuck=0.002, adc=8, seed=4),
}


@pytest.mark.slow
@pytest.mark.parametrize("noise", NOISES.values(), ids=NOISES.keys())
def test_fused_equals_unfused_on_the_whole_test_split(program: Program, noise) -> None:
    """Ideal on all 359 samples; every noise (fused plane reads: noise, ADC, shift-add) on 32."""
    x = load_split("test")[0]
    x = x if noise is None else x[:32]
    trace = spike_outs(program)
    fused = Simulator(program, noise, trace=trace).run(x, 64)
    plain = Simulator(program, noise, trace=trace, fuse=False).run(x, 64)
    assert_same(fused, plain)


@pytest.mark.slow
def test_fused_results_do_not_depend_on_the_batch_size(program: Program) -> None:
    x = load_split("test")[0][:64]
    sim = Simulator(program, trace=spike_outs(program))
    whole = sim.run(x, 64)
    for batch in (1, 7):
        assert_same(sim.run(x, batch), whole)


def lif_by_torch(
    acc: torch.Tensor,
    factors: tuple[float, ...],
    u: torch.Tensor,
    s: torch.Tensor,
    p: dict,
    kernel: tuple[int, int] = (2, 2),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scale, `_membrane`, LeakyReLU, threshold and a sum pool: the unfused instructions."""
    current = acc.clone()
    for f in factors:
        current = current * f
    u = _membrane(p, u.clone(), s.clone(), current, in_place=True)
    if p["slope"] != 1.0:
        F.leaky_relu_(u, p["slope"])
    spikes = (u > p["threshold"] if p["strict"] else u >= p["threshold"]).double()
    pooled = _pool(
        spikes, Pool(dst=0, src=0, kind="sum", kernel=kernel, stride=kernel, padding=(0, 0))
    )
    return u, spikes, pooled


def on_threshold(threshold: float, factors: tuple[float, ...]) -> float:
    """An accumulator value whose scaled current (a rounding after each factor) is exactly
    `threshold`."""
    candidate = threshold / np.prod(factors)
    for _ in range(10_000):
        scaled = candidate
        for f in factors:
            scaled = scaled * f
        if scaled == threshold:
            return candidate
        candidate = np.nextafter(candidate, np.inf if scaled < threshold else -np.inf)
    raise AssertionError("no accumulator value scales onto the threshold")


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("slope", [0.1, 1.0])
# Two inexact factors (two roundings, in order: the kernel scales by the first, then the update
# by the last), one (the update alone), none (x 1.0); the 2 x 2 pool written out, and another.
@pytest.mark.parametrize(
    ("factors", "kernel"),
    [((0.3, 0.7), (2, 2)), ((0.3,), (2, 2)), ((), (2, 2)), ((0.3, 0.7), (2, 3))],
)
def test_lif_kernel_equals_torch_on_the_threshold_and_beside_it(
    strict: bool, slope: float, factors: tuple[float, ...], kernel: tuple[int, int]
) -> None:
    """Membranes that land exactly on the threshold, one ulp either side, negative, reset."""
    p = {"keep": 0.3, "threshold": 0.2, "strict": strict, "slope": slope}
    p |= {"reset": "zero", "reset_timing": "before_leak"}
    generator = torch.Generator().manual_seed(0)
    acc = torch.randn(3, 2, 4, 6, generator=generator, dtype=torch.float64)
    u = torch.randn(3, 2, 4, 6, generator=generator, dtype=torch.float64)
    s = (torch.rand(3, 2, 4, 6, generator=generator) < 0.3).double()
    # Row 0: membrane 0 (reset) and currents that scale to exactly the threshold and to its
    # neighbours.
    u[0], s[0] = 0.0, 1.0
    hit = on_threshold(0.2, factors)
    acc[0, 0, 0, :3] = torch.tensor([hit, np.nextafter(hit, 1.0), np.nextafter(hit, 0.0)])
    expected = lif_by_torch(acc, factors, u, s, p, kernel)
    assert (expected[0] == 0.2).any(), "the hand-built case must hit the threshold exactly"
    pooled = torch.empty(3, 2, 4 // kernel[0], 6 // kernel[1], dtype=torch.float64)
    kernel_u, kernel_s = u.clone(), s.clone()
    _lif_pool(
        acc.numpy(),
        np.array(factors, dtype=np.float64),
        kernel_u.numpy(),
        kernel_s.numpy(),
        (p["keep"], p["threshold"], slope),
        strict,
        pooled.numpy(),
        kernel,
        True,
    )
    for got, want in zip((kernel_u, kernel_s, pooled), expected, strict=True):
        assert torch.equal(got, want)


def test_row_drives_equal_set_bits_times_coverage() -> None:
    """The one-pass count equals popcount(round(clamp(level))) @ coverage, binary or not."""
    generator = torch.Generator().manual_seed(1)
    levels = torch.randint(0, 300, (5, 3, 7, 7), generator=generator).double()
    levels[levels > 200] = 0.0
    levels[0, 0, 0, 0] = 70000.0  # clamps to the 16-bit table's top entry
    levels[1, 0, 0, 0] = 2.5  # rounds half to even
    coverage = torch.randint(0, 26, (3 * 7 * 7,), generator=generator).double()
    integer = levels.round().to(torch.int64).clamp(0, 2**16 - 1)
    bits = sum((integer >> k) & 1 for k in range(16)).double().flatten(1)
    expected = (bits @ coverage).to(torch.int64)
    assert torch.equal(row_drives(levels, coverage, binary=False), expected)
    binary = (levels > 100).double()
    expected = (binary.flatten(1) @ coverage).to(torch.int64)
    assert torch.equal(row_drives(binary, coverage, binary=True), expected)


def test_each_chain_is_the_programs_own_instructions(program: Program) -> None:
    """Each fused chain is the program's own Scale -> Reshape -> Lif -> Pool, in order."""
    sim = Simulator(program)
    for i, layer in fused_layers(program, sim.own_states, (), sim.accumulators).items():
        kinds = [type(program.instrs[j]) for j in layer.indices]
        assert kinds == [Scale, Reshape, Lif, Pool]
        assert layer.indices[0] == i
