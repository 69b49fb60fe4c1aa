"""Crossbar reads: each `Read` tile prepared once (rows, columns, G+ - G- weights, a conv form
when every row of a gather is driven), then driven in one product (ideal) or bit plane by bit
plane through read noise and the ADC (`planes.py`), and its partial sums added into the layer's
accumulator. `Gather` and `Zero`
prepare what the reads take in and add into.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from primec.backends.isa import Gather, Read, Zero
from primec.backends.simulator.drift import column_gains, global_gain
from primec.backends.simulator.fused import conv_into, row_drives
from primec.backends.simulator.grid import int32_grid, on_grid
from primec.backends.simulator.planes import PlaneReads

from primec.hardware.geometry import PAIR

# torch's float64 conv unfolds its whole batch first; a few samples per thread keep that in cache.
CONV_CHUNK_BYTES = 1 << 20


@dataclass
class Tile:
    """What one Read needs at run time, prepared once."""

    rows: torch.Tensor  # indices into the source's last axis
    cols: torch.Tensor  # indices into the accumulator's outputs
    row_span: slice | None  # `rows` as a slice when consecutive (a view, not a gather)
    out_span: slice | None
    outputs: int
    weights: torch.Tensor  # [rows, outputs] G+ - G- (uS); with read noise, then the variances
    gather: Gather | None  # the gather that feeds the tile, if one does
    coverage: torch.Tensor | None  # [C*Hp*Wp]: the tile's (row, position) pairs on each pixel
    conv: torch.Tensor | None  # `weights` as [outputs', C, kh, kw] when every row is driven
    chunk: int  # samples per conv call and thread
    writes_all: bool  # the tile's outputs are all of its accumulator's, in order
    chips: int = 1  # chips with cells of their own: weights are [chips, rows, outputs']
    gain: torch.Tensor | None = None  # global drift compensation ([chips, outputs] for chips)
    quanta: np.ndarray | None = None  # bit-plane reads: [chips, 2] current, variance quanta
    padded: Any = None  # the sparse plane kernel's weights with a zero row (`planes.py`)


class CrossbarReads(PlaneReads):
    """The Simulator's crossbar side: tile preparation and the Gather, Zero and Read instructions."""

    program: Any
    noise: Any
    device: torch.device
    step: Any
    fuse: bool  # the fused CPU kernels (`fused.py`) may replace torch ops of the same bits

    def gather(self, i: int, ins: Gather, env: Any, counts: dict) -> None:
        x = env[ins.src]
        if ins.input_dilation != (1, 1):
            x = _dilate(x, ins.input_dilation)
        top, left, bottom, right = ins.padding
        source = F.pad(x, (left, right, top, bottom)) if any(ins.padding) else x
        self.step.sources[ins.dst] = (source, ins)
        env.lazy[ins.dst] = lambda: _im2col(source, ins)

    def zero(self, i: int, ins: Zero, env: Any, counts: dict) -> None:
        shape = (env[self.program.inputs[0]].shape[0], *self.program.buffers[ins.dst])
        env.lazy[ins.dst] = lambda: torch.zeros(shape, dtype=torch.float64, device=self.device)

    def read(self, i: int, ins: Read, env: Any, counts: dict) -> None:
        tile = self.reads[i]
        source = self._source_levels(ins) if tile.gather is not None else None
        levels = source if tile.conv is not None else self._row_levels(ins, tile, env)
        driven = self._driven(ins, tile, levels if source is None else source)
        positions = self.program.buffers[ins.src][0]
        counts["row_drives"] += driven
        counts["cell_reads"] += driven * PAIR.width(tile.outputs)
        counts["adc_conversions"] += ins.planes * positions * tile.outputs
        counts["digital_adds"] += ins.planes * positions * tile.outputs
        if self.per_plane:
            partial = self._planes(i, ins, tile, levels)
        else:
            partial = self._product(tile, levels, tile.chunk * torch.get_num_threads())
        if ins.quantum != 1.0:
            partial = partial * ins.quantum
        if tile.gain is not None:
            partial = _compensated(tile, partial)
        self._accumulate(env, ins.dst, tile, partial)

    def _accumulate(self, env: Any, dst: int, tile: Tile, partial: torch.Tensor) -> None:
        """Add a tile's [b, outputs, P] partial sums into its accumulator."""
        if tile.writes_all and dst in env.lazy:
            # 0 + x is x: the first tile that covers every output is the accumulator.
            del env.lazy[dst]
            env[dst] = partial
            return
        accumulator = env[dst]
        if tile.out_span is not None:
            accumulator[:, tile.out_span] += partial
            return
        accumulator.index_add_(1, tile.cols, partial)

    def _tile(self, read: Read, gather: Gather | None) -> Tile:
        rows, cols = self.program.tensors[read.rows], self.program.tensors[read.cols]
        weights, gain, quanta = self._tile_weights(read, len(rows), len(cols))
        outputs = self.program.buffers[read.dst][0]
        tile = Tile(
            rows=torch.from_numpy(rows.copy()).to(self.device),
            cols=torch.from_numpy(cols.copy()).to(self.device),
            row_span=_span(rows),
            out_span=_span(cols),
            outputs=len(cols),
            weights=weights,
            gather=gather,
            coverage=None,
            conv=None,
            chunk=1,
            writes_all=_span(cols) == slice(0, outputs),
            chips=weights.shape[0] if weights.dim() == 3 else 1,
            gain=gain,
            quanta=quanta,
        )
        if gather is None:
            return tile
        channels = self.program.buffers[gather.src][0]
        positions = self.program.buffers[gather.dst][0]
        tile.coverage = self._coverage(gather, rows)
        every_row = np.array_equal(rows, np.arange(self.program.buffers[gather.dst][1]))
        # Only on the CPU: cuDNN may choose FFT or Winograd convolutions, whose transforms round.
        if every_row and self.device.type == "cpu":
            # [chips x outputs', C, kh, kw]: one group of filters per chip.
            tile.conv = (
                weights.reshape(tile.chips, *weights.shape[-2:])
                .transpose(1, 2)
                .reshape(tile.chips * weights.shape[-1], channels, *gather.kernel)
                .contiguous()
            )
            tile.chunk = max(1, CONV_CHUNK_BYTES // (8 * rows.size * positions))
        return tile

    def _tile_weights(
        self, read: Read, rows: int, cols: int
    ) -> tuple[torch.Tensor, torch.Tensor | None, np.ndarray | None]:
        """[rows, outputs'] G+ - G- (then the read-noise variances), or [chips, rows, outputs']
        when the chips' cells differ; the drift compensation's gain per output, if any; and for
        bit-plane reads each chip's (current, variance) quanta ([chips, 2], `_on_grids`)."""
        per_chip, gains, quanta = [], [], []
        for cells, reference in zip(self.cells, self.references, strict=True):
            block, before = _block(cells, read, rows, cols), _block(reference, read, rows, cols)
            if self.noise.age and self.noise.drift_comp == 2:
                block = block * column_gains(before, block)
            g_pos, g_neg = PAIR.split(block)
            if self.noise.age and self.noise.drift_comp == 1:
                ref_pos, ref_neg = PAIR.split(before)
                gains.append(np.full(cols, global_gain(ref_pos - ref_neg, g_pos - g_neg)))
            columns, chip_quanta = self._on_grids(g_pos, g_neg, rows, read.planes)
            per_chip.append(columns)
            quanta.append(chip_quanta)
        gain = self._tensor(np.stack(gains) if len(gains) > 1 else gains[0]) if gains else None
        grids = None if quanta[0] is None else np.array(quanta, dtype=np.float64)
        if len(per_chip) == 1:
            return self._tensor(per_chip[0]), gain, grids
        return self._tensor(np.stack(per_chip)), gain, grids

    def _on_grids(
        self, g_pos: np.ndarray, g_neg: np.ndarray, rows: int, planes: int
    ) -> tuple[np.ndarray, tuple[float, float] | None]:
        """One chip's [rows, outputs'] G+ - G- (then the read-noise variances) on the grid its
        reads sum them on, and for bit-plane reads the two grids' quanta."""
        diff = g_pos - g_neg
        if not (self.noise.read or self.noise.adc):
            # As formed, G+ - G- is the float32 weight and sums are exact; perturbed cells need
            # a grid.
            return (on_grid(diff, rows, planes) if self.noise.perturbs_cells else diff), None
        # A plane's sums are of binary inputs: int32 multiples of a quantum (`grid.py`).
        current, current_quantum = int32_grid(diff, rows)
        if not self.noise.read:
            return current * current_quantum, (current_quantum, 1.0)
        variance, variance_quantum = int32_grid(self.noise.read**2 * (g_pos**2 + g_neg**2), rows)
        columns = np.concatenate([current * current_quantum, variance * variance_quantum], axis=1)
        return columns, (current_quantum, variance_quantum)

    def _coverage(self, gather: Gather, rows: np.ndarray) -> torch.Tensor:
        """For each pixel of the padded source map: how many (tile row, position) pairs drive it.

        Row drives are then counted on the source map (set bits x coverage), not on the rows.
        """
        channels, height, width = self.program.buffers[gather.src]
        positions, total_rows = self.program.buffers[gather.dst]
        top, left, bottom, right = gather.padding
        size = (
            (height - 1) * gather.input_dilation[0] + 1 + top + bottom,
            (width - 1) * gather.input_dilation[1] + 1 + left + right,
        )
        driven = torch.zeros(total_rows, dtype=torch.float64)
        driven[torch.from_numpy(rows.copy())] = 1.0
        folded = F.fold(
            driven[None, :, None].expand(1, total_rows, positions).contiguous(),
            size,
            tuple(gather.kernel),
            dilation=tuple(gather.dilation),
            stride=tuple(gather.stride),
        )
        return folded.reshape(-1).to(self.device)

    def reads_in_order(self) -> list[tuple[int, Read]]:
        """Every Read with its instruction index."""
        return [(i, ins) for i, ins in enumerate(self.program.instrs) if isinstance(ins, Read)]

    def _source_levels(self, ins: Read) -> torch.Tensor:
        """The gather's padded source map in input levels, shared by the tiles of a layer."""
        key = ("levels", ins.src, ins.quantum)
        if key not in self.step.cache:
            source, _ = self.step.sources[ins.src]
            levels = source / ins.quantum if ins.quantum != 1.0 else source
            self.step.cache[key] = self._quantise(levels)
        return self.step.cache[key]

    def _row_levels(self, ins: Read, tile: Tile, env: Any) -> torch.Tensor:
        """The tile's rows of src in input levels: [b, P, rows]."""
        x = env[ins.src]
        x = x[..., tile.row_span] if tile.row_span is not None else x.index_select(-1, tile.rows)
        return self._quantise(x / ins.quantum if ins.quantum != 1.0 else x)

    def _quantise(self, levels: torch.Tensor) -> torch.Tensor:
        if not self.noise.input:
            return levels
        return levels.round().clamp(0, 2**self.noise.input - 1)

    def _driven(self, ins: Read, tile: Tile, levels: torch.Tensor) -> torch.Tensor:
        """Per sample, the read pulses the row drivers send: the set bits of every driven level."""
        binary = ins.planes == 1 and not self.noise.input
        if self.fuse and levels.dtype == torch.float64:
            return row_drives(levels, tile.coverage, binary)  # no coverage: each level once
        if tile.coverage is None:
            return self._bits(levels, ins.planes).sum(dim=(1, 2)).to(torch.int64)
        key = ("bits", ins.src, ins.quantum)
        if key not in self.step.cache:
            self.step.cache[key] = self._bits(levels, ins.planes).flatten(1)
        return (self.step.cache[key] @ tile.coverage).to(torch.int64)

    def _bits(self, levels: torch.Tensor, planes: int) -> torch.Tensor:
        """Set bits of each integer level (a binary drive is its own count; else a table)."""
        if planes == 1 and not self.noise.input:
            return levels
        integer = levels.round().to(torch.int64).clamp_(0, len(self.popcount) - 1)
        return self.popcount.index_select(0, integer.flatten()).view(integer.shape)

    def _product(self, tile: Tile, x: torch.Tensor, samples_per_conv: int) -> torch.Tensor:
        """[n, outputs', P] = the tile's rows of x times its weights (exact sums in float64)."""
        if tile.chips > 1:
            return _chip_product(tile, x, samples_per_conv)
        if tile.conv is None:
            return (x @ tile.weights).transpose(1, 2)
        g = tile.gather
        if tuple(g.dilation) == (1, 1) and x.dtype == torch.float64:
            return conv_into(x, tile.conv, tuple(g.stride), samples_per_conv).flatten(2)
        parts = [
            F.conv2d(part, tile.conv, stride=tuple(g.stride), dilation=tuple(g.dilation))
            for part in x.split(samples_per_conv)
        ]
        return (parts[0] if len(parts) == 1 else torch.cat(parts)).flatten(2)


def _block(cells: dict, read: Read, rows: int, cols: int) -> np.ndarray:
    """The tile's cells in its array: rows x (outputs as pairs)."""
    return cells[(read.macro, read.array)][
        read.row0 : read.row0 + rows, read.col0 : read.col0 + PAIR.width(cols)
    ]


def _compensated(tile: Tile, partial: torch.Tensor) -> torch.Tensor:
    """A tile's [rows, outputs, P] partial sums times its drift compensation gains (per chip)."""
    if tile.gain.dim() == 1:
        return partial * tile.gain[:, None]
    chips = tile.gain.shape[0]
    per_chip = partial.view(-1, chips, *partial.shape[1:]) * tile.gain[None, :, :, None]
    return per_chip.view(partial.shape)


def _chip_product(tile: Tile, x: torch.Tensor, samples_per_conv: int) -> torch.Tensor:
    """`_product` for tiles whose cells differ per chip: x's rows are sample-major (sample s's
    chips at rows s*chips .. s*chips + chips - 1), so a sample's rows are one grouped
    convolution's input channels as they lie (one group of filters per chip, no copy); a matrix
    product batches the chips. The sums stay exact, so the grouping cannot change a bit."""
    chips = tile.chips
    n = x.shape[0] // chips
    if tile.conv is None:
        rows = x.view(n, chips, *x.shape[1:]).transpose(0, 1).reshape(chips, -1, x.shape[2])
        product = torch.bmm(rows, tile.weights)  # [chips, n * P, outputs']
        product = product.view(chips, n, x.shape[1], -1).transpose(0, 1)
        return product.reshape(n * chips, x.shape[1], -1).transpose(1, 2)
    g = tile.gather
    grouped = x.reshape(n, -1, *x.shape[2:])
    parts = [
        F.conv2d(part, tile.conv, stride=tuple(g.stride), dilation=tuple(g.dilation), groups=chips)
        for part in grouped.split(max(1, samples_per_conv // chips))
    ]
    out = parts[0] if len(parts) == 1 else torch.cat(parts)  # [n, chips x outputs', Ho, Wo]
    return out.view(n * chips, -1, out.shape[2] * out.shape[3])


def _im2col(x: torch.Tensor, ins: Gather) -> torch.Tensor:
    """[b, P, R] rows of a padded map; strided views, then one copy (faster than F.unfold)."""
    (kh, kw), (sh, sw), (dh, dw) = ins.kernel, ins.stride, ins.dilation
    windows = x.unfold(2, (kh - 1) * dh + 1, sh).unfold(3, (kw - 1) * dw + 1, sw)[..., ::dh, ::dw]
    b, c, ho, wo = windows.shape[:4]
    return windows.permute(0, 2, 3, 1, 4, 5).reshape(b, ho * wo, c * kh * kw)


def _dilate(x: torch.Tensor, factor: tuple[int, ...]) -> torch.Tensor:
    """Insert factor-1 zeros between pixels (the input of a transposed conv as a conv)."""
    b, c, h, w = x.shape
    out = x.new_zeros((b, c, (h - 1) * factor[0] + 1, (w - 1) * factor[1] + 1))
    out[:, :, :: factor[0], :: factor[1]] = x
    return out


def _span(indices: np.ndarray) -> slice | None:
    """A slice standing for consecutive ascending indices (a view instead of a gather), if any."""
    if len(indices) == 0 or not np.all(np.diff(indices) == 1):
        return None
    return slice(int(indices[0]), int(indices[0]) + len(indices))
