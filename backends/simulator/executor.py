"""The executor: runs a `Program` (from a .pbc or .pmac file) with torch, batched, on CPU or
CUDA, one timestep at a time, with the early-exit controller between steps.

Ideal mode reproduces the model exactly: partial sums of (integer-level inputs) x (float32
conductance differences) are exact in float64, so summation order cannot matter, and the scale
steps round in the same order as the model (`docs/simulator.md`). Ideal hidden layers on the
CPU sum in float32 and replay exactly each neuron that rounding leaves uncertain (`certified`).

Non-idealities are opt-in, seeded and replayable: every random draw is keyed by (seed, chip,
sample index, timestep) or by (seed, chip, macro, array), never by batch position, and perturbed
conductances and read-noise variances sit on a fixed-point grid fine enough to be physically
irrelevant and coarse enough for their sums to stay exact, so batch size and order do not
change results.

Several chips run at once (`chips`): one row per (sample, chip), sample-major; a tile whose cells
differ per chip reads each chip's rows with its weights in one batched product.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from primec.backends.isa import (
    Affine,
    Binary,
    Const,
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
    Sample,
    Scale,
    Zero,
)
from primec.backends.program import Program
from primec.backends.simulator.adc import code_scales
from primec.backends.simulator.certified import CertifiedReads
from primec.backends.simulator.crossbar import CrossbarReads
from primec.backends.simulator.digital import DigitalPeriphery
from primec.backends.simulator.drift import aged_cells, check_drift
from primec.backends.simulator.fused import FusedLayer, fused_layers, run_fused, schedule
from primec.backends.simulator.layermajor import LayerMajor
from primec.backends.simulator.noise import Noise, Normals, programmed_cells

from primec.errors import PrimecError
from primec.hardware.earlyexit import ExitController, ExitTable, predictions
from primec.hardware.target import DriftSpec

COUNTERS = (
    "cell_reads",
    "row_drives",
    "adc_conversions",
    "digital_adds",
    "digital_multiplies",
    "neuron_updates",
    "steps",
)


@dataclass
class SimResult:
    """Per-sample results of a run."""

    pred: np.ndarray  # [N] prediction at the exit step
    exit_step: np.ndarray  # [N] steps executed (1-based)
    readouts: np.ndarray  # [N, T, ...] readout after every step; NaN after the exit step
    counts: dict[str, np.ndarray]  # per operation class, per sample, over the executed steps
    seconds: float = 0.0
    spikes: dict[int, np.ndarray] = field(default_factory=dict)  # buffer -> [N, T, ...] when traced


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


@dataclass
class _Step:
    """What one timestep of one batch keeps between instructions."""

    sources: dict[int, tuple[torch.Tensor, Gather]]  # gather dst -> (padded source map, gather)
    cache: dict[tuple[Any, ...], torch.Tensor]  # per source and quantum: levels, set bits
    normals: Normals | None


class Simulator(LayerMajor, CertifiedReads, CrossbarReads, DigitalPeriphery):
    """Executes a program on batches of samples."""

    def __init__(
        self,
        program: Program,
        noise: Noise | None = None,
        device: str = "cpu",
        trace: tuple[int, ...] = (),
        chips: Sequence[int] = (0,),
        drift: DriftSpec | None = None,
        fuse: bool = True,
        certify: bool = True,
    ) -> None:
        self.program = program
        self.noise = noise or Noise()
        self.chips = _checked_chips(chips)
        self.device = torch.device(device)
        self.trace = trace
        params = program.meta["target_parameters"]
        self.volts = params["read.voltage_v"]
        # Per Read: conductance sum (uS) -> ADC codes, on the tile's or each column's range.
        self.adc_scale = code_scales(program, self.noise, self.volts, self.device)
        # Calibration (`primec.runtime.adccalibration`) sees every plane's ideal currents here.
        self.plane_hook: Callable[[int, torch.Tensor], None] | None = None
        check_drift(self.noise, drift)
        self.cells, self.references = self._chip_arrays(params, drift)
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
        # On the CPU, each fusable hidden layer runs as one entry (`fused`): the same bits.
        self.fuse = fuse and self.device.type == "cpu"
        layers = (
            fused_layers(program, self.own_states, trace, self.accumulators) if self.fuse else {}
        )
        self.schedule = schedule(program, layers, EXECUTE, Simulator.fused)
        self._certified_setup(layers if certify else {})  # float32 sums, certified
        self._layer_major_setup()  # ideal runs without early exit: all steps per instruction
        # Only noise and the ADC act on each bit plane; otherwise one product is the same sum.
        self.per_plane = bool(self.noise.read or self.noise.adc)
        self.step = _Step({}, {}, None)

    def _chip_arrays(self, params: dict, drift: DriftSpec | None) -> tuple[list[dict], list[dict]]:
        """Per chip, every array's cells as the chip has them (programmed, then aged), and, when
        they have aged, as they were right after programming (the compensation's reference)."""
        cells, references = [], []
        for c in self.chips if self.noise.perturbs_cells else self.chips[:1]:
            programmed = {
                key: programmed_cells(key, values, self.noise, params, c)
                for key, values in self.program.arrays.items()
            }
            references.append({key: values for key, (values, _) in programmed.items()})
            if not self.noise.age:
                cells.append(references[-1])
                continue
            cells.append(
                {
                    key: aged_cells(key, values, stuck, self.noise, drift, c)
                    for key, (values, stuck) in programmed.items()
                }
            )
        return cells, references

    def fused(self, i: int, layer: FusedLayer, env: _Env, counts: dict) -> None:
        """A fused hidden layer (`backends/simulator/fused.py`)."""
        run_fused(layer, env, self.program, counts)

    def _own_states(self) -> set[int]:
        """Lif instructions whose state tensors are theirs alone (no other instruction, trace or
        step output reads them, and they feed no other state): they update them in place."""
        next_value = dict(self.program.states)
        feeds = Counter(next_value.values())
        readers = Counter(getattr(ins, name) for ins in self.program.instrs for name in ins.READS)
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

    def run(self, x: np.ndarray, *args: Any, **kwargs: Any) -> SimResult:
        """Simulate every sample of x [N, T, ...] on the one chip of this simulator (the
        arguments of `run_chips`)."""
        if len(self.chips) != 1:
            raise ValueError("run() simulates one chip; use run_chips() for several")
        return self.run_chips(x, *args, **kwargs)[0]

    def run_chips(
        self,
        x: np.ndarray,
        batch_size: int = 64,
        early_exit: bool = True,
        progress: Callable[[int, int], None] | None = None,
        sample_ids: np.ndarray | None = None,
        trace_samples: int | None = None,
    ) -> list[SimResult]:
        """Simulate every sample of x [N, T, ...] on every chip; one result per chip, in order.
        The exit table applies unless early_exit is off. A batch holds `batch_size` samples of
        every chip, one row per (sample, chip); a row that exits stops counting, and a sample
        leaves the batch once every chip's row for it has exited.

        `sample_ids` [N] key each sample's read-noise streams (default: its position in x), so a
        subset or reordering of a data set can draw the noise the whole set would. Traced buffers
        are kept for the first `trace_samples` samples (default: all).
        """
        started = time.perf_counter()
        n, steps = x.shape[:2]
        chips = len(self.chips)
        ids = np.arange(n) if sample_ids is None else np.asarray(sample_ids, dtype=np.int64)
        readout_shape = self.program.buffers[self.program.readout]
        out = SimResult(
            pred=np.zeros((chips, n), dtype=np.int64),
            exit_step=np.zeros((chips, n), dtype=np.int64),
            readouts=np.full((chips, n, steps, *readout_shape), np.nan),
            counts={name: np.zeros((chips, n), dtype=np.int64) for name in COUNTERS},
        )
        traced = n if trace_samples is None else min(n, trace_samples)
        out.spikes = {
            b: np.zeros((chips, traced, steps, *self.program.buffers[b])) for b in self.trace
        }
        table = self.program.exit_table if early_exit else None
        batch = self._layer_major_batch if self._layer_major_ready(table, steps) else self._batch
        for start in range(0, n, batch_size):
            batch(x, np.arange(start, min(start + batch_size, n)), ids, table, out)
            if progress:
                progress(min(start + batch_size, n), n)
        seconds = time.perf_counter() - started
        return [_chip_result(out, c, seconds) for c in range(chips)]

    def _batch(
        self,
        x: np.ndarray,
        samples: np.ndarray,
        ids: np.ndarray,
        table: ExitTable | None,
        out: SimResult,
    ) -> None:
        """One batch on every chip, a row per (sample, chip), sample-major; see `run_chips`."""
        steps, chips = x.shape[1], len(self.chips)
        data = torch.from_numpy(np.ascontiguousarray(x[samples], dtype=np.float64)).to(self.device)
        states = {
            s: torch.zeros(
                (chips * len(samples), *self.program.buffers[s]),
                dtype=torch.float64,
                device=self.device,
            )
            for s, _ in self.program.states
        }
        controller = ExitController(table, steps, chips * len(samples))
        program = self._certified_schedule(steps)
        active, live = samples, np.ones(chips * len(samples), dtype=bool)
        for t in range(1, steps + 1):
            step_input = data[:, t - 1]
            if chips > 1:
                step_input = step_input.repeat_interleave(chips, dim=0)
            env = _Env(self.constants | states | {self.program.inputs[0]: step_input})
            counts: dict[str, Any] = dict.fromkeys(COUNTERS, 0)
            rows = [(c, int(ids[a])) for a in active for c in self.chips]
            normals = Normals(self.noise.seed, rows, t) if self.noise.read else None
            self.step = _Step({}, {}, normals)
            self.sample_ids = np.repeat(ids[active], chips)  # rows are sample-major
            for i, ins, execute in program:
                execute(self, i, ins, env, counts)
            counts["steps"] += 1
            readout = env[self.program.readout].cpu().numpy()
            running = np.flatnonzero(live)
            chip, sample = running % chips, active[running // chips]
            self._record(out, env, counts, t, running, (chip, sample))
            stop = controller.step(t, readout[running])
            controller.keep(~stop)
            out.exit_step[chip[stop], sample[stop]] = t
            live[running[stop]] = False
            states = {s: env[nxt] for s, nxt in self.program.states}
            kept = live.reshape(len(active), chips).any(axis=1)
            if not kept.any():
                return
            if kept.all():
                continue
            rows_kept = np.repeat(kept, chips)
            keep = torch.from_numpy(rows_kept).to(self.device)
            states = {s: value[keep] for s, value in states.items()}
            self._certified_keep(keep)
            kept_rows = torch.from_numpy(kept).to(self.device)
            data, active, live = data[kept_rows], active[kept], live[rows_kept]

    def _fresh_env(self) -> _Env:
        """A new step environment (the constants) and step state, for `layermajor.py`."""
        self.step = _Step({}, {}, None)
        return _Env(dict(self.constants))

    def _record(
        self,
        out: SimResult,
        env: _Env,
        counts: dict[str, Any],
        t: int,
        running: np.ndarray,
        where: tuple[np.ndarray, np.ndarray],
    ) -> None:
        """Step t's readout, traced buffers and counts of the rows still running, at their
        (chip, sample) places in `out`."""
        out.readouts[(*where, t - 1)] = env[self.program.readout].cpu().numpy()[running]
        if self.trace:
            kept = where[1] < len(out.spikes[self.trace[0]][0])
            chip, sample, rows = where[0][kept], where[1][kept], running[kept]
        for b in self.trace:
            out.spikes[b][chip, sample, t - 1] = env[b].cpu().numpy()[rows]
        for name, value in counts.items():
            value = _numpy(value)
            out.counts[name][where] += value[running] if np.ndim(value) else value


def _checked_chips(chips: Sequence[int]) -> tuple[int, ...]:
    """The chip numbers of a run: at least one, none negative, none twice."""
    chosen = tuple(int(c) for c in chips)
    if not chosen or min(chosen) < 0 or len(set(chosen)) != len(chosen):
        raise PrimecError(
            f"bad chip list {list(chosen)}",
            hint="give one or more distinct chip numbers >= 0",
        )
    return chosen


def _chip_result(out: SimResult, c: int, seconds: float) -> SimResult:
    """Chip c's part of a run over several chips."""
    n = out.exit_step.shape[1]
    readouts = out.readouts[c]
    return SimResult(
        pred=predictions(readouts[np.arange(n), out.exit_step[c] - 1].reshape(n, -1)),
        exit_step=out.exit_step[c],
        readouts=readouts,
        counts={name: value[c] for name, value in out.counts.items()},
        seconds=seconds,
        spikes={b: value[c] for b, value in out.spikes.items()},
    )


def _numpy(value: int | torch.Tensor) -> int | np.ndarray:
    return value.cpu().numpy() if isinstance(value, torch.Tensor) else value


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
    Sample: Simulator.sample,
}
