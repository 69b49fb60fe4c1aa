"""Bit-plane reads: with read noise or the ADC on, a tile is read one bit plane of its input
levels at a time (as the chip does), each plane's column currents go through read noise and the
ADC, and the planes are shift-added.

Two paths of the same bits:

- the torch path (`_plane_read`): each plane's float64 product (a convolution for a conv tile),
  then noise, ADC codes and the shift-add as tensor operations; it runs where the sparse kernel
  does not (CUDA, `fuse=False`, tiles without a conv form, a plane hook);
- the sparse kernel (`_sparse_planes`, CPU, conv tiles): a plane's inputs are 0 or 1, so its
  sums are sums of weights (and of variances) over the set inputs: scattered, pixel by set
  pixel, into the positions its window reaches. Those sums are exact in float64 in any order
  (`grid.py`: the weights and variances sit on a grid that keeps every partial sum exact), so
  they are the convolution's bits, at a cost in proportion to the set bits (5% of the inputs
  on the PRIME classifier) instead of every product. Noise, ADC and the shift-add then run in
  the same operations and order as the torch path, and a normal is drawn only for a column
  read with a nonzero variance: `gauss.py`'s draws are keyed by (row, read, plane, column,
  position), not by order, so the torch path, which draws them all, gets the same values.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import torch
from primec.backends.isa import Read
from primec.backends.simulator.gauss import block_key, draw_normals

# Bit-plane reads take this many conv chunks at a time through products, noise and ADC, in one
# conv call: fewer, larger calls than ideal reads make, whose outputs still stay in cache.
PLANE_CHUNKS = 4


class PlaneReads:
    """The crossbar's bit-plane reads (a mixin of `CrossbarReads`)."""

    noise: Any
    fuse: bool
    plane_hook: Any
    adc_scale: dict
    reads: dict
    step: Any

    def _planes(self, i: int, ins: Read, tile: Any, levels: torch.Tensor) -> torch.Tensor:
        """One read per bit plane, each through read noise and the ADC, then shift-add.

        Planes above the batch's largest level are all zero: they add exactly nothing (no
        current, no noise, ADC of zero), so they are not read. With the ADC on, the shift-add
        sums integer ADC codes (exact) and converts back to uS once.
        """
        integer = levels.round().to(torch.int64)
        used = max(1, min(ins.planes, int(integer.max()).bit_length()))
        if self._sparse(tile, integer):
            total = self._sparse_planes(i, tile, integer, used)
            return total.div_(self.adc_scale[i]) if self.noise.adc else total
        # A few samples at a time, so that every plane's products, noise and codes stay in cache.
        size = PLANE_CHUNKS * tile.chunk * torch.get_num_threads()
        # Whole samples: all chips of a sample meet in one grouped convolution.
        size = len(integer) if tile.conv is None else -(-size // tile.chips) * tile.chips
        parts = [
            self._plane_sum(i, tile, integer[first : first + size], used, first)
            for first in range(0, len(integer), size)
        ]
        total = parts[0] if len(parts) == 1 else torch.cat(parts)
        return total.div_(self.adc_scale[i]) if self.noise.adc else total

    def _sparse(self, tile: Any, integer: torch.Tensor) -> bool:
        """Whether the sparse kernel reads this tile: on the CPU (fused kernels), no plane hook,
        a conv tile without dilation on a source map at most 63 pixels wide. (Tiles of rows
        keep the matrix product: their float64 sums are the product's bits only where they
        are exact, which the grid guarantees for perturbed cells but not for every compiled
        weight matrix.)"""
        if not (self.fuse and self.plane_hook is None and tile.conv is not None):
            return False
        return tuple(tile.gather.dilation) == (1, 1) and integer.shape[-1] < 64

    def _plane_sum(
        self, i: int, tile: Any, integer: torch.Tensor, used: int, first: int
    ) -> torch.Tensor:
        """The shift-add of `used` planes of the samples first, first + 1, ... of the batch."""
        total = self._plane_read(i, 0, tile, integer, first)
        for k in range(1, used):
            # 2^k x plane is exact, so the one rounding is the add's, fused or not.
            total.add_(self._plane_read(i, k, tile, integer, first), alpha=2**k)
        return total

    def _plane_read(
        self, i: int, k: int, tile: Any, integer: torch.Tensor, first: int
    ) -> torch.Tensor:
        """Bit plane k's [n, outputs, P] currents (uS x drive units) after read noise, as ADC
        codes when the ADC is on."""
        product = self._product(tile, ((integer >> k) & 1).to(torch.float64), len(integer))
        current = product[:, : tile.outputs]
        if self.plane_hook is not None:
            self.plane_hook(i, current)
        if self.noise.read:
            spread = product[:, tile.outputs :].sqrt_()
            normals = self._normals(i, k, spread.shape, first)
            # Two roundings, never a fused multiply-add, whose use could vary with the layout.
            current = spread.mul_(normals).add_(current)
        if not self.noise.adc:
            return current
        # Differential current (uA) in ADC codes, rounded, clipped to the B-bit codes
        # -2^(B-1) .. 2^(B-1) - 1 (rounding first: the clip bounds are integers).
        top = 2 ** (self.noise.adc - 1)
        return current.mul_(self.adc_scale[i]).round_().clamp_(-top, top - 1)

    def _normals(self, i: int, k: int, shape: torch.Size, first: int) -> torch.Tensor:
        """Read i's draws for plane k and rows first.., [n, outputs, P]: draw o x P + p of
        (read i, plane k) in each row's stream."""
        keys = self.step.normals.keys[first : first + shape[0]]
        draws = self.step.normals.draws(keys, i, k, shape[1] * shape[2])
        return torch.from_numpy(draws).view(shape).to(self.device)

    def _sparse_planes(self, i: int, tile: Any, integer: torch.Tensor, used: int) -> torch.Tensor:
        """`_plane_sum` of every row at once by the sparse kernel: [n, outputs, P]."""
        stride, kernel = tuple(tile.gather.stride), tuple(tile.gather.kernel)
        n, _, height, width = integer.shape
        kh, kw = kernel
        out_h = (height - kh) // stride[0] + 1
        out_w = (width - kw) // stride[1] + 1
        weights = self._padded_weights(tile)
        total = torch.empty((n, tile.outputs, out_h * out_w), dtype=torch.float64)
        keys = self.step.normals.keys if self.noise.read else np.empty(0, dtype=np.uint64)
        _sparse_reads(
            integer.contiguous().numpy(),
            weights,
            (*stride, kh, kw, out_h, out_w),
            used,
            keys,
            i,
            self._code_scales(i, tile.outputs),
            2 ** max(self.noise.adc - 1, 0),
            total.numpy(),
        )
        return total

    def _padded_weights(self, tile: Any) -> np.ndarray:
        """[groups, rows + 1, outputs'] the tile's weights (and variances) and a zero row."""
        if tile.padded is None:
            weights = tile.weights.reshape(tile.chips, -1, tile.weights.shape[-1])
            zero = weights.new_zeros((tile.chips, 1, weights.shape[-1]))
            tile.padded = torch.cat([weights, zero], dim=1).cpu().numpy()
        return tile.padded

    def _code_scales(self, i: int, outputs: int) -> np.ndarray:
        """Per output, currents to ADC codes (empty without the ADC)."""
        if not self.noise.adc:
            return np.empty(0)
        scale = self.adc_scale[i]
        if isinstance(scale, torch.Tensor):
            return scale.reshape(-1).cpu().numpy()
        return np.full(outputs, scale)


@numba.njit(cache=True, nogil=True)
def _sparse_reads(levels, weights, geometry, planes, keys, read, scales, top, total):
    """levels [n, C, H, W] (int64, a gather's padded source map, W <= 64), weights [groups,
    C x kh x kw + 1, outputs'] (G+ - G-, then the variances when `keys`, the rows' noise
    streams, are given; the last row zero), geometry (stride, kernel, output height and
    width); row a reads with group a % groups (rows are sample-major, a group per chip).
    total [n, outputs, P] <- the shift-add of the planes' currents through noise and, with
    `scales` (codes per current unit, per output), the ADC."""
    masks = np.empty(levels.shape[1:3], dtype=np.uint64)
    work = (
        np.empty(weights.shape[-1]),  # the window's sums
        np.empty(levels.shape[1] * geometry[2] * geometry[3] + 4, dtype=np.int64),  # set rows
        np.empty(total.shape[1]),  # normals
    )
    total[:] = 0.0
    for a in range(levels.shape[0]):
        largest = levels[a].max()
        key = keys[a] if len(keys) else np.uint64(0)
        for k in range(planes):
            if largest >> k == 0:
                break  # this and every higher plane of the row is zero: it adds nothing
            _bit_masks(levels[a], k, masks)
            block = block_key(key, read, k) if len(keys) else np.uint64(0)
            plane = (key, block, read, k)
            _plane(
                masks, weights[a % weights.shape[0]], geometry, work, plane, scales, top, total[a]
            )


@numba.njit(cache=True, nogil=True)
def _bit_masks(levels, k, masks):
    """masks[c, y]: bit x set where bit k of levels[c, y, x] is."""
    for c in range(levels.shape[0]):
        for y in range(levels.shape[1]):
            m = np.uint64(0)
            for x in range(levels.shape[2]):
                m |= np.uint64((levels[c, y, x] >> k) & 1) << np.uint64(x)
            masks[c, y] = m


# The bit index of a power of two below 2^64: (bit x DE_BRUIJN) >> 58 indexes this table.
DE_BRUIJN = 0x022FDD63CC95386D
BIT_INDEX = np.zeros(64, dtype=np.int64)
for _bit in range(64):
    BIT_INDEX[((1 << _bit) * DE_BRUIJN & (2**64 - 1)) >> 58] = _bit


@numba.njit(cache=True, nogil=True)
def _plane(masks, weights, geometry, work, plane, scales, top, total):
    """One plane of one row, position by position: the sum of the weights (and variances)
    of the window's set inputs, then noise and ADC, into total [outputs, P]. A window without
    a set input reads no current and no noise: codes 0, nothing to add."""
    sh, sw, kh, kw, out_h, out_w = geometry
    acc, rows, normals = work
    window = np.uint64((1 << kw) - 1)
    for oy in range(out_h):
        anywhere = np.uint64(0)  # the input columns set in any of the windows' rows
        for c in range(masks.shape[0]):
            for ky in range(kh):
                anywhere |= masks[c, oy * sh + ky]
        for ox in range(out_w):
            shift = np.uint64(ox * sw)
            if (anywhere >> shift) & window == 0:
                continue
            n = _set_rows(masks, oy * sh, shift, kh, kw, rows)
            for t in range(n, n + 3):
                rows[t] = len(weights) - 1  # the zero row
            _window_sum(weights, rows, n, acc)
            _convert(acc, plane, scales, top, total, oy * out_w + ox, normals)


@numba.njit(cache=True, nogil=True)
def _set_rows(masks, y, shift, kh, kw, rows):
    """rows[:n] = the weight rows (c, ky, kx) of the window at row y, column `shift` whose
    input bit is set; returns n."""
    window = np.uint64((1 << kw) - 1)
    n = 0
    for c in range(masks.shape[0]):
        for ky in range(kh):
            m = (masks[c, y + ky] >> shift) & window
            base = (c * kh + ky) * kw
            while m:
                low = m & (~m + np.uint64(1))
                rows[n] = base + BIT_INDEX[(low * np.uint64(DE_BRUIJN)) >> np.uint64(58)]
                n += 1
                m ^= low
    return n


@numba.njit(cache=True, nogil=True)
def _window_sum(weights, rows, n, acc):
    """acc = the sum of weights[rows[:n]], four rows per pass over acc (sums of on-grid values:
    exact in any order and grouping)."""
    for o in range(len(acc)):
        acc[o] = (weights[rows[0], o] + weights[rows[1], o]) + (
            weights[rows[2], o] + weights[rows[3], o]
        )
    for t in range(4, n, 4):
        r0, r1, r2, r3 = rows[t], rows[t + 1], rows[t + 2], rows[t + 3]
        for o in range(len(acc)):
            acc[o] += (weights[r0, o] + weights[r1, o]) + (weights[r2, o] + weights[r3, o])


@numba.njit(cache=True, nogil=True)
def _convert(acc, plane, scales, top, total, j, normals):
    """Position j of one plane: acc [outputs'] through noise (sqrt(variance) x normal +
    current, two roundings, as the torch path) and the ADC (round half to even, clip), then
    total[:, j] + 2^k x codes."""
    key, block, read, k = plane
    outputs, positions = total.shape
    noise = len(acc) > outputs
    weight = 2.0**k
    if noise:
        draw_normals(key, block, read, k, j, positions, normals)
    for o in range(outputs):
        current = acc[o]
        if noise and acc[outputs + o] > 0.0:
            current = np.sqrt(acc[outputs + o]) * normals[o] + current
        if len(scales):
            code = np.rint(current * scales[o])
            current = -top if code < -top else (top - 1 if code > top - 1 else code)
        total[o, j] = total[o, j] + current * weight
