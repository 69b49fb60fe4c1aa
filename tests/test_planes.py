"""Noisy bit-plane reads: the keyed normals (`gauss.py`) and the sparse plane kernel
(`planes.py`).

The normals: Philox4x32-10 against Random123's known answers, the ziggurat against numpy's
`Generator.standard_normal` fed the same 64-bit words, the keyed draws' distribution, and their
keying (a draw depends on its key, read, plane and number alone). The kernel: against a plain
numpy conversion written out here (convolution of each bit plane, normals, ADC, shift-add) on a
hand-built tile with strides, empty windows, two chips and per-output ADC scales, and against the
torch path on the released classifier in batches of 1, 7 and 64.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch
from primec.backends.simulator import Noise, Simulator, planes, sparse
from primec.backends.simulator.gauss import KI, philox, ziggurat
from primec.backends.simulator.noise import Normals
from released import single_thread
from scipy import stats
from simresults import assert_same, released_with_exit_rule

from primec.datasets import load_split


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    yield from single_thread()


# Random123's kat_vectors: counter (4 words), key (2 words), Philox4x32-10 of them.
PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@numba.njit
def _philox_of(c, k):
    return philox(c[0], c[1], c[2], c[3], k[0], k[1])


@pytest.mark.parametrize("counter, key, expected", PHILOX_KAT)
def test_philox_gives_random123s_known_answers(counter, key, expected) -> None:
    got = _philox_of(np.array(counter, np.uint64), np.array(key, np.uint64))
    assert tuple(int(w) for w in got) == expected


@numba.njit
def _normals_from_words(words, count):
    out = np.empty(count)
    used = 0
    for i in range(count):
        x, n = ziggurat(words[used : used + 64], 64)
        out[i] = x
        used += n
    return out, used


def test_the_ziggurat_is_numpys_on_the_same_words() -> None:
    """numpy's `standard_normal` draws its normals from these words in this order; the values
    agree to the last digits of the tables (computed here, hard-coded in numpy)."""
    count = 200_000
    words = np.random.PCG64(5).random_raw(2 * count)
    mine, used = _normals_from_words(words, count)
    theirs = np.random.Generator(np.random.PCG64(5)).standard_normal(count)
    np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=0)
    # The same words taken: the next draw from the same words would be numpy's next draw.
    generator = np.random.Generator(np.random.PCG64(5))
    generator.standard_normal(count)
    assert generator.bit_generator.random_raw() == words[used]


def test_keyed_normals_are_standard_normal_and_keyed_by_what_they_belong_to() -> None:
    keys = Normals(7, [(c, s) for c in range(2) for s in range(40)], t=3).keys
    draws = Normals.draws(keys, read=2, plane=1, size=4096)
    assert stats.kstest(draws.ravel(), "norm").pvalue > 1e-3
    assert abs(draws.mean()) < 0.01 and abs(draws.std() - 1) < 0.01
    # Tails beyond the ziggurat's base strip (the rejection sampler's tail): as often as N(0, 1).
    beyond = np.mean(np.abs(draws) > 3.6541528853610088)
    assert beyond == pytest.approx(2 * stats.norm.sf(3.6541528853610088), rel=0.3)
    # Draw e depends on (row key, read, plane, e) alone: fewer draws or another row subset
    # give the same values; another read, plane or step gives other ones.
    np.testing.assert_array_equal(Normals.draws(keys[5:9], 2, 1, 100), draws[5:9, :100])
    for other in (Normals.draws(keys, 3, 1, 4096), Normals.draws(keys, 2, 2, 4096)):
        assert abs(np.corrcoef(other.ravel(), draws.ravel())[0, 1]) < 0.01
    later = Normals(7, [(c, s) for c in range(2) for s in range(40)], t=4).keys
    assert not np.array_equal(Normals.draws(later, 2, 1, 16), draws[:, :16])


def test_rejected_first_words_take_the_slow_path_and_stay_normal() -> None:
    """About 1.5% of first words fail the strip test; they draw more words and land where the
    fast path does not reach (the wedges and the tail)."""
    keys = Normals(1, [(0, s) for s in range(64)], t=1).keys
    draws = Normals.draws(keys, 0, 0, 8192)
    idx, mantissa = _first_words(keys, 8192)
    rejected = mantissa >= KI[idx]
    assert 0.005 < rejected.mean() < 0.03
    assert np.isfinite(draws[rejected]).all()
    # Every draw beyond the base strip's edge (about 135 here) comes from the slow path.
    edge = 3.6541528853610088
    assert np.abs(draws[~rejected]).max() < edge < np.abs(draws[rejected]).max()
    assert stats.kstest(draws.ravel(), "norm").pvalue > 1e-3


def _first_words(keys: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Each draw's strip and mantissa of its first word (as `gauss.keyed_normal` takes them)."""
    from primec.backends.simulator.gauss import block_key, first_word

    @numba.njit
    def words(keys, size):
        out = np.empty((len(keys), size), dtype=np.uint64)
        for row in range(len(keys)):
            block = block_key(keys[row], 0, 0)
            for e in range(size):
                out[row, e] = first_word(block, e)
        return out

    w = words(keys, size)
    return (w & np.uint64(0xFF)).astype(np.int64), ((w >> np.uint64(9)) & np.uint64(2**52 - 1))


def _reference_planes(levels, weights, stride, kernel, keys, read, scales, top):
    """The plane-by-plane read written out: a dense float64 convolution of each bit plane (its
    currents and variances), the keyed normals, ADC codes, and the shift-add."""
    n, _, height, width = levels.shape
    (sh, sw), (kh, kw) = stride, kernel
    out_h, out_w = (height - kh) // sh + 1, (width - kw) // sw + 1
    outputs = weights.shape[-1] // 2
    total, clipped = np.zeros((n, outputs, out_h * out_w)), 0
    for a in range(n):
        w = weights[a % len(weights)][:-1].reshape(-1, kh, kw, 2 * outputs)
        for k in range(int(levels[a].max()).bit_length()):
            bits = ((levels[a] >> k) & 1).astype(np.float64)
            sums = np.zeros((out_h * out_w, 2 * outputs))
            for oy in range(out_h):
                for ox in range(out_w):
                    patch = bits[:, oy * sh : oy * sh + kh, ox * sw : ox * sw + kw]
                    sums[oy * out_w + ox] = np.einsum("cyx,cyxo->o", patch, w)
            z = Normals.draws(keys[a : a + 1], read, k, outputs * out_h * out_w)[0]
            current = np.sqrt(sums[:, outputs:].T) * z.reshape(outputs, -1) + sums[:, :outputs].T
            if scales is None:  # no ADC: the currents themselves
                total[a] += current * 2**k
                continue
            codes = np.rint(current * scales[:, None])
            clipped += np.sum((codes < -top) | (codes > top - 1))
            total[a] += np.clip(codes, -top, top - 1) * 2**k
    return total, clipped


# (channels, kernel, stride, source map): a strided 3 x 2 kernel; a 1 x 1 tile of two rows
# read at 40 positions per output row (fewer weight rows than positions in an output row: the
# inpainting model's tiles; the kernel's row buffer once took its size from the weight rows);
# a tile of 70 rows read at one position (the classifier's tiles); those two take the kernel's
# pointwise path, a strided 1 x 1 kernel does not; more channels than half an output row's
# windows (PRIME's second layer: 12 channels, 12 windows), at unit stride and strided: with
# int32 weights, those and the strided 1 x 1 kernel gather each window's rows input row by
# input row (`_gathered_plane`).
GEOMETRIES = [
    (3, (3, 2), (2, 1), (9, 11)),
    (2, (1, 1), (1, 1), (3, 40)),
    (70, (1, 1), (1, 1), (1, 1)),
    (4, (1, 1), (2, 3), (5, 13)),
    (12, (5, 5), (1, 1), (9, 16)),
    (8, (3, 3), (2, 2), (9, 12)),
]
GEOMETRY_IDS = [
    "strided",
    "fewer-rows-than-positions",
    "one-position",
    "strided-1x1",
    "many-channels",
    "many-channels-strided",
]


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=GEOMETRY_IDS)
@pytest.mark.parametrize("multiples", ["int32", "float64"])
@pytest.mark.parametrize("adc", [True, False], ids=["adc", "no-adc"])
def test_the_sparse_kernel_equals_a_written_out_plane_read(adc, multiples, geometry) -> None:
    """Two chips (rows alternate between their weights, each with quanta of its own), sparse
    levels with empty windows and empty planes, per-output ADC scales that clip; the weights as
    int32 multiples of the quanta, or as float64 values with quanta 1. The kernel takes float
    levels off the integers (halves among them) and rounds them as torch's `round` does, and
    returns currents: the codes' shift-add divided by the codes per unit, as torch's `div_`."""
    rng = np.random.default_rng(3)
    channels, (kh, kw), (sh, sw), (height, width) = geometry
    chips, outputs = 2, 4
    out_h, out_w = (height - kh) // sh + 1, (width - kw) // sw + 1
    shape = (6, channels, height, width)
    off = rng.choice([-0.5, -0.3, 0.0, 0.2, 0.5], shape)  # x.5 rounds to the even neighbour
    given = (rng.integers(0, 8, shape) + off).clip(0, 7) * (rng.random(shape) < 0.2)
    given[4] = 0.4  # a row with nothing set once rounded
    levels = torch.from_numpy(given).round().to(torch.int64).numpy()
    assert (np.abs(given - levels) == 0.5).any()
    rows = channels * kh * kw
    whole = np.concatenate(
        [
            rng.integers(-900, 900, (chips, rows, outputs)),
            rng.integers(1, 50, (chips, rows, outputs)),
        ],
        axis=2,
    )
    whole = np.concatenate([whole, np.zeros((chips, 1, 2 * outputs), np.int64)], axis=1)
    quanta = np.array([[2.0**-12, 2.0**-12], [2.0**-10, 2.0**-15]])
    per_column = np.repeat(quanta, outputs, axis=1)[:, None, :]
    weights = whole * per_column  # the values the multiples stand for
    kernel_weights = (
        (whole.astype(np.int32), quanta) if multiples == "int32" else (weights, np.ones((chips, 2)))
    )
    keys = Normals(9, [(c, s) for s in range(3) for c in range(chips)], t=2).keys
    scales = np.array([3.0, 7.5, 20.0, 0.5])
    total = np.empty((6, outputs, out_h * out_w))
    geometry = (sh, sw, kh, kw, out_h, out_w)
    if not adc:
        sparse.sparse_reads(given, kernel_weights, geometry, 3, (keys, 5), (np.empty(0), 0), total)
        currents, _ = _reference_planes(levels, weights, (sh, sw), (kh, kw), keys, 5, None, 0)
        np.testing.assert_array_equal(total, currents)
        assert (currents[4] == 0).all() and (currents != 0).mean() > 0.15
        return
    sparse.sparse_reads(given, kernel_weights, geometry, 3, (keys, 5), (scales, 8), total)
    codes, clipped = _reference_planes(levels, weights, (sh, sw), (kh, kw), keys, 5, scales, 8)
    expected = torch.from_numpy(codes).div_(torch.from_numpy(scales)[:, None]).numpy()
    np.testing.assert_array_equal(total, expected)
    assert clipped > 0 and (codes[4] == 0).all() and (codes != 0).mean() > 0.15


@pytest.fixture(scope="module")
def program():
    return released_with_exit_rule()


def test_the_classifier_reads_every_tile_sparsely(program, monkeypatch) -> None:
    """Its two conv tiles and its five tiles of rows (the classifier) all take the kernel."""
    calls = []
    kernel = sparse.sparse_reads
    monkeypatch.setattr(planes, "sparse_reads", lambda *a: calls.append(a[4][1]) or kernel(*a))
    Simulator(program, Noise(read=0.02, adc=8, seed=1)).run(load_split("test")[0][:2], 2)
    reads = Simulator(program).reads
    assert set(calls) == set(reads) and sum(t.conv is not None for t in reads.values()) == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    "noise", [Noise(read=0.02, adc=8, seed=6), Noise(read=0.05, seed=7)], ids=["read-adc", "read"]
)
def test_noisy_reads_equal_the_torch_path_in_any_batch_size(program, noise) -> None:
    """The sparse kernel against the torch path (dense float64 products per plane), on 64 test
    samples with early exit, in batches of 1, 7 and 64; without the ADC every value flows on,
    so this holds the float64 sums and the noise arithmetic bit for bit."""
    x = load_split("test")[0][:64]
    torch_path = Simulator(program, noise, fuse=False).run(x, 64)
    for batch in (1, 7, 64):
        assert_same(Simulator(program, noise).run(x, batch), torch_path)


def test_chips_with_cells_of_their_own_equal_the_torch_path(program) -> None:
    """Three chips with programming error and stuck cells (a weight group per chip in the
    kernel, rows sample-major) against the torch path's grouped convolutions."""
    x = load_split("test")[0][:6]
    noise = Noise(program=0.05, stuck=0.002, read=0.02, adc=6, seed=8)
    chips = (2, 11, 5)
    sparse_run = Simulator(program, noise, chips=chips).run_chips(x, 4)
    torch_run = Simulator(program, noise, chips=chips, fuse=False).run_chips(x, 6)
    for mine, theirs in zip(sparse_run, torch_run, strict=True):
        assert_same(mine, theirs)
    assert len({r.readouts.tobytes() for r in sparse_run}) == 3


def test_plane_reads_sum_weights_on_the_int32_grid_and_ideal_weights_stay(program) -> None:
    """With read noise and the ADC, every tile's G+ - G- and variances are multiples of their
    quanta, G+ - G- within half a quantum of the as-formed value (the ideal tile's); the
    kernel's int32 weights are those multiples. Ideal runs keep the as-formed weights and no
    quanta."""
    ideal = Simulator(program).reads
    noisy = Simulator(program, Noise(read=0.02, adc=8, seed=1))
    for i, tile in noisy.reads.items():
        assert ideal[i].quanta is None
        outputs = tile.outputs
        (current_quantum, variance_quantum) = tile.quanta[0]
        weights = tile.weights.numpy()
        current, variance = weights[:, :outputs], weights[:, outputs:]
        assert np.abs(current - ideal[i].weights.numpy()).max() <= current_quantum / 2
        assert (current / current_quantum == np.rint(current / current_quantum)).all()
        assert (variance / variance_quantum == np.rint(variance / variance_quantum)).all()
        assert variance.min() >= 0 and variance.max() > 1e4 * variance_quantum
        multiples, quanta = noisy._padded_weights(tile)
        assert multiples.dtype == np.int32 and np.array_equal(quanta, tile.quanta)
        np.testing.assert_array_equal(multiples[0, :-1, :outputs] * current_quantum, current)
        np.testing.assert_array_equal(multiples[0, :-1, outputs:] * variance_quantum, variance)
        assert not multiples[0, -1].any()
        # The sum of a plane with every row set fits in int32.
        assert np.abs(multiples.astype(np.int64)).sum(axis=1).max() < 2**31
