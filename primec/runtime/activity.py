"""Activity statistics, the statistical energy estimate they give, and NeuroBench's metrics.

The counted energy (`primec.hardware.energy`) prices every operation the simulator executed. The
statistical estimate prices what the model's activity statistics predict instead, the way energy
is estimated without a cycle-level count:

    E = sum over steps t of P(step t runs) x [ static + sum over tiles k and input elements e of
        bits(e, t) x fanout(k, e) x (row_drive + 2 x outputs(k) x cell_read) ]

where bits(e, t) is the mean number of set bits of input element e at step t (a spike is one
bit, a multi-level value its popcount), over a subsample run for all T steps (the activity map
of each layer's input; a single rate per layer would miss that digits are centred while edge
pixels reach fewer positions), fanout(k, e) is how many (row, position) pairs of tile k read
element e, and static (ADC conversions, shift-adds, periphery arithmetic, neuron updates,
control, inter-macro transfers) follows from the program's structure alone. The two estimates
agree when the statistics describe the run; `docs/energy.md` says how far apart they may be.

NeuroBench's names (Yik et al., "The neurobench framework for benchmarking neuromorphic
computing algorithms and systems", Nature Communications 2025) are reported from the same
statistics: synaptic operations (Dense, Effective_MACs, Effective_ACs), activation sparsity,
membrane updates, footprint and connection sparsity.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from primec.backends.isa import (
    Affine,
    Binary,
    Gather,
    Integrate,
    Lif,
    Pool,
    Read,
    ReadoutExp,
    ReadoutMean,
    Sample,
    Scale,
)
from primec.backends.program import Program
from primec.backends.simulator import Noise, Simulator
from primec.hardware.costmodel import adc_energy_pj
from primec.hardware.target import DriftSpec

PJ = 1e-12
SAMPLES = 256  # subsample the statistics are measured on


@dataclass
class Activity:
    """Per input buffer (of some crossbar layer), timestep and element: mean set bits, nonzero share."""

    bits: dict[int, np.ndarray] = field(default_factory=dict)  # buffer -> [T, elements]
    nonzero: dict[int, np.ndarray] = field(default_factory=dict)  # buffer -> [T, elements]
    spikes: float = 0.0  # fraction of spiking-neuron outputs that are nonzero
    samples: int = 0


def _sources(program: Program) -> dict[int, tuple[Read, Gather | None]]:
    """Each Read's input buffer (the gather's source map for convolutions)."""
    gathers = {ins.dst: ins for ins in program.instrs if isinstance(ins, Gather)}
    reads = {}
    for ins in program.instrs:
        if isinstance(ins, Read):
            gather = gathers.get(ins.src)
            reads.setdefault(gather.src if gather else ins.src, (ins, gather))
    return reads


def traced_buffers(program: Program) -> tuple[int, ...]:
    """The buffers whose values the statistics are taken from: every crossbar layer's input and
    every spiking neuron's output."""
    spiking = [ins.spike_out for ins in program.instrs if isinstance(ins, Lif)]
    return (*_sources(program), *spiking)


def measure(
    program: Program,
    x: np.ndarray,
    noise: Noise | None = None,
    samples: int = SAMPLES,
    drift: DriftSpec | None = None,
    chip: Callable[..., Simulator] = Simulator,
) -> Activity:
    """Activity statistics of the first `samples` samples of x, every step (no early exit), on
    the chip `chip` builds (a `Simulator` class or factory: the main run's, so both see one chip)."""
    traced = chip(program, noise, trace=traced_buffers(program), drift=drift)
    return from_trace(program, traced.run(x[:samples], 64, False).spikes)


def from_trace(program: Program, spikes: dict[int, np.ndarray]) -> Activity:
    """Activity statistics from a run's traced buffers ([samples, T, ...] each, every step)."""
    sources = _sources(program)
    spiking = [ins.spike_out for ins in program.instrs if isinstance(ins, Lif)]
    out = Activity(samples=len(next(iter(spikes.values()))) if spikes else 0)
    for buffer, (read, _) in sources.items():
        values = spikes[buffer]
        levels = np.rint(values / read.quantum).astype(np.int64).clip(0, 2**read.planes - 1)
        bits = sum((levels >> k) & 1 for k in range(read.planes))
        out.bits[buffer] = bits.mean(axis=0).reshape(values.shape[1], -1)
        out.nonzero[buffer] = (values != 0).mean(axis=0).reshape(values.shape[1], -1)
    if spiking:
        out.spikes = float(np.mean([(spikes[b] != 0).mean() for b in spiking]))
    return out


def fanout(
    program: Program, read: Read, gather: Gather | None, row_weights: np.ndarray
) -> np.ndarray:
    """Per input element: the sum of `row_weights` over the (row, position) pairs reading it."""
    rows = program.tensors[read.rows].astype(np.int64)
    if gather is None:  # src[P, R]: element (p, r) is read once, by row r at position p
        positions, width = program.buffers[read.src]
        weights = np.zeros((positions, width))
        weights[:, rows] = row_weights
        return weights.reshape(-1)
    channels, height, width = program.buffers[gather.src]
    dh, dw = gather.input_dilation
    index = torch.full((1, channels, (height - 1) * dh + 1, (width - 1) * dw + 1), -1.0)
    index[:, :, ::dh, ::dw] = torch.arange(channels * height * width, dtype=torch.float32).view(
        1, channels, height, width
    )
    top, left, bottom, right = gather.padding
    index = F.pad(index, (left, right, top, bottom), value=-1.0)
    unfolded = F.unfold(
        index, tuple(gather.kernel), dilation=tuple(gather.dilation), stride=tuple(gather.stride)
    )[0][torch.from_numpy(rows)]  # [tile rows, positions]: which element each slot reads
    read_by = unfolded.numpy().astype(np.int64)
    slot_weights = np.broadcast_to(np.asarray(row_weights, np.float64)[:, None], read_by.shape)
    real = read_by >= 0
    return np.bincount(
        read_by[real], weights=slot_weights[real], minlength=channels * height * width
    )


def kept_per_row(program: Program, read: Read) -> np.ndarray:
    """Synapses a tile keeps in each of its rows (pairs not reset to g_off)."""
    off = program.meta["target_parameters"]["cells.g_off_us"]
    rows, pairs = len(program.tensors[read.rows]), len(program.tensors[read.cols])
    block = program.arrays[(read.macro, read.array)][
        read.row0 : read.row0 + rows, read.col0 : read.col0 + 2 * pairs
    ]
    return (~((block[:, 0::2] == off) & (block[:, 1::2] == off))).sum(axis=1)


def static_ops_per_step(program: Program) -> dict[str, float]:
    """Operations a timestep runs whatever the activity: from the instructions' shapes alone."""
    size = {i: math.prod(shape) for i, shape in enumerate(program.buffers)}
    ops = dict.fromkeys(("adc_conversions", "digital_adds", "digital_multiplies"), 0.0)
    ops |= {"neuron_updates": 0.0, "steps": 1.0}
    for ins in program.instrs:
        if isinstance(ins, Read):
            conversions = ins.planes * program.buffers[ins.src][0] * len(program.tensors[ins.cols])
            ops["adc_conversions"] += conversions
            ops["digital_adds"] += conversions  # one shift-add per conversion
        elif isinstance(ins, Scale):
            ops["digital_multiplies"] += size[ins.dst] * len(ins.factors)
        elif isinstance(ins, Pool):
            ops["digital_adds"] += size[ins.dst] * (math.prod(ins.kernel) - 1)
        elif isinstance(ins, Affine):
            ops["digital_adds"] += size[ins.dst]
            ops["digital_multiplies"] += size[ins.dst]
        elif isinstance(ins, Binary):
            ops["digital_adds" if ins.kind == "add" else "digital_multiplies"] += size[ins.dst]
        elif isinstance(ins, Lif | Integrate):
            ops["neuron_updates"] += size[ins.membrane_out]
        elif isinstance(ins, ReadoutMean):
            ops["digital_adds"] += size[ins.mean]
        elif isinstance(ins, ReadoutExp):
            ops["digital_adds"] += size[ins.y]
            ops["digital_multiplies"] += size[ins.y]
        elif isinstance(ins, Sample):
            ops["digital_adds"] += size[ins.z]  # as the simulator counts: one per latent
    return ops


def statistical_energy(
    program: Program, activity: Activity, exit_steps: np.ndarray, adc_bits: int | None = None
) -> dict[str, float]:
    """Joules per inference by class, from activity statistics and the exit-step distribution."""
    p = program.meta["target_parameters"]
    steps = program.timesteps
    runs = np.array([(exit_steps >= t).mean() for t in range(1, steps + 1)])  # P(step t runs)
    drives = np.zeros(steps)
    cells = np.zeros(steps)
    for ins, gather in _reads(program):
        source = gather.src if gather else ins.src
        driven = activity.bits[source] @ fanout(
            program, ins, gather, np.ones(len(program.tensors[ins.rows]))
        )
        drives += driven
        cells += driven * 2 * len(program.tensors[ins.cols])
    static = static_ops_per_step(program)
    per_step = runs.sum()
    moved = program.meta.get("macro_transfer_bits_per_step", 0)
    return {
        "array_reads": float(runs @ cells) * p["energy.cell_read_pj"] * PJ,
        "row_drives": float(runs @ drives) * p["energy.row_drive_pj"] * PJ,
        "adc_conversions": per_step * static["adc_conversions"] * adc_energy_pj(p, adc_bits) * PJ,
        "digital_ops": per_step
        * (
            static["digital_adds"] * p["energy.digital_add_pj"]
            + static["digital_multiplies"] * p["energy.digital_multiply_pj"]
        )
        * PJ,
        "neuron_updates": per_step * static["neuron_updates"] * p["energy.lif_update_pj"] * PJ,
        "control": per_step * p["energy.controller_pj"] * PJ,
        "macro_transfers": per_step * moved * p["energy.macro_transfer_pj_per_bit"] * PJ,
    }


def _reads(program: Program) -> list[tuple[Read, Gather | None]]:
    gathers = {ins.dst: ins for ins in program.instrs if isinstance(ins, Gather)}
    return [(ins, gathers.get(ins.src)) for ins in program.instrs if isinstance(ins, Read)]


def neurobench_metrics(
    program: Program, activity: Activity, exit_steps: np.ndarray, counts: dict[str, np.ndarray]
) -> dict[str, Any]:
    """NeuroBench's metrics per inference, over the executed steps (early exit included)."""
    runs = np.array([(exit_steps >= t).mean() for t in range(1, program.timesteps + 1)])
    macs = acs = 0.0
    kept = 0
    for ins, gather in _reads(program):
        source = gather.src if gather else ins.src
        rows = kept_per_row(program, ins)
        kept += int(rows.sum())
        effective = float(runs @ (activity.nonzero[source] @ fanout(program, ins, gather, rows)))
        if ins.planes == 1:
            acs += effective  # binary spikes: an accumulate, no multiply
        else:
            macs += effective
    dense = sum(math.prod(layer["weight_shape"]) for layer in program.meta["layers"])
    return {
        "SynapticOperations": {
            "Dense": float(runs.sum()) * program.meta["dense_macs_per_step"],
            "Effective_MACs": macs,
            "Effective_ACs": acs,
        },
        "ActivationSparsity": 1.0 - activity.spikes,
        "MembraneUpdates": float(np.mean(counts["neuron_updates"])),
        "Footprint": 4 * dense,
        "ConnectionSparsity": 1.0 - kept / dense if dense else 0.0,
    }


def activity_report(
    program: Program,
    x: np.ndarray,
    exit_steps: np.ndarray,
    counts: dict[str, np.ndarray],
    counted_j: float,
    noise: Noise | None = None,
    drift: DriftSpec | None = None,
    activity: Activity | None = None,
    chip: Callable[..., Simulator] = Simulator,
) -> dict[str, Any]:
    """The statistical estimate beside the counted one, and NeuroBench's metrics; the activity
    is measured by a traced run unless given (`from_trace` of a run that traced every step)."""
    activity = activity or measure(program, x, noise, drift=drift, chip=chip)
    adc_bits = noise.adc if noise and noise.adc else None
    by_class = statistical_energy(program, activity, exit_steps, adc_bits)
    total = sum(by_class.values())
    return {
        "energy_statistical_j": total,
        "energy_statistical_breakdown_j": by_class,
        "energy_counted_vs_statistical": (counted_j - total) / total if total else None,
        "activity_samples": activity.samples,
        "neurobench": neurobench_metrics(program, activity, exit_steps, counts),
    }
