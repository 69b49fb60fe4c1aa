"""The simulator: runs a `Program` (from a .pbc or .pmac file) with torch, batched, on CPU or CUDA.

Ideal mode reproduces the model exactly: partial sums of (integer-level inputs) x (float32
conductance differences) are exact in float64, so summation order cannot matter, and the scale
steps round in the same order as the model (`docs/simulator.md`). Non-idealities are opt-in,
seeded and replayable: every random draw is keyed by (seed, sample index, timestep) or by
(seed, macro, array), never by batch position, so batch size and order do not change results.
"""

from __future__ import annotations

import hashlib
import time
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

from primec.earlyexit import ExitController, ExitTable, predictions
from primec.errors import PrimecError

COUNTERS = (
    "cell_reads",
    "row_drives",
    "adc_conversions",
    "digital_adds",
    "digital_multiplies",
    "neuron_updates",
    "steps",
)


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
        self.cells = {
            key: self._chip_cells(key, cells, params) for key, cells in program.arrays.items()
        }
        self.gathered: dict[int, tuple[torch.Tensor, Gather]] = {}
        self.row_bits: dict[tuple[int, float], torch.Tensor] = {}
        self.popcount = torch.tensor([bin(v).count("1") for v in range(2**16)], device=self.device)
        self.reads = {
            i: self._tile(ins) for i, ins in enumerate(program.instrs) if isinstance(ins, Read)
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
        self.per_plane = bool(self.noise.read or self.noise.adc or self.noise.input)
        self.noise_layout = self._noise_layout()

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(array, dtype=np.float64)).to(self.device)

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

    def _tile(self, read: Read) -> dict[str, Any]:
        rows, cols = self.program.tensors[read.rows], self.program.tensors[read.cols]
        cells = self.cells[(read.macro, read.array)]
        block = cells[read.row0 : read.row0 + len(rows), read.col0 : read.col0 + 2 * len(cols)]
        g_pos, g_neg = block[:, 0::2], block[:, 1::2]
        tile: dict[str, Any] = {
            "rows": torch.from_numpy(rows.copy()).to(self.device),
            "cols": torch.from_numpy(cols.copy()).to(self.device),
            "diff": self._tensor(g_pos - g_neg),
        }
        # Contiguous maps become slices: views instead of gathers on the hot path.
        if _is_range(rows):
            tile["span"] = slice(int(rows[0]), int(rows[0]) + len(rows))
        if _is_range(cols):
            tile["out_span"] = slice(int(cols[0]), int(cols[0]) + len(cols))
        if self.noise.read:
            tile["variance"] = self._tensor(self.noise.read**2 * (g_pos**2 + g_neg**2))
        return tile

    def _noise_layout(self) -> dict[int, tuple[int, int]]:
        """Offsets of each read's noise draws in a sample's per-step stream."""
        layout, offset = {}, 0
        for i, read in self.reads_in_order():
            size = (
                read.planes
                * self.program.buffers[read.src][0]
                * len(self.program.tensors[read.cols])
            )
            layout[i] = (offset, size)
            offset += size
        self.noise_per_step = offset
        return layout

    def reads_in_order(self) -> list[tuple[int, Read]]:
        """Every Read with its instruction index."""
        return [(i, ins) for i, ins in enumerate(self.program.instrs) if isinstance(ins, Read)]

    def run(
        self,
        x: np.ndarray,
        batch_size: int = 64,
        early_exit: bool = True,
        progress: Callable[[int, int], None] | None = None,
    ) -> SimResult:
        """Simulate every sample of x [N, T, ...]; the exit table applies unless early_exit is off."""
        started = time.perf_counter()
        n, steps = x.shape[:2]
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
            self._batch(x, np.arange(start, min(start + batch_size, n)), table, out)
            if progress:
                progress(min(start + batch_size, n), n)
        out.pred = predictions(out.readouts[np.arange(n), out.exit_step - 1].reshape(n, -1))
        out.seconds = time.perf_counter() - started
        return out

    def _batch(
        self, x: np.ndarray, samples: np.ndarray, table: ExitTable | None, out: SimResult
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
            env = dict(self.constants) | states | {self.program.inputs[0]: data[:, t - 1]}
            counts = {
                name: torch.zeros(len(active), dtype=torch.int64, device=self.device)
                for name in COUNTERS
            }
            noise = self._step_noise(active, t) if self.noise.read else None
            self.gathered, self.row_bits = {}, {}  # per step: gather sources, row bit counts
            for i, ins in enumerate(self.program.instrs):
                if isinstance(ins, ExitTest | EndStep | Const):
                    continue
                EXECUTE[type(ins)](self, i, ins, env, counts, noise)
            counts["steps"] += 1
            readout = env[self.program.readout]
            out.readouts[active, t - 1] = readout.cpu().numpy()
            for b in self.trace:
                out.spikes[b][active, t - 1] = env[b].cpu().numpy()
            for name, value in counts.items():
                out.counts[name][active] += value.cpu().numpy()
            stop = controller.step(t, readout.cpu().numpy())
            out.exit_step[active[stop]] = t
            keep = torch.from_numpy(~stop).to(self.device)
            states = {s: env[nxt][keep] for s, nxt in self.program.states}
            data, active = data[keep], active[~stop]
            controller.keep(~stop)
            if active.size == 0:
                return

    def _step_noise(self, active: np.ndarray, t: int) -> torch.Tensor:
        """Standard normals for every read of this step, one stream per (sample, step)."""
        draws = []
        for sample in active.tolist():
            generator = torch.Generator().manual_seed(_stream_seed(self.noise.seed, 2, sample, t))
            draws.append(torch.randn(self.noise_per_step, generator=generator, dtype=torch.float32))
        return torch.stack(draws).to(self.device, torch.float64)

    # ---- instructions ------------------------------------------------------------------------

    def gather(
        self, i: int, ins: Gather, env: dict, counts: dict, noise: torch.Tensor | None
    ) -> None:
        x = env[ins.src]
        if ins.input_dilation != (1, 1):
            x = _dilate(x, ins.input_dilation)
        top, left, bottom, right = ins.padding
        x = F.pad(x, (left, right, top, bottom))
        (kh, kw), (sh, sw), (dh, dw) = ins.kernel, ins.stride, ins.dilation
        # Strided views, then one copy: far faster than F.unfold for float64 on CPU.
        windows = x.unfold(2, (kh - 1) * dh + 1, sh).unfold(3, (kw - 1) * dw + 1, sw)[
            ..., ::dh, ::dw
        ]
        b, c, ho, wo = windows.shape[:4]
        env[ins.dst] = windows.permute(0, 2, 3, 1, 4, 5).reshape(b, ho * wo, c * kh * kw)
        self.gathered[ins.dst] = (x, ins)

    def zero(self, i: int, ins: Zero, env: dict, counts: dict, noise: torch.Tensor | None) -> None:
        batch = env[self.program.inputs[0]].shape[0]
        env[ins.dst] = torch.zeros(
            (batch, *self.program.buffers[ins.dst]), dtype=torch.float64, device=self.device
        )

    def read(self, i: int, ins: Read, env: dict, counts: dict, noise: torch.Tensor | None) -> None:
        tile = self.reads[i]
        x = env[ins.src]
        x = (
            x[..., tile["span"]] if "span" in tile else x.index_select(-1, tile["rows"])
        )  # [b, P, rows]
        levels = x / ins.quantum if ins.quantum != 1.0 else x
        if self.noise.input:
            levels = levels.round().clamp(0, 2**self.noise.input - 1)
        driven = self._driven_bits(ins, tile, levels)
        outputs = len(tile["cols"])
        positions = x.shape[1]
        counts["row_drives"] += driven
        counts["cell_reads"] += driven * 2 * outputs
        counts["adc_conversions"] += ins.planes * positions * outputs
        counts["digital_adds"] += ins.planes * positions * outputs
        if self.per_plane:
            partial = self._planes(i, ins, levels, tile, noise)
        else:
            partial = (levels @ tile["diff"]) * ins.quantum  # [b, P, outputs]
        accumulator = env[ins.dst]
        if "out_span" in tile:
            accumulator[:, tile["out_span"]] += partial.transpose(1, 2)
        else:
            accumulator.index_add_(1, tile["cols"], partial.transpose(1, 2))

    def _driven_bits(self, ins: Read, tile: dict[str, Any], levels: torch.Tensor) -> torch.Tensor:
        """Per sample, the read pulses the row drivers send: the set bits of every driven level."""
        if ins.src in self.gathered and not self.noise.input:
            per_row = self._row_bits(ins.src, ins.quantum)
            rows = (
                per_row[:, tile["span"]]
                if "span" in tile
                else per_row.index_select(1, tile["rows"])
            )
            return rows.sum(dim=1)
        return self._bits(levels).sum(dim=(1, 2))

    def _bits(self, levels: torch.Tensor) -> torch.Tensor:
        """Set bits of each integer level (popcount by table)."""
        integer = levels.round().to(torch.int64).clamp(0, len(self.popcount) - 1)
        return self.popcount[integer]

    def _row_bits(self, buffer: int, quantum: float) -> torch.Tensor:
        """[b, R] set bits summed over positions, for the rows of a gathered buffer.

        Counted on the (much smaller) map before the gather: row (c, p, q) sees pixel
        (c, i*s + p*d, j*s + q*d) at every position (i, j).
        """
        key = (buffer, quantum)
        if key not in self.row_bits:
            source, g = self.gathered[buffer]
            bits = self._bits(source / quantum) if quantum != 1.0 else self._bits(source)
            (kh, kw), (sh, sw), (dh, dw) = g.kernel, g.stride, g.dilation
            windows = bits.unfold(2, (kh - 1) * dh + 1, sh).unfold(3, (kw - 1) * dw + 1, sw)[
                ..., ::dh, ::dw
            ]
            self.row_bits[key] = windows.sum(dim=(2, 3)).reshape(bits.shape[0], -1)
        return self.row_bits[key]

    def _planes(
        self, i: int, ins: Read, levels: torch.Tensor, tile: dict, noise: torch.Tensor | None
    ) -> torch.Tensor:
        """One read per bit plane, each through read noise and the ADC, then shift-add."""
        integer = levels.round().to(torch.int64)
        total = None
        for k in range(ins.planes):
            plane = ((integer >> k) & 1).to(torch.float64)
            current = plane @ tile["diff"]  # uS x (drive units): [b, P, outputs]
            if noise is not None:
                offset, size = self.noise_layout[i]
                per_plane = size // ins.planes
                z = noise[:, offset + k * per_plane : offset + (k + 1) * per_plane].reshape(
                    current.shape
                )
                current = current + torch.sqrt(plane @ tile["variance"]) * z
            if self.noise.adc:
                current = self._adc(current)
            total = current * 2**k if total is None else total + current * 2**k
        return total * ins.quantum

    def _adc(self, conductance_sum: torch.Tensor) -> torch.Tensor:
        """Clip the differential current to full scale and quantise it to the ADC's bits."""
        current = (conductance_sum * self.volts).clamp(-self.full_scale_ua, self.full_scale_ua)
        return torch.round(current / self.adc_lsb_ua) * self.adc_lsb_ua / self.volts

    def scale(
        self, i: int, ins: Scale, env: dict, counts: dict, noise: torch.Tensor | None
    ) -> None:
        value = env[ins.src]
        for factor in ins.factors:
            value = value * factor
        env[ins.dst] = value
        counts["digital_multiplies"] += value[0].numel() * len(ins.factors)

    def reshape(
        self, i: int, ins: Reshape, env: dict, counts: dict, noise: torch.Tensor | None
    ) -> None:
        src = env[ins.src]
        env[ins.dst] = src.reshape(src.shape[0], *ins.shape)

    def pool(self, i: int, ins: Pool, env: dict, counts: dict, noise: torch.Tensor | None) -> None:
        x, kernel, stride, padding = (
            env[ins.src],
            tuple(ins.kernel),
            tuple(ins.stride),
            tuple(ins.padding),
        )
        if ins.kind == "max":
            env[ins.dst] = F.max_pool2d(x, kernel, stride, padding)
        else:
            divisor = None if ins.kind == "avg" else 1
            env[ins.dst] = F.avg_pool2d(
                x, kernel, stride, padding, count_include_pad=True, divisor_override=divisor
            )
        counts["digital_adds"] += env[ins.dst][0].numel() * (kernel[0] * kernel[1] - 1)

    def affine(
        self, i: int, ins: Affine, env: dict, counts: dict, noise: torch.Tensor | None
    ) -> None:
        x = env[ins.src]
        shape = (1, -1) + (1,) * (x.dim() - 2)
        scale, shift = (self.periphery[name].reshape(shape) for name in (ins.scale, ins.shift))
        env[ins.dst] = x * scale + shift
        counts["digital_multiplies"] += x[0].numel()
        counts["digital_adds"] += x[0].numel()

    def binary(
        self, i: int, ins: Binary, env: dict, counts: dict, noise: torch.Tensor | None
    ) -> None:
        a, b = env[ins.a], env[ins.b]
        env[ins.dst] = a + b if ins.kind == "add" else a * b
        counts["digital_adds" if ins.kind == "add" else "digital_multiplies"] += a[0].numel()

    def leaky_relu(
        self, i: int, ins: LeakyRelu, env: dict, counts: dict, noise: torch.Tensor | None
    ) -> None:
        env[ins.dst] = _leaky(env[ins.src], ins.slope)

    def lif(self, i: int, ins: Lif, env: dict, counts: dict, noise: torch.Tensor | None) -> None:
        p = self.program.neurons[ins.params]
        u, s, current = env[ins.membrane], env[ins.spike], env[ins.current]
        threshold = p["threshold"]
        resets = {
            "zero": lambda v: v * (1.0 - s),
            "subtract": lambda v: v - threshold * s,
            "none": lambda v: v,
        }
        if p["reset_timing"] == "before_leak":
            u = p["keep"] * resets[p["reset"]](u) + current
        else:
            u = resets[p["reset"]](p["keep"] * u) + current
        u = _leaky(u, p["slope"])
        env[ins.membrane_out] = u
        env[ins.spike_out] = (u > threshold if p["strict"] else u >= threshold).to(torch.float64)
        counts["neuron_updates"] += u[0].numel()

    def integrate(
        self, i: int, ins: Integrate, env: dict, counts: dict, noise: torch.Tensor | None
    ) -> None:
        p = self.program.neurons[ins.params]
        env[ins.membrane_out] = _leaky(p["keep"] * env[ins.membrane] + env[ins.current], p["slope"])
        counts["neuron_updates"] += env[ins.membrane_out][0].numel()

    def readout_mean(
        self, i: int, ins: ReadoutMean, env: dict, counts: dict, noise: torch.Tensor | None
    ) -> None:
        total, count = env[ins.sum] + env[ins.x], env[ins.count] + 1.0
        env[ins.sum_out], env[ins.count_out] = total, count
        env[ins.mean] = total / count.reshape((-1,) + (1,) * (total.dim() - 1))
        counts["digital_adds"] += total[0].numel()

    def readout_exp(
        self, i: int, ins: ReadoutExp, env: dict, counts: dict, noise: torch.Tensor | None
    ) -> None:
        acc = ins.decay * env[ins.acc] + env[ins.x]
        env[ins.acc_out], env[ins.y] = acc, torch.tanh(acc)
        counts["digital_adds"] += acc[0].numel()
        counts["digital_multiplies"] += acc[0].numel()


def _leaky(x: torch.Tensor, slope: float) -> torch.Tensor:
    return x if slope == 1.0 else torch.where(x >= 0, x, slope * x)


def _dilate(x: torch.Tensor, factor: tuple[int, ...]) -> torch.Tensor:
    """Insert factor-1 zeros between pixels (the input of a transposed conv as a conv)."""
    b, c, h, w = x.shape
    out = x.new_zeros((b, c, (h - 1) * factor[0] + 1, (w - 1) * factor[1] + 1))
    out[:, :, :: factor[0], :: factor[1]] = x
    return out


def _is_range(indices: np.ndarray) -> bool:
    """Whether indices are consecutive and ascending (a slice can stand for them)."""
    return len(indices) > 0 and bool(np.all(np.diff(indices) == 1))


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
