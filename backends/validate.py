"""One validator for the program of every artefact, `.pbc` and `.pmac` alike.

`primec check` and every reader run it before anything trusts a file, so what it accepts the
simulator runs. It checks, in order: the header (one step input, states and outputs that name
buffers, sizes within limits), the target parameters the simulator reads, every conductance
(finite, non-negative, the target's array shape), every tensor (numbers, finite), every
instruction (operands that exist and are defined before use in the step, field ranges, and the
buffer shapes its execution implies), every neuron record (the fields and choices of its IR op,
finite numbers) and the early-exit table. Each failure names the instruction, record or field.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import numpy as np
from primec.backends.fields import EXIT_FIELD_TYPES, is_int, is_str, layer_problem
from primec.backends.isa import (
    Binary,
    Const,
    Instr,
    Integrate,
    Lif,
    Pool,
    Read,
)
from primec.backends.program import Program
from primec.backends.shapes import SHAPES, no_shape

from primec.core.ops import OPS, attr_type_ok
from primec.core.verify import MAX_TIMESTEPS
from primec.errors import PrimecError
from primec.hardware.devicemap import G_MAX_SLACK
from primec.hardware.driftmodel import drift_from_entry
from primec.hardware.energy import energy_meta
from primec.hardware.target import parameter_fields, parameter_problem

Error = Callable[..., PrimecError]

# Limits that bound the simulator's memory and loops, far above any real macro program.
MAX_BUFFER_ELEMENTS = 1 << 26  # per sample
# The optional tensor of calibrated ADC full scales (uA), one per Read in program order
# (`primec calibrate-adc`).
ADC_RANGES = "adc.full_scale_ua"
# The optional per-column ADC full scales (uA): one tensor per Read, `ADC_COLUMN_RANGES` + its
# number in program order, with one value per output (the ADC of its column pair)
# (`primec calibrate-adc --per column`).
ADC_COLUMN_RANGES = "adc.column_full_scale_ua."
KINDS = {Pool: ("avg", "sum", "max"), Binary: ("add", "mul")}
NEURON_OPS = {Lif: "lif", Integrate: "integrator"}


def validate(program: Program, where: str, error: Error = PrimecError) -> None:
    """Raise `error` on the first thing about the program that the simulator could not run."""
    check = _Checker(program, where, error)
    check.header()
    check.target()
    check.arrays()
    check.tensors()
    check.instructions()
    check.neurons()
    check.exit_table()
    check.drift()


class _Checker:
    def __init__(self, program: Program, where: str, error: Error) -> None:
        self.p = program
        self.where = where
        self.error = error

    def fail(self, message: str) -> PrimecError:
        return self.error(message, where=self.where)

    # ---- header and target ------------------------------------------------------------------

    def header(self) -> None:
        p = self.p
        if not isinstance(p.name, str) or not isinstance(p.meta, dict):
            raise self.fail("the program header needs a name (string) and meta (object)")
        if not is_int(p.timesteps) or not 1 <= p.timesteps <= MAX_TIMESTEPS:
            raise self.fail(f"timesteps must be an integer 1..{MAX_TIMESTEPS}, got {p.timesteps!r}")
        for number, shape in enumerate(p.buffers):
            if (
                not all(is_int(d) and d >= 1 for d in shape)
                or _elements(shape) > MAX_BUFFER_ELEMENTS
            ):
                raise self.fail(f"buffer {number} has a malformed or oversized shape {list(shape)}")
        if len(p.debug) != len(p.instrs):
            raise self.fail(
                f"debug table has {len(p.debug)} entries for {len(p.instrs)} instructions"
            )
        bad = [n for n, d in enumerate(p.debug) if not all(map(is_str, (d.value, d.op, d.loc)))]
        if bad:
            raise self.fail(f"debug entry {bad[0]} must be three strings (value, op, loc)")
        if len(p.inputs) != 1:
            raise self.fail(
                f"the program has {len(p.inputs)} step inputs; the macro takes exactly one "
                "(is a state missing?)"
            )
        named = (*p.inputs, *p.outputs, *(b for pair in p.states for b in pair))
        bad = [b for b in named if not (is_int(b) and 0 <= b < len(p.buffers))]
        if bad or not p.outputs or any(len(pair) != 2 for pair in p.states):
            raise self.fail(
                f"program inputs, outputs and states must name some of its {len(p.buffers)} "
                f"buffers, found {bad or 'none'}"
            )
        for state, following in p.states:
            if p.buffers[state] != p.buffers[following]:
                raise self.fail(
                    f"state buffer {state} {list(p.buffers[state])} takes its next value from "
                    f"buffer {following} {list(p.buffers[following])}"
                )

    def target(self) -> None:
        params = self.p.meta.get("target_parameters")
        if not isinstance(params, dict):
            raise self.fail("meta has no target_parameters")
        known = parameter_fields()
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise self.fail(f"unknown target parameter {unknown[0]!r}")
        for key, spec in known.items():
            if key not in params:
                raise self.fail(f"target parameter {key} is missing")
            problem = parameter_problem(spec, params[key])
            if problem:
                raise self.fail(f"target parameter {key} {problem}")
        for key, kind in (("target", str), ("target_hash", str), ("graph_meta", dict)):
            if not isinstance(self.p.meta.get(key), kind):
                raise self.fail(f"meta {key} must be a {kind.__name__}")
        cycles = self.p.meta["graph_meta"].get("read_cycles_per_timestep", 0)
        if not is_int(cycles) or cycles < 0:
            raise self.fail(
                f"meta graph_meta.read_cycles_per_timestep must be an integer >= 0, got {cycles!r}"
            )
        try:
            energy_meta(self.p.meta)
        except PrimecError as exc:
            raise self.fail(exc.message) from exc
        layers, macs = self.p.meta.get("layers"), self.p.meta.get("dense_macs_per_step")
        if not is_int(macs) or macs < 0 or not isinstance(layers, list):
            raise self.fail("meta needs dense_macs_per_step (an integer) and layers (a list)")
        for number, layer in enumerate(layers):
            problem = layer_problem(layer)
            if problem:
                raise self.fail(f"meta layer {number}: {problem}")
        values = {layer["value"] for layer in layers}
        unnamed = next(
            (
                n
                for n, i in enumerate(self.p.instrs)
                if isinstance(i, Read) and self.p.debug[n].value not in values
            ),
            None,
        )
        if unnamed is not None:
            raise self.fail(
                f"instruction {unnamed} (read) belongs to no layer of the meta's layer table"
            )

    # ---- conductances and tensors -----------------------------------------------------------

    def arrays(self) -> None:
        params = self.p.meta["target_parameters"]
        shape = (params["array.rows"], params["array.cols"])
        for (macro, array), cells in sorted(self.p.arrays.items()):
            at = f"macro {macro} array {array}"
            if cells.shape != shape or cells.dtype != np.float64:
                raise self.fail(
                    f"{at} holds {cells.dtype} {list(cells.shape)} conductances; the target's "
                    f"arrays are float64 {list(shape)}"
                )
            if not np.isfinite(cells).all() or cells.min(initial=0.0) < 0:
                raise self.fail(f"{at}: conductances must be finite and non-negative (uS)")
            # Compiled, device-map and stuck cells all lie within the target's range (a device
            # map's float32 cells within its rounding: `devicemap.G_MAX_SLACK`).
            if cells.max(initial=0.0) > params["cells.g_max_us"] * G_MAX_SLACK:
                raise self.fail(
                    f"{at}: a conductance of {cells.max():g} uS is above the target's "
                    f"cells.g_max_us ({params['cells.g_max_us']:g} uS)"
                )

    def tensors(self) -> None:
        for name, tensor in sorted(self.p.tensors.items()):
            if tensor.dtype.kind not in "iuf" or tensor.size > MAX_BUFFER_ELEMENTS:
                raise self.fail(f"tensor {name!r} must hold numbers, got {tensor.dtype}")
            if tensor.dtype.kind == "f" and not np.isfinite(tensor).all():
                raise self.fail(f"tensor {name!r} holds NaN or infinite values")
        ranges = self.p.tensors.get(ADC_RANGES)
        reads = sum(isinstance(i, Read) for i in self.p.instrs)
        if ranges is not None and (ranges.shape != (reads,) or not (ranges > 0).all()):
            raise self.fail(
                f"tensor {ADC_RANGES!r} must hold one positive full scale per read ({reads}), "
                f"got {list(ranges.shape)}"
            )
        self.column_ranges()

    def column_ranges(self) -> None:
        """Per-column ADC full scales: one positive value per output of every Read, or none."""
        reads = [i for i in self.p.instrs if isinstance(i, Read)]
        names = {n for n in self.p.tensors if n.startswith(ADC_COLUMN_RANGES)}
        expected = {column_ranges_name(k) for k in range(len(reads))}
        if not names:
            return
        if names != expected:
            odd = sorted(names ^ expected)[0]
            raise self.fail(
                f"per-column ADC ranges must be one tensor per read ({len(reads)}), "
                f"{'unexpected' if odd in names else 'missing'} {odd!r}"
            )
        for k, read in enumerate(reads):
            if read.cols not in self.p.tensors:
                continue  # the instruction check names the missing tensor
            ranges, outputs = self.p.tensors[column_ranges_name(k)], len(self.p.tensors[read.cols])
            if ranges.shape != (outputs,) or ranges.dtype.kind != "f" or not (ranges > 0).all():
                raise self.fail(
                    f"tensor {column_ranges_name(k)!r} must hold one positive float full scale "
                    f"per output of read {k} ({outputs}), got {ranges.dtype} {list(ranges.shape)}"
                )

    # ---- instructions -----------------------------------------------------------------------

    def instructions(self) -> None:
        defined = {self.p.inputs[0], *(s for s, _ in self.p.states)}
        defined |= {i.dst for i in self.p.instrs if isinstance(i, Const)}
        for index, instr in enumerate(self.p.instrs):
            at = f"instruction {index} ({type(instr).__name__.lower()})"
            self.operands(at, instr)
            undefined = [getattr(instr, n) for n in instr.READS if getattr(instr, n) not in defined]
            if isinstance(instr, Read) and instr.dst not in defined:
                undefined.append(instr.dst)  # a tile adds into an accumulator set up before
            if undefined:
                raise self.fail(f"{at} reads buffer {undefined[0]} before anything writes it")
            SHAPES.get(type(instr), no_shape)(self, at, instr)
            defined |= {getattr(instr, name) for name in instr.WRITES}
        missing = [b for b in (*self.p.outputs, *(n for _, n in self.p.states)) if b not in defined]
        if missing:
            raise self.fail(
                f"buffer {missing[0]} is a step output or next state but is never written"
            )

    def operands(self, at: str, instr: Instr) -> None:
        kinds = KINDS.get(type(instr))
        if kinds and instr.kind not in kinds:
            raise self.fail(f"{at}: kind {instr.kind!r} is not one of {', '.join(kinds)}")
        for f in fields(instr):
            value = getattr(instr, f.name)
            if f.name in instr.buffers() and not 0 <= value < len(self.p.buffers):
                raise self.fail(
                    f"{at}: {f.name} names buffer {value}, but the program has {len(self.p.buffers)}"
                )
            if f.type == "str" and f.name != "kind" and value not in self.p.tensors:
                raise self.fail(f"{at} refers to tensor {value!r}, which the file does not contain")
            if f.type.startswith(("float", "tuple[float")) and not all(
                map(math.isfinite, _flat(value))
            ):
                raise self.fail(f"{at}: {f.name} must be finite, got {value!r}")
        if isinstance(instr, Lif | Integrate) and not 0 <= instr.params < len(self.p.neurons):
            raise self.fail(
                f"{at} uses neuron record {instr.params}, but the file has {len(self.p.neurons)}"
            )

    def shape(self, buffer: int) -> tuple[int, ...]:
        return tuple(self.p.buffers[buffer])

    def same(self, at: str, instr: Instr, *names: str) -> None:
        shapes = {n: self.shape(getattr(instr, n)) for n in names}
        if len(set(shapes.values())) > 1:
            found = ", ".join(f"{n} {list(s)}" for n, s in shapes.items())
            raise self.fail(f"{at}: operands must have one shape, found {found}")

    # ---- neurons and exit table -------------------------------------------------------------

    def neurons(self) -> None:
        # A record may serve several instructions: it must hold every field each one reads.
        users = {(i.params, NEURON_OPS[type(i)]) for i in self.p.instrs if type(i) in NEURON_OPS}
        for record, op in sorted(users):
            found = self.p.neurons[record]
            if not isinstance(found, dict):
                raise self.fail(f"neuron record {record} is not an object")
            for attr in OPS[op].attrs:
                if attr.optional and attr.name not in found:
                    continue  # absent means the default
                self.neuron_field(record, attr, found.get(attr.name))

    def neuron_field(self, record: int, attr: Any, value: Any) -> None:
        at = f"neuron record {record} field {attr.name!r}"
        if value is None:
            raise self.fail(f"neuron record {record} lacks {attr.name}")
        if attr.kind == "param" and isinstance(value, str):
            self.neuron_table(record, at, value)
            return
        if not attr_type_ok(attr.kind, value):
            # A param that is not a tensor's name must be one number, as a float field.
            kind = "float" if attr.kind == "param" else attr.kind
            raise self.fail(f"{at} must be {kind}, got {value!r}")
        if attr.choices and value not in attr.choices:
            raise self.fail(f"{at} must be one of {', '.join(attr.choices)}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(f"{at} must be finite, got {value!r}")

    def drift(self) -> None:
        """The target's drift model, when the artefact carries one (meta `drift`)."""
        if "drift" not in self.p.meta:
            return
        try:
            drift_from_entry(self.p.meta["drift"])
        except PrimecError as exc:
            raise self.fail(exc.message) from exc

    def neuron_table(self, record: int, at: str, name: str) -> None:
        """A per-channel or per-neuron parameter: a float tensor of the file that broadcasts to
        the membrane of every instruction using the record (NumPy rules)."""
        table = self.p.tensors.get(name)
        if table is None or table.dtype.kind != "f":
            raise self.fail(f"{at} names tensor {name!r}, which the file does not hold as floats")
        for instr in self.p.instrs:
            if type(instr) not in NEURON_OPS or instr.params != record:
                continue
            shape = self.shape(instr.membrane)
            if table.ndim > len(shape) or any(
                t not in (1, s) for t, s in zip(table.shape[::-1], shape[::-1], strict=False)
            ):
                raise self.fail(
                    f"{at}: tensor {name!r} of shape {list(table.shape)} does not broadcast to "
                    f"the neuron's shape {list(shape)}"
                )

    def exit_table(self) -> None:
        table = self.p.exit_table
        if table is None:
            return
        for f in fields(table):
            value = getattr(table, f.name)
            kind, wanted = EXIT_FIELD_TYPES.get(f.type, (None, ""))
            if kind is None:
                raise self.fail(f"early-exit table field {f.name} has no check for type {f.type}")
            if not kind(value):
                raise self.fail(f"early-exit table field {f.name} must be {wanted}, got {value!r}")
        try:  # ranges, and a per-step list with exactly one threshold per timestep
            table.check(_elements(self.shape(self.p.readout)), self.p.timesteps)
        except PrimecError as exc:
            raise self.error(f"early-exit table: {exc.message}", where=self.where) from exc


def column_ranges_name(read: int) -> str:
    """The name of the per-column ADC ranges tensor of the `read`-th Read (program order)."""
    return f"{ADC_COLUMN_RANGES}{read}"


def _elements(shape: tuple[int, ...]) -> int:
    return math.prod(int(d) for d in shape)


def _flat(value: Any) -> tuple:
    return value if isinstance(value, tuple) else (value,)
