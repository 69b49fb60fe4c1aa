"""Layer-major ideal runs (`backends/simulator/layermajor.py`, `lifkernels.py`) give the exact
path's results: every hidden spike, readout, prediction, exit step and count, on the whole
N-Digits test split and in batches of 1, 7 and 64; the kernel's repairs (replayed from the
neuron's last spike) against a float64 reference written out in torch, with bounds loosened so
that most neurons are replayed; and the fallbacks: what the path does not cover runs
step-major.
"""

from __future__ import annotations

from dataclasses import replace

import numba
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from primec.backends.isa import Integrate
from primec.backends.program import Program
from primec.backends.simulator import Noise, Simulator, certified, crossbar, layermajor
from primec.backends.simulator.certified import float32_weights
from primec.backends.simulator.fused import row_drives
from primec.backends.simulator.levels import padded_rows
from primec.backends.simulator.lifkernels import lif_over_time
from released import released_program, single_thread
from simresults import assert_same
from test_simulator_fused import spike_outs

from primec.datasets import load_split
from primec.hardware.earlyexit import PRIME_RULE


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    yield from single_thread()


@pytest.fixture(scope="module")
def program() -> Program:
    """The released classifier, no early-exit table (every row runs every step)."""
    return replace(released_program(), exit_table=None)


def pair(program: Program, **kwargs) -> tuple[Simulator, Simulator]:
    """The layer-major simulator (hidden spikes traced) and the exact one."""
    trace = spike_outs(program)
    fast = Simulator(program, trace=trace, **kwargs)
    exact = Simulator(program, trace=trace, certify=False, **kwargs)
    assert fast.layer_major_schedule is not None and exact.layer_major_schedule is None
    return fast, exact


@pytest.mark.slow
def test_layer_major_equals_exact_on_the_whole_test_split(program: Program) -> None:
    """Every hidden layer's spikes at every step (traced), readouts, predictions, counts."""
    x = load_split("test")[0]
    fast, exact = pair(program)
    assert_same(fast.run(x, 64), exact.run(x, 64))
    assert fast.repairs > 0


@pytest.mark.slow
def test_layer_major_results_do_not_depend_on_the_batch_size(program: Program) -> None:
    x = load_split("test")[0][:64]
    fast, exact = pair(program)
    expected = exact.run(x, 64)
    for batch in (1, 7, 64):
        assert_same(fast.run(x, batch), expected)


@pytest.mark.parametrize("exits", [0.0, 0.7, 2.0], ids=["always", "policy", "never"])
def test_an_exit_table_gives_the_step_major_results(program, monkeypatch, exits) -> None:
    """With PRIME's exit rule (rows leave at different steps): layer-major batches (every step
    computed, the controller applied afterwards), step-major ones, and the policy that
    switches between them from batch to batch give the same results."""
    x = load_split("test")[0][:40]
    fast, exact = pair(replace(program, exit_table=PRIME_RULE))
    monkeypatch.setattr(layermajor, "LAYER_MAJOR_EXITS", exits)
    got = fast.run(x, 7)
    assert_same(got, exact.run(x, 7))
    assert 1 <= got.exit_step.min() < got.exit_step.max() <= x.shape[1]


def test_a_batch_too_large_for_one_pass_runs_in_parts(program: Program, monkeypatch) -> None:
    x = load_split("test")[0][:9]
    fast, exact = pair(program)
    monkeypatch.setattr(layermajor, "LAYER_MAJOR_BYTES", 1)
    assert fast.layer_major_part(x.shape[1]) == 1
    assert_same(fast.run(x, 9), exact.run(x, 9))


def test_sums_near_float32_range_are_summed_in_float64(program: Program, monkeypatch) -> None:
    """A batch whose sums could approach float32's range takes float64 sums (bound zero)."""
    x = load_split("test")[0][:5]
    fast, exact = pair(program)
    monkeypatch.setattr(certified, "HUGE", 0.0)
    assert_same(fast.run(x, 5), exact.run(x, 5))


@pytest.mark.parametrize(
    ("sparse", "channels_last", "forms"),
    [
        (0.10, 8, [(True, True), (True, False)]),  # the defaults on PRIME: sparse, then nhwc
        (0.0, 99, [(False, False), (False, False)]),  # float32 convolutions, channels-first
        (0.0, 1, [(True, False), (True, False)]),  # channels-last both
        (1.0, 99, [(True, True), (True, True)]),  # exact sparse sums both
    ],
    ids=["defaults", "first", "last", "sparse"],
)
def test_every_form_of_the_sums_gives_the_exact_results(
    program, monkeypatch, sparse, channels_last, forms
) -> None:
    """Each layer's sums channels-first, channels-last or sparse (`SPARSE_LEVELS`,
    `CHANNELS_LAST_INPUTS`), in batches of 1 and 7: every traced spike, readout and count is
    the exact path's; the kernel saw the forms asked for ((channels-last, sparse) per layer)."""
    x = load_split("test")[0][:7]
    fast, exact = pair(program)
    monkeypatch.setattr(layermajor, "SPARSE_LEVELS", sparse)
    monkeypatch.setattr(layermajor, "CHANNELS_LAST_INPUTS", channels_last)
    seen, kernel = [], layermajor.lif_over_time
    spy = lambda *a: seen.append((a[0][2], a[0][3].size > 0)) or kernel(*a)  # noqa: E731
    monkeypatch.setattr(layermajor, "lif_over_time", spy)
    expected = exact.run(x, 7)
    for batch in (1, 7):
        seen.clear()
        assert_same(fast.run(x, batch), expected)
        assert seen == forms * (7 // batch)


def test_what_the_path_does_not_cover_runs_step_major(program: Program) -> None:
    """Noise, several chips, plane-by-plane reads, certify=False, a traced state: the
    step-major loop (`_layer_major_ready` false or no layer-major schedule)."""
    sim = Simulator(program)
    assert sim._layer_major_ready(None, 10)
    assert Simulator(program, Noise(read=0.02, seed=1)).layer_major_schedule is None
    assert Simulator(program, certify=False).layer_major_schedule is None
    assert not Simulator(program, chips=(0, 1))._layer_major_ready(None, 10)
    sim.plane_hook = lambda i, current: None
    assert not sim._layer_major_ready(None, 10)
    states = tuple(state for state, _ in program.states)
    assert Simulator(program, trace=states[:1]).layer_major_schedule is None


def test_a_recurrent_state_runs_step_major(program: Program) -> None:
    """A state read by an instruction other than its own (here: the integrator's membrane
    also added into the readout's input) cannot run layer-major."""
    integrate = next(ins for ins in program.instrs if isinstance(ins, Integrate))
    instrs = [
        replace(ins, x=integrate.membrane) if hasattr(ins, "x") else ins for ins in program.instrs
    ]
    assert Simulator(replace(program, instrs=tuple(instrs))).layer_major_schedule is None


# The kernel on a small random layer, against the layer written out in torch float64.
STEPS, ROWS, KEEP, SCALE = 12, 5, 0.5, 0.01


def reference(levels, weight64, threshold, slope, strict):
    """levels [T, B, Cin, Hp, Wp]: the exact layer, step by step (conv, scale, reset, leak,
    LeakyReLU, threshold, 2x2 sum pool): (spikes [T, B, C, H, W], pooled)."""
    u = s = None
    spikes, pooled = [], []
    for step in levels:
        current = F.conv2d(step, weight64) * SCALE
        u = current if u is None else (u * KEEP) * (1 - s) + current
        u = torch.where(u > 0, u, u * slope)
        s = (u > threshold if strict else u >= threshold).double()
        spikes.append(s)
        pooled.append(F.avg_pool2d(s, 2) * 4)
    return torch.stack(spikes), torch.stack(pooled)


def kernel_sums(flat: torch.Tensor, weight64: torch.Tensor, form: str, steps: int) -> tuple:
    """The kernel's sums argument for levels `flat` [T x B, Cin, Hp, Wp] in one of its forms:
    float32 chunks [k, B, C, P] (`first`) or [k, B, P, C] (`last`, two chunks), or none and
    the reversed weights (`sparse`: the kernel sums the levels itself)."""
    sums = F.conv2d(flat.float(), weight64.float())
    channels, height, width = sums.shape[1:]
    none = np.empty((0, 0, 0, 0))
    if form == "sparse":
        reversed_weights = weight64.flip(3).permute(1, 2, 3, 0).contiguous().numpy()
        return numba.typed.List([np.empty((1, 1, 1, 1))]), (height, width), True, reversed_weights
    rows = len(flat) // steps
    if form == "first":
        chunk = sums.numpy().reshape(steps, rows, channels, height * width)
        return numba.typed.List([chunk]), (height, width), False, none
    last = sums.permute(0, 2, 3, 1).contiguous().numpy().reshape(steps, rows, -1, channels)
    half = -(-steps // 2)
    chunks = numba.typed.List([last[:half].copy(), last[half:].copy()])
    return chunks, (height, width), True, none


def run_kernel(levels, weight64, threshold, slope, strict, loosen, form="first"):
    """The kernel on the same layer with its sum bounds times `loosen` (still rigorous, so
    more neurons are flagged and replayed), its sums in `form` (`kernel_sums`): (spikes,
    pooled, repairs)."""
    _, norms = float32_weights(weight64, 1.0)
    steps, rows = levels.shape[:2]
    flat = levels.reshape(steps * rows, *levels.shape[2:])
    sums = kernel_sums(flat, weight64, form, steps)
    channels, (height, width) = len(weight64), sums[1]
    largest = flat.amax((1, 2, 3)).reshape(steps, rows).numpy()
    pooled = np.empty((steps, rows, channels, height // 2, width // 2))
    spikes = np.empty((steps, rows, channels * height * width))
    factors = np.array([SCALE])
    coverage = torch.arange(pooled[0, 0].size, dtype=torch.float64) % 7
    drives = np.empty((steps, rows), dtype=np.int64)
    repairs = lif_over_time(
        sums,
        (largest, (norms * loosen).numpy()),
        (1.0, factors, SCALE),
        (KEEP, threshold, slope, strict),
        (flat.numpy(), weight64.numpy(), (1, 1)),
        (pooled, (2, 2), spikes, (coverage.numpy(), False, drives)),
    )
    # The next read's row drives, counted as the kernel pools: `row_drives` on its output.
    expected = row_drives(torch.from_numpy(pooled).flatten(0, 1), coverage, False)
    assert torch.equal(torch.from_numpy(drives).flatten(), expected)
    return torch.from_numpy(spikes).view(steps, rows, channels, height, width), pooled, repairs


@pytest.mark.parametrize("form", ["first", "last", "sparse"])
@pytest.mark.parametrize(
    ("slope", "strict", "loosen"),
    [(1.0, False, 1.0), (0.1, True, 1e5), (0.1, False, 1e9), (1.0, True, 1e300)],
)
def test_kernel_equals_the_float64_layer_with_repairs(slope, strict, loosen, form) -> None:
    """Random weights with all 24 bits, random levels 0..3, a threshold in the thick of the
    membranes: spikes and pooled spikes at every step equal the float64 layer, with float32
    sums channels-first or channels-last, or exact sparse sums (no bound, no flag). Loosened
    bounds flag most neurons, which are then replayed from their last spike (a wrong anchor,
    replay or channels-last index would show here); 1e300 flags every neuron at every
    step."""
    generator = torch.Generator().manual_seed(7)
    weight64 = torch.randn(4, 2, 3, 3, generator=generator).float().double()
    levels = torch.randint(0, 4, (STEPS, ROWS, 2, 8, 10), generator=generator).double()
    threshold = 0.04
    want_spikes, want_pooled = reference(levels, weight64, threshold, slope, strict)
    assert 0.05 < want_spikes.mean() < 0.9, "the threshold sits among the membranes"
    spikes, pooled, repairs = run_kernel(levels, weight64, threshold, slope, strict, loosen, form)
    assert torch.equal(spikes, want_spikes)
    np.testing.assert_array_equal(pooled, want_pooled.numpy())
    if form == "sparse":  # exact sums: no bound to loosen, nothing flagged
        assert repairs == 0
        return
    if loosen >= 1e5:
        assert repairs > 0.2 * want_spikes.numel()
    if loosen == 1e300:
        assert repairs == want_spikes.numel()


@pytest.mark.parametrize("form", ["first", "last"])
def test_kernel_repairs_a_float32_sum_rounded_across_the_threshold(form) -> None:
    """One channel, weights 1, 2^-30, 2^-30: the exact sums of row 0 are 1 + 2^-29 and
    1 + 2^-30, their float32 sums 1. The threshold 0.01 x (1 + 2^-30): the exact layer spikes
    at every neuron of row 0, the float32 sums alone would not; the kernel flags, repairs and
    spikes."""
    weight64 = torch.tensor([1.0, 2.0**-30, 2.0**-30], dtype=torch.float64).view(1, 1, 1, 3)
    levels = torch.zeros(3, 2, 1, 2, 4, dtype=torch.float64)
    levels[:, 0, 0, :, :3] = 1.0
    threshold = SCALE * (1 + 2.0**-30)
    want_spikes, _ = reference(levels, weight64, threshold, 1.0, False)
    assert want_spikes[0, 0].sum() == 4 and float(SCALE * np.float32(1.0)) < threshold
    spikes, _, repairs = run_kernel(levels, weight64, threshold, 1.0, False, 1.0, form)
    assert repairs > 0
    assert torch.equal(spikes, want_spikes)


@pytest.mark.parametrize(
    ("dtype", "padding"),
    [(np.float32, (1, 1, 1, 1)), (np.float64, (0, 2, 1, 0)), (np.uint8, (0, 0, 0, 0))],
    ids=["float32", "float64-uneven", "uint8-unpadded"],
)
def test_padded_rows_equal_torch_transpose_pad_cast_and_amax(dtype, padding) -> None:
    """`padded_rows` (the input gather's one pass) against torch: the time-major float64 rows
    padded as F.pad pads them, each row's torch.amax, NaN included, and the count of nonzero
    levels."""
    rng = np.random.default_rng(3)
    x = (rng.random((3, 4, 2, 5, 6)) * (-40 if dtype is np.float64 else 200)).astype(dtype)
    if dtype is np.float64:
        x[1, 2, 0, 3, 4] = np.nan  # a NaN row's largest level is NaN (torch.amax's)
    top, left, bottom, right = padding
    rows = torch.from_numpy(x.swapaxes(0, 1).astype(np.float64)).reshape(12, 2, 5, 6)
    expected = F.pad(rows, (left, right, top, bottom))
    shape = expected.shape
    out64 = torch.full(shape, 7.0, dtype=torch.float64)
    largest = torch.empty(12, dtype=torch.float64)
    nonzero = padded_rows(x, (top, left), out64.numpy(), largest.numpy())
    assert nonzero == int(torch.count_nonzero(expected))
    assert torch.equal(out64.isnan(), expected.isnan())
    assert int(out64.isnan().sum()) == (dtype is np.float64)
    assert torch.equal(out64.nan_to_num(), expected.nan_to_num())
    assert torch.equal(largest.nan_to_num(-1.0), torch.amax(expected, (1, 2, 3)).nan_to_num(-1.0))


def test_the_input_gather_and_the_row_drives_fuse_into_the_kernels(program, monkeypatch) -> None:
    """The layer-major run gathers the input with `padded_rows` (its rows feed the first
    layer's sparse sums), the first layer's kernel counts the second layer's row drives as it
    writes its pooled spikes (no `row_drives` pass over them), and the results, counts
    included, are the exact path's."""
    calls, passes = [], []
    kernel, drives = layermajor.padded_rows, crossbar.row_drives
    monkeypatch.setattr(layermajor, "padded_rows", lambda *a: calls.append(1) or kernel(*a))
    monkeypatch.setattr(
        crossbar, "row_drives", lambda v, *a: passes.append(v.shape) or drives(v, *a)
    )
    x = load_split("test")[0][:9]
    fast, exact = pair(program)
    assert_same(fast.run(x, 9), exact.run(x, 9))
    assert calls == [1]
    pooled = [shape[0] for shape in passes if shape[1:] == (12, 16, 16)]
    assert pooled == [9] * 10  # the exact path's, a step at a time; none over all 90 rows
