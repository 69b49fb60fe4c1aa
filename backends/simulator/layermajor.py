"""Layer-major ideal runs: each instruction over every step of a batch at once.

A program whose state is local to the instruction that keeps it (no instruction reads another
one's state: a feed-forward network in time) computes a layer's inputs for all T steps before
the layer's first update, and rows never interact. So a batch can run one instruction at a time
over T x B rows, time-major (row t x B + b is sample b at step t): the stateless instructions
(gathers, reads, scales, pools, ...) once on all rows, each certified hidden layer as one kernel
over its rows and steps (`lifkernels.py`), each other stateful instruction (integrator, readout)
step by step on its slices; then the exit controller runs over the recorded steps as the
step-major loop runs it. The operations on each row are the step-major path's, so the results
are the same bits; the calls are fewer and larger (a few convolutions per layer instead of T),
and the certified layers keep their membranes in cache across steps and replay a flagged neuron
from its last spike instead of step 0. Rows that leave early are computed to the end anyway, so
with an exit table a batch runs layer-major only while rows stay most of the steps
(`LAYER_MAJOR_EXITS`).

Where it does not hold (several chips, noise, CUDA, a neuron the kernels do not take, a traced
state, a recurrent state, plane-by-plane reads) the batch runs step-major, as before.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
import torch
import torch.nn.functional as F
from primec.backends.isa import (
    Affine,
    Binary,
    Gather,
    Integrate,
    LeakyRelu,
    Pool,
    Read,
    ReadoutExp,
    ReadoutMean,
    Reshape,
    Scale,
    Zero,
)
from primec.backends.simulator import certified
from primec.backends.simulator.certified import CertifiedLayer, CertifiedReads
from primec.backends.simulator.crossbar import _im2col
from primec.backends.simulator.fused import fused_counts
from primec.backends.simulator.levels import padded_rows
from primec.backends.simulator.lifkernels import lif_over_time

from primec.hardware.earlyexit import ExitController

STATELESS = (Gather, Zero, Read, Scale, Reshape, Pool, Affine, Binary, LeakyRelu)
OVER_TIME = (Integrate, ReadoutMean, ReadoutExp)
# Rows (T x samples) per layer-major pass are capped so that its tensors stay within this many
# bytes (estimated from the buffers the pass keeps); a larger batch runs in parts of samples.
LAYER_MAJOR_BYTES = 1 << 30
# With an exit table, a batch runs layer-major when the last batch's rows ran at least this
# fraction of the steps on average: layer-major computes every step of every row, about 1.5x
# faster per step than step-major on PRIME's classifier, which stops computing rows that left.
LAYER_MAJOR_EXITS = 0.7
# Rows per float32 convolution (whole steps of the batch): large enough for oneDNN, small enough
# for its working set to stay in cache (64-128 rows measured fastest for PRIME's two layers).
CONV_ROWS = 64
# A layer with at least this many input channels convolves channels-last, its kernel reading the
# sums so (oneDNN's nhwc kernel: 0.041 s instead of 0.057 s per batch for PRIME's 12 -> 64).
CHANNELS_LAST_INPUTS = 8
# A certified layer whose levels are at most this fraction nonzero (PRIME's first layer reads
# event counts, about 8% nonzero) is summed in the kernel, row by row, from its nonzero levels
# in float64 (exact: no bound, no float32 convolution).
SPARSE_LEVELS = 0.10


class LayerMajor:
    """The Simulator's layer-major path (a mixin before `CertifiedReads`)."""

    program: Any
    trace: tuple[int, ...]
    certified: dict[int, CertifiedLayer]
    fast_schedule: list
    constants: dict
    chips: tuple
    per_plane: bool
    plane_hook: Any
    reads: dict
    repairs: int
    _fresh_env: Any
    _record: Any

    def _layer_major_setup(self) -> None:
        """The layer-major schedule, or None where the program does not allow it."""
        self.layer_major, self._lm_shape, self._lm_stash = False, (0, 0), {}
        self._lm_exits = 0.0  # the last batch's mean exit step over T (`_layer_major_batch`)
        entries = []
        for i, ins, execute in self.fast_schedule if self.certified else []:
            if execute is CertifiedReads.certified_fused:
                entries.append((i, ins, LayerMajor.certified_over_time))
            elif isinstance(ins, OVER_TIME):
                entries.append((i, ins, _over_time(execute)))
            elif self._input_gather(ins):
                entries.append((i, ins, LayerMajor.gather_input))
            elif isinstance(ins, STATELESS):
                entries.append((i, ins, execute))
            else:
                break
        whole = bool(entries) and len(entries) == len(self.fast_schedule)
        self.layer_major_schedule = entries if whole and self._local_states() else None

    def _input_gather(self, ins: Any) -> bool:
        """A gather of the program's input map without input dilation (`gather_input`)."""
        plain = isinstance(ins, Gather) and tuple(ins.input_dilation) == (1, 1)
        return plain and ins.src == self.program.inputs[0]

    def _local_states(self) -> bool:
        """Every state is read by one instruction alone, the one that writes its next value (a
        certified layer's Lif, or an integrator or readout), and a certified layer's membrane
        and spikes are read by nothing but its own pool."""
        instrs = self.program.instrs
        readers: dict[int, list[int]] = {}
        for i, ins in enumerate(instrs):
            for name in ins.READS:
                readers.setdefault(getattr(ins, name), []).append(i)
        chains = {c.fused.indices[2]: c.fused for c in self.certified.values()}
        if set(self.trace) & {state for state, _ in self.program.states}:
            return False  # a traced state is one step behind its instruction's output
        for state, following in self.program.states:
            owner = readers.get(state, [])
            if len(owner) != 1:
                return False
            ins = instrs[owner[0]]
            writes = {getattr(ins, name) for name in ins.WRITES}
            if following not in writes or not (owner[0] in chains or isinstance(ins, OVER_TIME)):
                return False
        for fused in chains.values():
            pool = [fused.indices[3]] if fused.pool else None
            unread = fused.lif.membrane_out not in set(readers) | set(self.trace)
            if not unread or (pool and readers.get(fused.lif.spike_out) != pool):
                return False
        return True

    def _layer_major_ready(self, table: Any, steps: int) -> bool:
        """Whether this batch runs layer-major (see the module's docstring)."""
        planes = self.per_plane or self.plane_hook is not None
        convs = all(self.reads[i].conv is not None for i in self.certified)
        ready = self.layer_major_schedule is not None and len(self.chips) == 1
        return ready and not planes and convs

    def layer_major_part(self, steps: int) -> int:
        """Samples per layer-major pass: its rows' buffers within `LAYER_MAJOR_BYTES` (float64
        outputs; a certified layer's float32 sums and spikes, its pool's output counted as
        another instruction's would be)."""
        buffers = self.program.buffers
        per_row = sum(
            math.prod(buffers[ins.fused.lif.membrane]) * 12
            if isinstance(ins, CertifiedLayer)
            else sum(math.prod(buffers[getattr(ins, name)]) * 8 for name in ins.WRITES)
            for _, ins, _ in self.layer_major_schedule
            if not isinstance(ins, Gather)  # gathered rows are made only where read
        )
        return max(1, LAYER_MAJOR_BYTES // max(1, per_row * steps))

    def _layer_major_batch(
        self, x: np.ndarray, samples: np.ndarray, ids: Any, table: Any, out: Any
    ) -> None:
        """`Simulator._batch` layer-major, for one chip: every step of every instruction, in
        parts of samples within `LAYER_MAJOR_BYTES`; then, step by step, the exit controller
        and the running rows' readouts and counts, as the step-major loop records them. With an
        exit table, while the last batch's rows ran fewer than `LAYER_MAJOR_EXITS` of the
        steps on average (the first batch included), the batch runs step-major: it stops
        computing rows that left, which pays when they leave early."""
        if table is not None and self._lm_exits < LAYER_MAJOR_EXITS:
            self._batch(x, samples, ids, table, out)  # type: ignore[attr-defined]
        else:
            part = self.layer_major_part(x.shape[1])
            for first in range(0, len(samples), part):
                self._layer_major_part(x, samples[first : first + part], table, out)
        self._lm_exits = float(out.exit_step[0, samples].mean()) / x.shape[1]

    def _layer_major_part(self, x: np.ndarray, chosen: np.ndarray, table: Any, out: Any) -> None:
        """One part of a layer-major batch: run every step the controller may use, then record
        step by step while rows run (`Simulator._batch`'s bookkeeping)."""
        n, env = len(chosen), self._fresh_env()
        controller = ExitController(table, x.shape[1], n)
        steps = controller.last_step  # no row runs past it
        counts: dict[str, Any] = dict.fromkeys(out.counts, 0)
        self._layer_major_run(x[chosen, :steps], env, counts)
        counts["steps"] = 1
        live = np.ones(n, dtype=bool)
        for t in range(1, steps + 1):
            rows, running = slice((t - 1) * n, t * n), np.flatnonzero(live)
            step_env = {b: env[b][rows] for b in (self.program.readout, *self.trace)}
            per_step = {k: _rows(v, rows) for k, v in counts.items()}
            where = (np.zeros(len(running), dtype=np.int64), chosen[running])
            self._record(out, step_env, per_step, t, running, where)
            stop = controller.step(t, step_env[self.program.readout].numpy()[running])
            controller.keep(~stop)
            out.exit_step[0, chosen[running[stop]]] = t
            live[running[stop]] = False
            if not live.any():
                return

    def _layer_major_run(self, x: np.ndarray, env: Any, counts: dict) -> None:
        """Run the schedule on x [samples, T, ...] (its rows already in `env` are ignored): env
        then holds every buffer over T x samples rows, time-major."""
        n, steps = x.shape[:2]

        def rows() -> torch.Tensor:
            time_major = np.ascontiguousarray(x.swapaxes(0, 1), dtype=np.float64)
            return torch.from_numpy(time_major).reshape(steps * n, *x.shape[2:])

        env.lazy[self.program.inputs[0]] = rows  # made where read (`gather_input` reads x)
        self._lm_shape, self._lm_stash, self.layer_major = (steps, n), {}, True
        self._lm_input = x
        try:
            for i, ins, execute in self.layer_major_schedule:
                execute(self, i, ins, env, counts)
        finally:
            self.layer_major, self._lm_stash = False, {}

    def gather_input(self, i: int, ins: Gather, env: Any, counts: dict) -> None:
        """`CrossbarReads.gather` of the input map over every step: the time-major, float64,
        padded rows (`levels.padded_rows`) in one pass, with their row maxima and count of
        nonzero levels kept aside for a certified layer (`_stacked_sums`)."""
        x, (steps, n) = self._lm_input, self._lm_shape
        top, left, bottom, right = ins.padding
        channels, height, width = x.shape[2:]
        shape = (steps * n, channels, height + top + bottom, width + left + right)
        padded = torch.empty(shape, dtype=torch.float64)
        largest = torch.empty(steps * n, dtype=torch.float64)
        nonzero = padded_rows(x, (top, left), padded.numpy(), largest.numpy())
        self.step.sources[ins.dst] = (padded, ins)  # type: ignore[attr-defined]
        # The input rows themselves: padded's inside (the same values, no second pass).
        env.lazy.pop(ins.src, None)
        env[ins.src] = padded[:, :, top : top + height, left : left + width]
        env.lazy[ins.dst] = lambda: _im2col(padded, ins)
        self._lm_stash[("levels", ins.dst)] = (padded, largest, nonzero)

    def _driven(self, ins: Any, tile: Any, levels: torch.Tensor) -> torch.Tensor:
        """`CrossbarReads._driven`, counted by the layer kernel that wrote the levels where it
        did (`certified_over_time`)."""
        counted = self._lm_stash.pop(("drives", id(tile)), None) if self.layer_major else None
        if counted is not None and counted[0] is levels:
            return torch.from_numpy(counted[2])
        return super()._driven(ins, tile, levels)  # type: ignore[misc]

    def _stacked_sums(self, layer: CertifiedLayer, x: torch.Tensor) -> torch.Tensor:
        """A certified tile's sums over every row (`CertifiedReads._product`), kept aside for
        its layer's kernel with the levels (for the replay) and each row's largest level: in
        chunks of whole steps (each convolution's output as it is, no copy into one tensor),
        float32 (a bound per row and channel), or float64 (exact: a bound of zero) where a
        batch's sums could approach float32's range; or none where few levels are nonzero
        (`SPARSE_LEVELS`): the kernel sums each row's nonzero levels exactly itself. Returns an
        empty accumulator: the layer's Scale, which alone reads it (a fused chain's buffers are
        private), runs in the kernel on the kept sums."""
        largest, known, (steps, n) = x.new_empty(len(x)), False, self._lm_shape
        sample = x[steps // 2 * n : (steps // 2 + 1) * n]  # the middle step's rows
        density = float(torch.count_nonzero(sample)) / max(1, sample.numel())
        prepared = self._lm_stash.get(("levels", self.program.instrs[layer.read].src))
        if prepared is not None and prepared[0] is x:  # `gather_input`'s rows, as they are
            _, largest, nonzero = prepared
            known, density = True, nonzero / x.numel()
        if density <= SPARSE_LEVELS:
            sparse = layer.weight64.flip(3).permute(1, 2, 3, 0).contiguous()
            zero = torch.zeros_like(layer.norms)  # exact sums: no bound
            self._lm_stash[layer.read] = ((None, sparse, True), x, x.new_zeros(len(x)), zero)
            return x.new_empty(0)
        last = x.shape[1] >= CHANNELS_LAST_INPUTS
        chunks, norms = self._chunk_sums(layer, (x, known), largest, (False, last)), layer.norms
        if chunks is None:  # exact: a bound of zero
            chunks = self._chunk_sums(layer, (x, False), largest, (True, last))
            norms = torch.zeros_like(norms)
        self._lm_stash[layer.read] = ((chunks, None, last), x, largest, norms)
        return x.new_empty(0)

    def _chunk_sums(
        self, layer: CertifiedLayer, levels: tuple, largest: torch.Tensor, form: tuple
    ) -> numba.typed.List | None:
        """The sums of x's rows (levels: x, and whether `largest` holds its rows' largest
        levels already) in chunks of whole steps, each chunk's largest levels written into
        `largest` on the way if not (a chunk at a time: its levels are still in cache for the
        cast and the convolution). float32 sums, or None as soon as a chunk's could approach
        float32's range; float64 ones when exact (form: (exact, channels-last: [k, B, P, C]
        chunks, else [k, B, C, P]))."""
        x, known = levels
        exact, last = form
        steps, n = self._lm_shape
        widest = float(layer.weight64.abs().sum((1, 2, 3)).max())
        rows = max(1, -(-CONV_ROWS // n)) * n
        weight = layer.weight64 if exact else layer.weight32
        layout = torch.channels_last if last else torch.contiguous_format
        weight = weight.contiguous(memory_format=layout)
        chunks = numba.typed.List()
        for first in range(0, steps * n, rows):
            part = x[first : first + rows]
            if known:
                peak = largest[first : first + rows]
            else:
                peak = torch.amax(part, (1, 2, 3), out=largest[first : first + rows])
            if not exact and float(peak.max()) * widest >= certified.HUGE:
                return None
            part = part.to(weight.dtype, memory_format=layout)
            sums = F.conv2d(part, weight, stride=layer.stride)
            shape = (-1, n, sums.shape[1], sums.shape[2] * sums.shape[3])
            if last:  # [rows, C, H, W] in memory as [rows, H, W, C]
                sums = sums.permute(0, 2, 3, 1)
                shape = (-1, n, shape[3], shape[2])
            chunks.append(sums.contiguous().numpy().reshape(shape))
        return chunks

    def certified_over_time(self, i: int, layer: CertifiedLayer, env: Any, counts: dict) -> None:
        """A certified layer over every step (`lifkernels.lif_over_time`)."""
        f = layer.fused
        steps, n = self._lm_shape
        (chunks, sparse, last), levels, largest, norms = self._lm_stash.pop(layer.read)
        channels, height, width = self.program.buffers[f.lif.membrane]
        window = tuple(f.pool.kernel) if f.pool else (1, 1)
        pooled = torch.empty(
            (steps * n, channels, height // window[0], width // window[1]), dtype=torch.float64
        )
        traced = np.empty((0, 0, 0))
        if f.lif.spike_out in self.trace:
            traced = np.empty((steps, n, channels * height * width))
        gain = float(np.prod(np.abs(f.factors)))
        coverage, binary, tile = _next_drives(self, f.pool.dst if f.pool else f.lif.spike_out)
        drives = np.empty((steps, n), dtype=np.int64)
        counting = (coverage, binary, drives)
        if sparse is None:
            sparse = torch.empty((0, 0, 0, 0), dtype=torch.float64)
        else:
            chunks = numba.typed.List([np.empty((1, 1, 1, 1))])  # unread
        self.repairs += lif_over_time(
            (chunks, (height, width), last, sparse.numpy()),
            (largest.reshape(steps, n).numpy(), norms.numpy()),
            (layer.quantum, f.factors, gain),
            (f.keep, f.threshold, f.slope, f.strict),
            (levels.contiguous().numpy(), layer.weight64.numpy(), layer.stride),
            (pooled.numpy().reshape(steps, n, *pooled.shape[1:]), window, traced, counting),
        )
        if coverage.size:
            self._lm_stash[("drives", id(tile))] = (pooled, binary, drives.reshape(-1))
        env[f.pool.dst if f.pool else f.lif.spike_out] = pooled
        if traced.size:
            env[f.lif.spike_out] = torch.from_numpy(traced).view(-1, channels, height, width)
        fused_counts(f, (channels, height, width), counts)


def _next_drives(self: Any, buffer: int) -> tuple[np.ndarray, bool, Any]:
    """The coverage (flat, float64) and binary flag of the first tile whose gather reads buffer
    as it is (no padding, no input dilation, levels of quantum 1), with the tile; an empty
    coverage where there is none."""
    for i, ins in self.reads_in_order():
        tile = self.reads[i]
        gather, plain = tile.gather, ins.quantum == 1.0 and not self.noise.input and self.fuse
        if plain and gather is not None and gather.src == buffer and not any(gather.padding):
            if tuple(gather.input_dilation) == (1, 1):
                size = math.prod(self.program.buffers[buffer])
                cover = np.ones(size) if tile.coverage is None else tile.coverage.numpy()
                return cover.astype(np.float64), ins.planes == 1, tile
    return np.empty(0), False, None


def _rows(count: Any, rows: slice) -> Any:
    """One step's part of a count: per row (a tensor over every step's rows) or per step."""
    return count[rows] if isinstance(count, torch.Tensor) else count


def _over_time(execute: Any) -> Any:
    """A stateful instruction (integrator, readout) run step by step on its rows' slices."""

    def run(sim: Any, i: int, ins: Any, env: Any, counts: dict) -> None:
        steps, n = sim._lm_shape
        following = dict(sim.program.states)
        reads = [getattr(ins, name) for name in ins.READS]
        states = {
            b: torch.zeros((n, *sim.program.buffers[b]), dtype=torch.float64)
            for b in reads
            if b in following
        }
        written: dict[int, list[torch.Tensor]] = {getattr(ins, w): [] for w in ins.WRITES}
        for t in range(steps):
            at = {b: _at(sim, env, b, t) for b in reads if b not in states}
            step_env = at | states
            execute(sim, i, ins, step_env, counts if t == 0 else dict.fromkeys(counts, 0))
            states = {b: step_env[following[b]] for b in states}
            for b, parts in written.items():
                parts.append(step_env[b])
        for b, parts in written.items():
            env[b] = torch.cat(parts)

    return run


def _at(sim: Any, env: Any, buffer: int, t: int) -> torch.Tensor:
    """Step t's rows of a buffer over every step (a constant as it is)."""
    value = env[buffer]
    if buffer in sim.constants:
        return value
    n = sim._lm_shape[1]
    return value[t * n : (t + 1) * n]
