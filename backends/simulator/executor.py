"""The executor: runs a `Program` (from a .pbc or .pmac file) with torch, batched, on CPU or
CUDA, one timestep at a time, with the early-exit controller between steps.

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

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
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
    Sample,
    Scale,
    Zero,
)
from primec.backends.program import Program
from primec.backends.simulator.crossbar import CrossbarReads
from primec.backends.simulator.digital import DigitalPeriphery
from primec.backends.simulator.noise import Noise, Normals, chip_cells

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


class Simulator(CrossbarReads, DigitalPeriphery):
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
            key: chip_cells(key, cells, self.noise, params) for key, cells in program.arrays.items()
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
                Normals(self.noise.seed, ids[active], t, self.noise_blocks, self.device)
                if self.noise.read
                else None
            )
            self.step = _Step({}, {}, normals)
            self.sample_ids = ids[active]
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
