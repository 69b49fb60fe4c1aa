"""The simulator: runs a `Program` (from a .pbc or .pmac file) with torch, batched, on CPU or CUDA.

Ideal mode reproduces the model exactly: partial sums of (integer-level inputs) x (float32
conductance differences) are exact in float64, so summation order cannot matter, and the scale
steps round in the same order as the model (`docs/simulator.md`). The same argument lets a tile
that drives every row of a gather run (on the CPU) as a float64 convolution of the gather's
much smaller source map instead of a matrix product of the materialised rows.

Non-idealities are opt-in, seeded and replayable: every random draw is keyed by (seed, sample
index, timestep) or by (seed, macro, array), never by batch position, and perturbed
conductances and read-noise variances sit on a fixed-point grid fine enough to be physically
irrelevant and coarse enough for their sums to stay exact, so batch size and order do not
change results.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from primec.backends.isa import (
    Affine,
    Binary,
    Const,
    EndStep,
    ExitTest,
    Gather,
    Instr,
    Integrate,
    LeakyRelu,
    Lif,
    Pool,
    Read,
    ReadoutExp,
    ReadoutMean,
    Reshape,
    Scale,
    Zero,
)
from primec.backends.program import Program

from primec.errors import PrimecError
from primec.hardware.earlyexit import ExitController, ExitTable, predictions

COUNTERS = (
    "cell_reads",
    "row_drives",
    "adc_conversions",
    "digital_adds",
    "digital_multiplies",
    "neuron_updates",
    "steps",
)
FLOAT64_BITS = 53
# torch's float64 conv unfolds its whole batch first; a few samples per thread keep that in cache.
CONV_CHUNK_BYTES = 1 << 20
# Bit-plane reads take this many conv chunks at a time through products, noise and ADC, in one
# conv call: fewer, larger calls than ideal reads make, whose outputs still stay in cache.
PLANE_CHUNKS = 4


@dataclass(frozen=True)
class Noise:
    """Device non-idealities; all zero is ideal. See `docs/simulator.md`."""

    program: float = 0.0  # relative std of each cell's static conductance error
    read: float = 0.0  # relative std of each cell's current on every read
    stuck: float = 0.0  # fraction of cells stuck (half at g_off, half at g_max)
    adc: int = 0  # ADC bits per read (0: ideal converter)
    input: int = 0  # input driver bits (0: as many as the values need)
    seed: int = 0

    @property
    def ideal(self) -> bool:
        """No non-ideality switched on."""
        return not (self.program or self.read or self.stuck or self.adc or self.input)

    @staticmethod
    def parse(text: str, seed: int = 0) -> Noise:
        """Read `program=0.05,read=0.02,stuck=0.001,adc=8,input=8`."""
        known = {f.name: f.type for f in fields(Noise) if f.name != "seed"}
        values: dict[str, float | int] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, _, raw = item.partition("=")
            if key not in known or not raw:
                raise PrimecError(
                    f"bad noise setting {item!r}",
                    hint=f"use KEY=VALUE with KEY one of {', '.join(known)}, e.g. read=0.02,adc=8",
                )
            values[key] = _number(key, raw, known[key])
        return Noise(**values, seed=seed)


def _number(key: str, raw: str, kind: str) -> float | int:
    try:
        value = int(raw) if kind == "int" else float(raw)
    except ValueError:
        raise PrimecError(
            f"noise setting {key}={raw!r} is not a{'n integer' if kind == 'int' else ' number'}"
        ) from None
    if value < 0 or (key == "stuck" and value > 1):
        raise PrimecError(f"noise setting {key}={raw} is out of range")
    return value


@dataclass
class SimResult:
    """Per-sample results of a run."""

    pred: np.ndarray  # [N] prediction at the exit step
    exit_step: np.ndarray  # [N] steps executed (1-based)
    readouts: np.ndarray  # [N, T, ...] readout after every step; NaN after the exit step
    counts: dict[str, np.ndarray]  # per operation class, per sample, over the executed steps
    seconds: float = 0.0
    spikes: dict[int, np.ndarray] = field(default_factory=dict)  # buffer -> [N, T, ...] when traced


def _stream_seed(*keys: int) -> int:
    digest = hashlib.sha256(",".join(map(str, keys)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass
class _Tile:
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


class _Env(dict):
    """One step's buffers by number. Gathered rows and cleared accumulators are made on first
    read, so a conv tile (which reads the gather's source) or a tile that writes every output of
    its accumulator never pays for them."""

    def __init__(self, values: dict[int, torch.Tensor]) -> None:
        super().__init__(values)
        self.lazy: dict[int, Callable[[], torch.Tensor]] = {}

    def __missing__(self, buffer: int) -> torch.Tensor:
        self[buffer] = self.lazy.pop(buffer)()
        return self[buffer]


class _Normals:
    """Read-noise normals of one step: one stream per (sample, step), drawn a bit plane at a time.

    Block k holds plane k of every read, in program order. Blocks are drawn in order and only as
    far as a read needs, and block k's values depend on (seed, sample, step, k) alone, so a batch
    whose inputs use fewer planes draws less without changing any sample's numbers.
    """

    def __init__(
        self, seed: int, samples: np.ndarray, t: int, sizes: list[int], device: torch.device
    ) -> None:
        self.generators = [
            torch.Generator().manual_seed(_stream_seed(seed, 2, sample, t))
            for sample in samples.tolist()
        ]
        self.sizes = sizes
        self.device = device
        self.blocks: list[torch.Tensor] = []

    def block(self, k: int) -> torch.Tensor:
        """[samples, size of block k] standard normals (float32)."""
        while len(self.blocks) <= k:
            size = self.sizes[len(self.blocks)]
            draws = torch.empty((len(self.generators), size), dtype=torch.float32)
            for row, generator in zip(draws, self.generators, strict=True):
                torch.randn(size, generator=generator, out=row)
            self.blocks.append(draws.to(self.device))
        return self.blocks[k]


@dataclass
class _Step:
    """What one timestep of one batch keeps between instructions."""

    sources: dict[int, tuple[torch.Tensor, Gather]]  # gather dst -> (padded source map, gather)
    cache: dict[tuple[Any, ...], torch.Tensor]  # per source and quantum: levels, set bits
    normals: _Normals | None


class Simulator:
    """Executes a program on batches of samples."""

    def __init__(
        self,
        program: Program,
        noise: Noise | None = None,
        device: str = "cpu",
        trace: tuple[int, ...] = (),
    ) -> None:
        self.program = program
        self.noise = noise or Noise()
        self.device = torch.device(device)
        self.trace = trace
        params = program.meta["target_parameters"]
        self.volts = params["read.voltage_v"]
        self.adc_lsb_ua = 2 * params["adc.full_scale_ua"] / 2 ** max(self.noise.adc, 1)
        self.full_scale_ua = params["adc.full_scale_ua"]
        self.adc_scale = self.volts / self.adc_lsb_ua  # conductance sum (uS) -> ADC codes
        self.cells = {
            key: self._chip_cells(key, cells, params) for key, cells in program.arrays.items()
        }
        values = torch.arange(2**16)
        self.popcount = sum((values >> k) & 1 for k in range(16)).to(self.device, torch.float64)
        gathers = {ins.dst: ins for ins in program.instrs if isinstance(ins, Gather)}
        self.reads = {
            i: self._tile(ins, gathers.get(ins.src))
            for i, ins in enumerate(program.instrs)
            if isinstance(ins, Read)
        }
        self.constants = {
            ins.dst: self._tensor(program.tensors[ins.tensor])
            for ins in program.instrs
            if isinstance(ins, Const)
        }
        affines = [ins for ins in program.instrs if isinstance(ins, Affine)]
        self.periphery = {
            name: self._tensor(program.tensors[name])
            for ins in affines
            for name in (ins.scale, ins.shift)
        }
        self.accumulators = {ins.dst for ins in program.instrs if isinstance(ins, Zero)}
        self.own_states = self._own_states()
        self.schedule = [
            (i, ins, EXECUTE[type(ins)])
            for i, ins in enumerate(program.instrs)
            if not isinstance(ins, ExitTest | EndStep | Const)
        ]
        # Only noise and the ADC act on each bit plane; otherwise one product is the same sum.
        self.per_plane = bool(self.noise.read or self.noise.adc)
        self.noise_layout, self.noise_blocks = self._noise_layout()
        self.step = _Step({}, {}, None)

    def _own_states(self) -> set[int]:
        """Lif instructions whose state tensors are theirs alone (no other instruction, trace or
        step output reads them, and they feed no other state): they update them in place."""
        next_value = dict(self.program.states)
        feeds = Counter(next_value.values())
        readers = Counter(
            getattr(ins, name) for ins in self.program.instrs for name in INPUTS.get(type(ins), ())
        )
        return {
            i
            for i, ins in enumerate(self.program.instrs)
            if isinstance(ins, Lif)
            and next_value.get(ins.membrane) == ins.membrane_out
            and next_value.get(ins.spike) == ins.spike_out
            and readers[ins.membrane] == readers[ins.spike] == 1
            and feeds[ins.membrane_out] == feeds[ins.spike_out] == 1
            and not {ins.membrane, ins.spike} & set(self.trace)
            and not {ins.membrane_out, ins.spike_out} & set(self.program.outputs)
        }

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.tensor(np.asarray(array, dtype=np.float64), device=self.device)

    def _chip_cells(self, key: tuple[int, int], cells: np.ndarray, params: dict) -> np.ndarray:
        """The cells as the chip has them: static programming error and stuck cells applied."""
        if not (self.noise.program or self.noise.stuck):
            return cells
        rng = np.random.default_rng(_stream_seed(self.noise.seed, 1, *key))
        chip = cells * (1 + self.noise.program * rng.standard_normal(cells.shape))
        chip = np.clip(chip, 0.0, None)
        stuck = rng.random(cells.shape)
        chip = np.where(stuck < self.noise.stuck / 2, params["cells.g_off_us"], chip)
        return np.where(
            (stuck >= self.noise.stuck / 2) & (stuck < self.noise.stuck),
            params["cells.g_max_us"],
            chip,
        )

    def _tile(self, read: Read, gather: Gather | None) -> _Tile:
        rows, cols = self.program.tensors[read.rows], self.program.tensors[read.cols]
        cells = self.cells[(read.macro, read.array)]
        block = cells[read.row0 : read.row0 + len(rows), read.col0 : read.col0 + 2 * len(cols)]
        g_pos, g_neg = block[:, 0::2], block[:, 1::2]
        diff = g_pos - g_neg
        # As formed, G+ - G- is the float32 weight and sums are exact; perturbed cells need a grid.
        if self.noise.program or self.noise.stuck:
            diff = _on_grid(diff, len(rows), read.planes)
        columns = [diff]
        if self.noise.read:
            variance = self.noise.read**2 * (g_pos**2 + g_neg**2)
            columns.append(_on_grid(variance, len(rows), 1))
        weights = self._tensor(np.concatenate(columns, axis=1))
        outputs = self.program.buffers[read.dst][0]
        tile = _Tile(
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
        )
        if gather is None:
            return tile
        channels = self.program.buffers[gather.src][0]
        positions = self.program.buffers[gather.dst][0]
        tile.coverage = self._coverage(gather, rows)
        every_row = np.array_equal(rows, np.arange(self.program.buffers[gather.dst][1]))
        # Only on the CPU: cuDNN may choose FFT or Winograd convolutions, whose transforms round.
        if every_row and self.device.type == "cpu":
            tile.conv = weights.T.reshape(weights.shape[1], channels, *gather.kernel).contiguous()
            tile.chunk = max(1, CONV_CHUNK_BYTES // (8 * rows.size * positions))
        return tile

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

    def _noise_layout(self) -> tuple[dict[tuple[int, int], tuple[int, int]], list[int]]:
        """Where each (read, bit plane)'s draws sit in its plane's block, and the block sizes."""
        layout: dict[tuple[int, int], tuple[int, int]] = {}
        sizes: list[int] = []
        planes = max((read.planes for _, read in self.reads_in_order()), default=0)
        for k in range(planes if self.noise.read else 0):
            offset = 0
            for i, read in self.reads_in_order():
                if k >= read.planes:
                    continue
                size = self.program.buffers[read.src][0] * self.reads[i].outputs
                layout[(i, k)] = (offset, size)
                offset += size
            sizes.append(offset)
        return layout, sizes

    def reads_in_order(self) -> list[tuple[int, Read]]:
        """Every Read with its instruction index."""
        return [(i, ins) for i, ins in enumerate(self.program.instrs) if isinstance(ins, Read)]

    def run(
        self,
        x: np.ndarray,
        batch_size: int = 64,
        early_exit: bool = True,
        progress: Callable[[int, int], None] | None = None,
        sample_ids: np.ndarray | None = None,
    ) -> SimResult:
        """Simulate every sample of x [N, T, ...]; the exit table applies unless early_exit is off.

        `sample_ids` [N] key each sample's read-noise streams (default: its position in x), so a
        subset or reordering of a data set can draw the noise the whole set would.
        """
        started = time.perf_counter()
        n, steps = x.shape[:2]
        ids = np.arange(n) if sample_ids is None else np.asarray(sample_ids, dtype=np.int64)
        readout_shape = self.program.buffers[self.program.readout]
        out = SimResult(
            pred=np.zeros(n, dtype=np.int64),
            exit_step=np.zeros(n, dtype=np.int64),
            readouts=np.full((n, steps, *readout_shape), np.nan),
            counts={name: np.zeros(n, dtype=np.int64) for name in COUNTERS},
        )
        out.spikes = {b: np.zeros((n, steps, *self.program.buffers[b])) for b in self.trace}
        table = self.program.exit_table if early_exit else None
        for start in range(0, n, batch_size):
            self._batch(x, np.arange(start, min(start + batch_size, n)), ids, table, out)
            if progress:
                progress(min(start + batch_size, n), n)
        out.pred = predictions(out.readouts[np.arange(n), out.exit_step - 1].reshape(n, -1))
        out.seconds = time.perf_counter() - started
        return out

    def _batch(
        self,
        x: np.ndarray,
        samples: np.ndarray,
        ids: np.ndarray,
        table: ExitTable | None,
        out: SimResult,
    ) -> None:
        steps = x.shape[1]
        data = torch.from_numpy(np.ascontiguousarray(x[samples], dtype=np.float64)).to(self.device)
        states = {
            s: torch.zeros(
                (len(samples), *self.program.buffers[s]), dtype=torch.float64, device=self.device
            )
            for s, _ in self.program.states
        }
        controller = ExitController(table, steps, len(samples))
        active = samples
        for t in range(1, steps + 1):
            env = _Env(self.constants | states | {self.program.inputs[0]: data[:, t - 1]})
            counts: dict[str, Any] = dict.fromkeys(COUNTERS, 0)
            normals = (
                _Normals(self.noise.seed, ids[active], t, self.noise_blocks, self.device)
                if self.noise.read
                else None
            )
            self.step = _Step({}, {}, normals)
            for i, ins, execute in self.schedule:
                execute(self, i, ins, env, counts)
            counts["steps"] += 1
            readout = env[self.program.readout].cpu().numpy()
            out.readouts[active, t - 1] = readout
            for b in self.trace:
                out.spikes[b][active, t - 1] = env[b].cpu().numpy()
            for name, value in counts.items():
                out.counts[name][active] += _numpy(value)
            stop = controller.step(t, readout)
            out.exit_step[active[stop]] = t
            states = {s: env[nxt] for s, nxt in self.program.states}
            if not stop.any():
                continue
            keep = torch.from_numpy(~stop).to(self.device)
            states = {s: value[keep] for s, value in states.items()}
            data, active = data[keep], active[~stop]
            controller.keep(~stop)
            if active.size == 0:
                return

    # ---- instructions ------------------------------------------------------------------------

    def gather(self, i: int, ins: Gather, env: _Env, counts: dict) -> None:
        x = env[ins.src]
        if ins.input_dilation != (1, 1):
            x = _dilate(x, ins.input_dilation)
        top, left, bottom, right = ins.padding
        source = F.pad(x, (left, right, top, bottom)) if any(ins.padding) else x
        self.step.sources[ins.dst] = (source, ins)
        env.lazy[ins.dst] = lambda: _im2col(source, ins)

    def zero(self, i: int, ins: Zero, env: _Env, counts: dict) -> None:
        shape = (env[self.program.inputs[0]].shape[0], *self.program.buffers[ins.dst])
        env.lazy[ins.dst] = lambda: torch.zeros(shape, dtype=torch.float64, device=self.device)

    def read(self, i: int, ins: Read, env: _Env, counts: dict) -> None:
        tile = self.reads[i]
        source = self._source_levels(ins) if tile.gather is not None else None
        levels = source if tile.conv is not None else self._row_levels(ins, tile, env)
        driven = self._driven(ins, tile, levels if source is None else source)
        positions = self.program.buffers[ins.src][0]
        counts["row_drives"] += driven
        counts["cell_reads"] += driven * 2 * tile.outputs
        counts["adc_conversions"] += ins.planes * positions * tile.outputs
        counts["digital_adds"] += ins.planes * positions * tile.outputs
        if self.per_plane:
            partial = self._planes(i, ins, tile, levels)
        else:
            partial = self._product(tile, levels, tile.chunk * torch.get_num_threads())
        if ins.quantum != 1.0:
            partial = partial * ins.quantum
        self._accumulate(env, ins.dst, tile, partial)

    def _accumulate(self, env: _Env, dst: int, tile: _Tile, partial: torch.Tensor) -> None:
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

    def _source_levels(self, ins: Read) -> torch.Tensor:
        """The gather's padded source map in input levels, shared by the tiles of a layer."""
        key = ("levels", ins.src, ins.quantum)
        if key not in self.step.cache:
            source, _ = self.step.sources[ins.src]
            levels = source / ins.quantum if ins.quantum != 1.0 else source
            self.step.cache[key] = self._quantise(levels)
        return self.step.cache[key]

    def _row_levels(self, ins: Read, tile: _Tile, env: _Env) -> torch.Tensor:
        """The tile's rows of src in input levels: [b, P, rows]."""
        x = env[ins.src]
        x = x[..., tile.row_span] if tile.row_span is not None else x.index_select(-1, tile.rows)
        return self._quantise(x / ins.quantum if ins.quantum != 1.0 else x)

    def _quantise(self, levels: torch.Tensor) -> torch.Tensor:
        if not self.noise.input:
            return levels
        return levels.round().clamp(0, 2**self.noise.input - 1)

    def _driven(self, ins: Read, tile: _Tile, levels: torch.Tensor) -> torch.Tensor:
        """Per sample, the read pulses the row drivers send: the set bits of every driven level."""
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

    def _product(self, tile: _Tile, x: torch.Tensor, samples_per_conv: int) -> torch.Tensor:
        """[n, outputs', P] = the tile's rows of x times its weights (exact sums in float64)."""
        if tile.conv is None:
            return (x @ tile.weights).transpose(1, 2)
        g = tile.gather
        parts = [
            F.conv2d(part, tile.conv, stride=tuple(g.stride), dilation=tuple(g.dilation))
            for part in x.split(samples_per_conv)
        ]
        return (parts[0] if len(parts) == 1 else torch.cat(parts)).flatten(2)

    def _planes(self, i: int, ins: Read, tile: _Tile, levels: torch.Tensor) -> torch.Tensor:
        """One read per bit plane, each through read noise and the ADC, then shift-add.

        Planes above the batch's largest level are all zero: they add exactly nothing (no
        current, no noise, ADC of zero), so they are not read. With the ADC on, the shift-add
        sums integer ADC codes (exact) and converts back to uS once.
        """
        integer = levels.round().to(torch.int64)
        used = max(1, min(ins.planes, int(integer.max()).bit_length()))
        # A few samples at a time, so that every plane's products, noise and codes stay in cache.
        size = PLANE_CHUNKS * tile.chunk * torch.get_num_threads()
        size = len(integer) if tile.conv is None else size
        parts = [
            self._plane_sum(i, tile, integer[first : first + size], used, first)
            for first in range(0, len(integer), size)
        ]
        total = parts[0] if len(parts) == 1 else torch.cat(parts)
        return total.div_(self.adc_scale) if self.noise.adc else total

    def _plane_sum(
        self, i: int, tile: _Tile, integer: torch.Tensor, used: int, first: int
    ) -> torch.Tensor:
        """The shift-add of `used` planes of the samples first, first + 1, ... of the batch."""
        total = self._plane_read(i, 0, tile, integer, first)
        for k in range(1, used):
            # 2^k x plane is exact, so the one rounding is the add's, fused or not.
            total.add_(self._plane_read(i, k, tile, integer, first), alpha=2**k)
        return total

    def _plane_read(
        self, i: int, k: int, tile: _Tile, integer: torch.Tensor, first: int
    ) -> torch.Tensor:
        """Bit plane k's [n, outputs, P] currents (uS x drive units) after read noise, as ADC
        codes when the ADC is on."""
        product = self._product(tile, ((integer >> k) & 1).to(torch.float64), len(integer))
        current = product[:, : tile.outputs]
        if self.noise.read:
            spread = product[:, tile.outputs :].sqrt_()
            normals = self._normals(i, k, spread.shape, first)
            # Two roundings, never a fused multiply-add, whose use could vary with the layout.
            current = spread.mul_(normals).add_(current)
        if not self.noise.adc:
            return current
        # Differential current (uA) clipped to full scale, in ADC codes, rounded.
        top = self.full_scale_ua / self.adc_lsb_ua
        return current.mul_(self.adc_scale).clamp_(-top, top).round_()

    def _normals(self, i: int, k: int, shape: torch.Size, first: int) -> torch.Tensor:
        """Read i's draws for plane k and samples first.., [n, outputs, P], laid out like its
        products in memory."""
        offset, size = self.noise_layout[(i, k)]
        draws = self.step.normals.block(k)[first : first + shape[0], offset : offset + size]
        if self.reads[i].conv is not None:
            return draws.view(shape)
        return draws.view(shape[0], shape[2], shape[1]).transpose(1, 2)

    def scale(self, i: int, ins: Scale, env: _Env, counts: dict) -> None:
        value = env[ins.src]
        factors = _exact_product(ins.factors)
        # An accumulator is read by its layer's Scale alone, so it can be scaled in place.
        if ins.src in self.accumulators and factors:
            value.mul_(factors[0])
            factors = factors[1:]
        for factor in factors:
            value = value * factor
        env[ins.dst] = value
        counts["digital_multiplies"] += value[0].numel() * len(ins.factors)

    def reshape(self, i: int, ins: Reshape, env: _Env, counts: dict) -> None:
        src = env[ins.src]
        env[ins.dst] = src.reshape(src.shape[0], *ins.shape)

    def pool(self, i: int, ins: Pool, env: _Env, counts: dict) -> None:
        env[ins.dst] = _pool(env[ins.src], ins)
        (kh, kw) = ins.kernel
        counts["digital_adds"] += env[ins.dst][0].numel() * (kh * kw - 1)

    def affine(self, i: int, ins: Affine, env: _Env, counts: dict) -> None:
        x = env[ins.src]
        shape = (1, -1) + (1,) * (x.dim() - 2)
        scale, shift = (self.periphery[name].reshape(shape) for name in (ins.scale, ins.shift))
        env[ins.dst] = x * scale + shift
        counts["digital_multiplies"] += x[0].numel()
        counts["digital_adds"] += x[0].numel()

    def binary(self, i: int, ins: Binary, env: _Env, counts: dict) -> None:
        a, b = env[ins.a], env[ins.b]
        env[ins.dst] = a + b if ins.kind == "add" else a * b
        counts["digital_adds" if ins.kind == "add" else "digital_multiplies"] += a[0].numel()

    def leaky_relu(self, i: int, ins: LeakyRelu, env: _Env, counts: dict) -> None:
        env[ins.dst] = _leaky(env[ins.src], ins.slope)

    def lif(self, i: int, ins: Lif, env: _Env, counts: dict) -> None:
        p = self.program.neurons[ins.params]
        in_place = i in self.own_states
        s = env[ins.spike]
        u = _membrane(p, env[ins.membrane], s, env[ins.current], in_place)
        if p["slope"] != 1.0:
            F.leaky_relu_(u, p["slope"])
        spikes = s if in_place else torch.empty_like(u)
        (torch.gt if p["strict"] else torch.ge)(u, p["threshold"], out=spikes)
        env[ins.membrane_out], env[ins.spike_out] = u, spikes
        counts["neuron_updates"] += u[0].numel()

    def integrate(self, i: int, ins: Integrate, env: _Env, counts: dict) -> None:
        p = self.program.neurons[ins.params]
        u, current = env[ins.membrane], env[ins.current]
        # keep x U is U exactly when keep is 1 (the usual integrator): skip the multiply.
        u = u + current if p["keep"] == 1.0 else p["keep"] * u + current
        env[ins.membrane_out] = F.leaky_relu_(u, p["slope"]) if p["slope"] != 1.0 else u
        counts["neuron_updates"] += u[0].numel()

    def readout_mean(self, i: int, ins: ReadoutMean, env: _Env, counts: dict) -> None:
        total, count = env[ins.sum] + env[ins.x], env[ins.count] + 1.0
        env[ins.sum_out], env[ins.count_out] = total, count
        env[ins.mean] = total / count.reshape((-1,) + (1,) * (total.dim() - 1))
        counts["digital_adds"] += total[0].numel()

    def readout_exp(self, i: int, ins: ReadoutExp, env: _Env, counts: dict) -> None:
        acc = ins.decay * env[ins.acc] + env[ins.x]
        env[ins.acc_out], env[ins.y] = acc, torch.tanh(acc)
        counts["digital_adds"] += acc[0].numel()
        counts["digital_multiplies"] += acc[0].numel()


def _membrane(
    p: dict[str, Any], u: torch.Tensor, s: torch.Tensor, current: torch.Tensor, in_place: bool
) -> torch.Tensor:
    """The LIF membrane before its LeakyReLU, in the model's operation order.

    A new tensor, or U itself updated when `in_place`.
    """
    keep, threshold = p["keep"], p["threshold"]
    if p["reset"] == "zero":
        # keep (U (1 - s)) and (keep U) - (keep U) s are both keep U or 0 exactly (s is 0 or 1),
        # so the one rounding is on adding the current, where the model rounds.
        kept = u.mul_(keep) if in_place else u * keep
        return kept.addcmul_(kept, s, value=-1.0).add_(current)
    if p["reset"] == "none":
        return keep * u + current
    if p["reset_timing"] == "before_leak":
        return keep * (u - threshold * s) + current
    return keep * u - threshold * s + current


def _leaky(x: torch.Tensor, slope: float) -> torch.Tensor:
    return x if slope == 1.0 else F.leaky_relu(x, slope)


def _pool(x: torch.Tensor, ins: Pool) -> torch.Tensor:
    """Pooling as a sum (or max) of strided views in window order, which is how torch's pools
    sum too (bitwise the same) but faster for the small windows of SNNs."""
    (kh, kw), (sh, sw), (ph, pw) = ins.kernel, ins.stride, ins.padding
    if ph or pw:
        x = F.pad(x, (pw, pw, ph, ph), value=-math.inf if ins.kind == "max" else 0.0)
    height, width = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
    views = [
        x[:, :, p : p + (height - 1) * sh + 1 : sh, q : q + (width - 1) * sw + 1 : sw]
        for p in range(kh)
        for q in range(kw)
    ]
    if ins.kind == "max":
        return torch.stack(views).amax(dim=0)
    total = views[0].clone() if len(views) == 1 else views[0] + views[1]
    for view in views[2:]:
        total += view
    return total / (kh * kw) if ins.kind == "avg" else total


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


def _on_grid(values: np.ndarray, terms: int, level_bits: int) -> np.ndarray:
    """values on a power-of-two grid on which a sum of `terms` of them times levels of
    `level_bits` bits is exact in float64. Each moves by at most half a step, about 2^-35 of the
    largest value for 8-bit levels and 512 rows: far below any physical precision."""
    largest = float(np.abs(values).max(initial=0.0))
    if largest == 0.0:
        return values
    bits = FLOAT64_BITS - 1 - level_bits - math.ceil(math.log2(terms + 1))
    quantum = 2.0 ** (math.floor(math.log2(largest)) + 1 - bits)
    return np.round(values / quantum) * quantum


def _exact_product(factors: tuple[float, ...]) -> tuple[float, ...]:
    """The factors as one when that rounds the same: all but one are powers of two."""
    inexact = [f for f in factors if math.frexp(f)[0] not in (0.5, -0.5)]
    if len(factors) < 2 or len(inexact) > 1:
        return factors
    return (math.prod(factors),)


def _numpy(value: int | torch.Tensor) -> int | np.ndarray:
    return value.cpu().numpy() if isinstance(value, torch.Tensor) else value


# The buffers each instruction reads.
INPUTS: dict[type[Instr], tuple[str, ...]] = {
    Gather: ("src",),
    Read: ("src",),
    Scale: ("src",),
    Reshape: ("src",),
    Pool: ("src",),
    Affine: ("src",),
    Binary: ("a", "b"),
    LeakyRelu: ("src",),
    Lif: ("current", "membrane", "spike"),
    Integrate: ("current", "membrane"),
    ReadoutMean: ("x", "sum", "count"),
    ReadoutExp: ("x", "acc"),
    ExitTest: ("readout",),
}

EXECUTE: dict[type[Instr], Callable] = {
    Gather: Simulator.gather,
    Zero: Simulator.zero,
    Read: Simulator.read,
    Scale: Simulator.scale,
    Reshape: Simulator.reshape,
    Pool: Simulator.pool,
    Affine: Simulator.affine,
    Binary: Simulator.binary,
    LeakyRelu: Simulator.leaky_relu,
    Lif: Simulator.lif,
    Integrate: Simulator.integrate,
    ReadoutMean: Simulator.readout_mean,
    ReadoutExp: Simulator.readout_exp,
}
