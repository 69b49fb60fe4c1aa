"""Bit-plane reads: with read noise or the ADC on, a tile is read one bit plane of its input
levels at a time (as the chip does), each plane's column currents go through read noise and the
ADC, and the planes are shift-added.

Two paths of the same bits:

- the torch path (`_plane_read`): each plane's float64 product (a convolution for a conv tile),
  then noise, ADC codes and the shift-add as tensor operations; it runs where the sparse kernel
  does not (CUDA, `fuse=False`, a plane hook, a dilated convolution, maps or position counts
  of 64 and more);
- the sparse kernel (`sparse.py`, CPU; conv tiles, and tiles of rows as 1 x 1 convolutions):
  a plane's inputs are 0 or 1, so a position's sums are the sums of the weight (and variance)
  rows of its window's set inputs only. They are exact in float64 in any order (`grid.py`:
  weights and variances sit on a grid that keeps every partial sum exact), so they are the
  product's bits, at a cost in proportion to the set inputs (9% of a second-layer window on
  the PRIME classifier) instead of every product. Noise, ADC and the shift-add run in the same
  operations and order as the torch path, and a normal is drawn only for a column read with
  a nonzero variance: `gauss.py`'s draws are keyed by (row, read, plane, column, position),
  not by order, so the torch path, which draws them all, gets the same values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from primec.backends.isa import Read
from primec.backends.simulator.sparse import sparse_reads

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
        if self._sparse(tile, levels):
            return self._sparse_planes(i, ins, tile, levels)
        integer = levels.round().to(torch.int64)
        used = max(1, min(ins.planes, int(integer.max()).bit_length()))
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

    def _sparse(self, tile: Any, levels: torch.Tensor) -> bool:
        """Whether the sparse kernel reads this tile: on the CPU (fused kernels), no plane hook,
        and a conv tile without dilation on a source map at most 63 pixels wide, or a tile of
        rows read at no more than 63 positions."""
        if not (self.fuse and self.plane_hook is None and levels.device.type == "cpu"):
            return False
        if tile.conv is None:
            return levels.dim() == 3 and levels.shape[1] < 64
        return tuple(tile.gather.dilation) == (1, 1) and levels.shape[-1] < 64

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
            spread = _sqrt(product[:, tile.outputs :])
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

    def _sparse_planes(self, i: int, ins: Read, tile: Any, levels: torch.Tensor) -> torch.Tensor:
        """`_plane_sum` of every row at once by the sparse kernel, divided back from ADC codes
        as `_planes` does: [n, outputs, P]. A tile of rows ([n, P, rows] levels) reads as a
        1 x 1 convolution of its rows over P positions. The kernel rounds the levels and reads
        each row's planes up to its largest level's."""
        if tile.conv is None:
            levels, stride, kernel = levels.transpose(1, 2)[:, :, None, :], (1, 1), (1, 1)
        else:
            stride, kernel = tuple(tile.gather.stride), tuple(tile.gather.kernel)
        n, _, height, width = levels.shape
        kh, kw = kernel
        out_h = (height - kh) // stride[0] + 1
        out_w = (width - kw) // stride[1] + 1
        total = torch.empty((n, tile.outputs, out_h * out_w), dtype=torch.float64)
        keys = self.step.normals.keys if self.noise.read else np.empty(0, dtype=np.uint64)
        sparse_reads(
            levels.to(torch.float64).contiguous().numpy(),
            self._padded_weights(tile),
            (*stride, kh, kw, out_h, out_w),
            ins.planes,
            (keys, i),
            (self._code_scales(i, tile.outputs), 2 ** max(self.noise.adc - 1, 0)),
            total.numpy(),
        )
        return total

    def _padded_weights(self, tile: Any) -> tuple[np.ndarray, np.ndarray]:
        """The kernel's weights: ([groups, rows + 1, outputs'] the tile's weights (and variances)
        and a zero row, as int32 multiples of each group's (current, variance) quanta [groups,
        2]), or float64 weights and quanta 1 for a tile off the int32 grid (ideal plane reads)."""
        if tile.padded is not None:
            return tile.padded
        weights = tile.weights.reshape(tile.chips, -1, tile.weights.shape[-1])
        zero = weights.new_zeros((tile.chips, 1, weights.shape[-1]))
        padded = torch.cat([weights, zero], dim=1).cpu().numpy()
        if tile.quanta is None:
            tile.padded = (padded, np.ones((tile.chips, 2)))
            return tile.padded
        # Per column, its quantum: the currents' for the first `outputs`, then the variances'.
        variance = np.arange(padded.shape[-1]) >= tile.outputs
        quantum = np.where(variance, tile.quanta[:, 1:], tile.quanta[:, :1])[:, None, :]
        tile.padded = (np.rint(padded / quantum).astype(np.int32), tile.quanta)
        return tile.padded

    def _code_scales(self, i: int, outputs: int) -> np.ndarray:
        """Per output, currents to ADC codes (empty without the ADC)."""
        if not self.noise.adc:
            return np.empty(0)
        scale = self.adc_scale[i]
        if isinstance(scale, torch.Tensor):
            return scale.reshape(-1).cpu().numpy()
        return np.full(outputs, scale)


def _sqrt(variance: torch.Tensor) -> torch.Tensor:
    """The correctly rounded square root (IEEE), as the kernel takes it: on the CPU through
    numpy, since torch's CPU `sqrt` is not correctly rounded in every memory layout."""
    if variance.device.type != "cpu":
        return variance.sqrt()
    return torch.from_numpy(np.sqrt(variance.numpy()))
