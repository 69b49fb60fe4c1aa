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
from primec.backends.isa import (
    Affine,
    Binary,
    Const,
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
from primec.ops import OPS, attr_type_ok
from primec.target import parameter_fields, parameter_problem
from primec.verify import MAX_TIMESTEPS

Error = Callable[..., PrimecError]

# Limits that bound the simulator's memory and loops, far above any real macro program.
MAX_BUFFER_ELEMENTS = 1 << 26  # per sample
MAX_PLANES = 32
MAX_WINDOW = 1 << 12  # kernel, stride, dilation, padding
# Integer instruction fields that name no buffer.
NOT_BUFFERS = {"macro", "array", "row0", "col0", "planes", "outputs", "params"}
# Which buffers an instruction reads (the rest of its int fields are written).
READS: dict[type[Instr], tuple[str, ...]] = {
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
        if not _int(p.timesteps) or not 1 <= p.timesteps <= MAX_TIMESTEPS:
            raise self.fail(f"timesteps must be an integer 1..{MAX_TIMESTEPS}, got {p.timesteps!r}")
        for number, shape in enumerate(p.buffers):
            if not all(_int(d) and d >= 1 for d in shape) or _elements(shape) > MAX_BUFFER_ELEMENTS:
                raise self.fail(f"buffer {number} has a malformed or oversized shape {list(shape)}")
        if len(p.debug) != len(p.instrs):
            raise self.fail(
                f"debug table has {len(p.debug)} entries for {len(p.instrs)} instructions"
            )
        bad = [n for n, d in enumerate(p.debug) if not all(map(_is_str, (d.value, d.op, d.loc)))]
        if bad:
            raise self.fail(f"debug entry {bad[0]} must be three strings (value, op, loc)")
        if len(p.inputs) != 1:
            raise self.fail(
                f"the program has {len(p.inputs)} step inputs; the macro takes exactly one "
                "(is a state missing?)"
            )
        named = (*p.inputs, *p.outputs, *(b for pair in p.states for b in pair))
        bad = [b for b in named if not (_int(b) and 0 <= b < len(p.buffers))]
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
        layers, macs = self.p.meta.get("layers"), self.p.meta.get("dense_macs_per_step")
        if not _int(macs) or macs < 0 or not isinstance(layers, list):
            raise self.fail("meta needs dense_macs_per_step (an integer) and layers (a list)")
        for number, layer in enumerate(layers):
            problem = _layer_problem(layer)
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

    def tensors(self) -> None:
        for name, tensor in sorted(self.p.tensors.items()):
            if tensor.dtype.kind not in "iuf" or tensor.size > MAX_BUFFER_ELEMENTS:
                raise self.fail(f"tensor {name!r} must hold numbers, got {tensor.dtype}")
            if tensor.dtype.kind == "f" and not np.isfinite(tensor).all():
                raise self.fail(f"tensor {name!r} holds NaN or infinite values")

    # ---- instructions -----------------------------------------------------------------------

    def instructions(self) -> None:
        defined = {self.p.inputs[0], *(s for s, _ in self.p.states)}
        defined |= {i.dst for i in self.p.instrs if isinstance(i, Const)}
        for index, instr in enumerate(self.p.instrs):
            at = f"instruction {index} ({type(instr).__name__.lower()})"
            self.operands(at, instr)
            undefined = [
                getattr(instr, n)
                for n in READS.get(type(instr), ())
                if getattr(instr, n) not in defined
            ]
            if isinstance(instr, Read) and instr.dst not in defined:
                undefined.append(instr.dst)  # a tile adds into an accumulator set up before
            if undefined:
                raise self.fail(f"{at} reads buffer {undefined[0]} before anything writes it")
            SHAPES.get(type(instr), _no_shape)(self, at, instr)
            defined |= {getattr(instr, f.name) for f in fields(instr) if self.writes(instr, f.name)}
        missing = [b for b in (*self.p.outputs, *(n for _, n in self.p.states)) if b not in defined]
        if missing:
            raise self.fail(
                f"buffer {missing[0]} is a step output or next state but is never written"
            )

    def writes(self, instr: Instr, name: str) -> bool:
        kind = next(f.type for f in fields(instr) if f.name == name)
        return kind == "int" and name not in NOT_BUFFERS and name not in READS.get(type(instr), ())

    def operands(self, at: str, instr: Instr) -> None:
        kinds = KINDS.get(type(instr))
        if kinds and instr.kind not in kinds:
            raise self.fail(f"{at}: kind {instr.kind!r} is not one of {', '.join(kinds)}")
        for f in fields(instr):
            value = getattr(instr, f.name)
            if (
                f.type == "int"
                and f.name not in NOT_BUFFERS
                and not 0 <= value < len(self.p.buffers)
            ):
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
        users = {i.params: NEURON_OPS[type(i)] for i in self.p.instrs if type(i) in NEURON_OPS}
        for record, op in sorted(users.items()):
            found = self.p.neurons[record]
            if not isinstance(found, dict):
                raise self.fail(f"neuron record {record} is not an object")
            for attr in OPS[op].attrs:
                self.neuron_field(record, attr, found.get(attr.name))

    def neuron_field(self, record: int, attr: Any, value: Any) -> None:
        at = f"neuron record {record} field {attr.name!r}"
        if value is None:
            raise self.fail(f"neuron record {record} lacks {attr.name}")
        if not attr_type_ok(attr.kind, value):
            raise self.fail(f"{at} must be {attr.kind}, got {value!r}")
        if attr.choices and value not in attr.choices:
            raise self.fail(f"{at} must be one of {', '.join(attr.choices)}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(f"{at} must be finite, got {value!r}")

    def exit_table(self) -> None:
        table = self.p.exit_table
        if table is None:
            return
        for f in fields(table):
            value = getattr(table, f.name)
            kind = {"float": _number, "int": _int, "str": lambda v: isinstance(v, str)}.get(f.type)
            if kind is not None and not kind(value):
                raise self.fail(
                    f"early-exit table field {f.name} must be a finite {f.type}, got {value!r}"
                )
        try:
            table.check(_elements(self.shape(self.p.readout)))
        except PrimecError as exc:
            raise self.error(f"early-exit table: {exc.message}", where=self.where) from exc


# ---- shape rules: what each instruction's execution needs of its buffers --------------------


def _no_shape(check: _Checker, at: str, instr: Instr) -> None:
    return None


def _const(check: _Checker, at: str, instr: Const) -> None:
    tensor = check.p.tensors[instr.tensor]
    if tuple(tensor.shape) != check.shape(instr.dst):
        raise check.fail(
            f"{at}: tensor {list(tensor.shape)} does not fill buffer {list(check.shape(instr.dst))}"
        )


def _window(check: _Checker, at: str, name: str, values: tuple, count: int, low: int) -> None:
    if len(values) != count or not all(low <= v <= MAX_WINDOW for v in values):
        raise check.fail(
            f"{at}: {name} must be {count} integers in {low}..{MAX_WINDOW}, got {list(values)}"
        )


def _gather(check: _Checker, at: str, instr: Gather) -> None:
    for name in ("kernel", "stride", "dilation", "input_dilation"):
        _window(check, at, name, getattr(instr, name), 2, 1)
    _window(check, at, "padding", instr.padding, 4, 0)
    source = check.shape(instr.src)
    if len(source) != 3:
        raise check.fail(f"{at}: source buffer {list(source)} is not [channels, height, width]")
    top, left, bottom, right = instr.padding
    out = []
    for axis, (pad_a, pad_b) in enumerate(((top, bottom), (left, right))):
        size = (source[axis + 1] - 1) * instr.input_dilation[axis] + 1 + pad_a + pad_b
        span = (instr.kernel[axis] - 1) * instr.dilation[axis] + 1
        out.append((size - span) // instr.stride[axis] + 1 if size >= span else 0)
    expected = (out[0] * out[1], source[0] * instr.kernel[0] * instr.kernel[1])
    if check.shape(instr.dst) != expected or not all(out):
        raise check.fail(
            f"{at}: gathers into {list(check.shape(instr.dst))}, its window gives {list(expected)}"
        )


def _zero(check: _Checker, at: str, instr: Zero) -> None:
    target = check.shape(instr.dst)
    if len(target) != 2 or target[0] != instr.outputs:
        raise check.fail(f"{at}: clears {instr.outputs} outputs of buffer {list(target)}")


def _read(check: _Checker, at: str, read: Read) -> None:
    p = check.p
    if (read.macro, read.array) not in p.arrays:
        raise check.fail(
            f"{at} reads macro {read.macro} array {read.array}, which the file does not contain"
        )
    rows, cols = p.tensors[read.rows], p.tensors[read.cols]
    source, target = check.shape(read.src), check.shape(read.dst)
    if rows.ndim != 1 or cols.ndim != 1 or rows.dtype.kind != "i" or cols.dtype.kind != "i":
        raise check.fail(f"{at}: row and column maps must be 1-D integer arrays")
    if len(source) != 2 or len(target) != 2 or source[0] != target[1]:
        raise check.fail(
            f"{at} reads buffer {read.src} {list(source)} into buffer {read.dst} {list(target)}; "
            "a tile reads [positions, rows] into [outputs, positions]"
        )
    if not 1 <= read.planes <= MAX_PLANES or not 0 < read.quantum < math.inf:
        raise check.fail(
            f"{at}: needs 1..{MAX_PLANES} bit planes and a positive quantum, got {read.planes} and {read.quantum}"
        )
    if read.col0 % 2:
        # The periphery pairs columns (2k, 2k + 1); a tile off that grid has no pairs to read.
        raise check.fail(
            f"{at}: tile starts at column {read.col0}, off the pair grid (pairs are columns 2k, 2k + 1)"
        )
    height, width = p.arrays[(read.macro, read.array)].shape
    if (
        read.row0 < 0
        or read.row0 + len(rows) > height
        or read.col0 < 0
        or read.col0 + 2 * len(cols) > width
    ):
        raise check.fail(
            f"{at}: tile rows {read.row0}..{read.row0 + len(rows) - 1}, columns {read.col0}.."
            f"{read.col0 + 2 * len(cols) - 1} fall outside the {height} x {width} array"
        )
    if rows.size and (rows.min() < 0 or rows.max() >= source[-1]):
        raise check.fail(
            f"{at}: row map points outside the layer's {source[-1]} input rows (found {rows.min()}..{rows.max()})"
        )
    if cols.size and (cols.min() < 0 or cols.max() >= target[0]):
        raise check.fail(
            f"{at}: column map points outside the layer's {target[0]} outputs (found {cols.min()}..{cols.max()})"
        )


def _reshape(check: _Checker, at: str, instr: Reshape) -> None:
    if check.shape(instr.dst) != tuple(instr.shape) or _elements(instr.shape) != _elements(
        check.shape(instr.src)
    ):
        raise check.fail(
            f"{at}: cannot reshape {list(check.shape(instr.src))} to {list(instr.shape)} into buffer {list(check.shape(instr.dst))}"
        )


def _pool(check: _Checker, at: str, instr: Pool) -> None:
    _window(check, at, "kernel", instr.kernel, 2, 1)
    _window(check, at, "stride", instr.stride, 2, 1)
    _window(check, at, "padding", instr.padding, 2, 0)
    source = check.shape(instr.src)
    if len(source) != 3:
        raise check.fail(f"{at}: source buffer {list(source)} is not [channels, height, width]")
    out = [
        (source[axis + 1] + 2 * instr.padding[axis] - instr.kernel[axis]) // instr.stride[axis] + 1
        for axis in (0, 1)
    ]
    if check.shape(instr.dst) != (source[0], *out) or min(out) < 1:
        raise check.fail(
            f"{at}: pools {list(source)} into {list(check.shape(instr.dst))}, its window gives {[source[0], *out]}"
        )


def _affine(check: _Checker, at: str, instr: Affine) -> None:
    check.same(at, instr, "src", "dst")
    channels = check.shape(instr.src)[0]
    for name in (instr.scale, instr.shift):
        if check.p.tensors[name].shape != (channels,):
            raise check.fail(
                f"{at}: tensor {name!r} has shape {list(check.p.tensors[name].shape)}, the layer has {channels} channels"
            )


def _binary(check: _Checker, at: str, instr: Binary) -> None:
    a, b = check.shape(instr.a), check.shape(instr.b)
    try:
        joined = np.broadcast_shapes(a, b)
    except ValueError:
        joined = None
    if joined != a or check.shape(instr.dst) != a:
        raise check.fail(
            f"{at}: {list(b)} does not broadcast onto {list(a)} into {list(check.shape(instr.dst))}"
        )


def _readout_mean(check: _Checker, at: str, instr: ReadoutMean) -> None:
    check.same(at, instr, "mean", "sum_out", "x", "sum")
    check.same(at, instr, "count", "count_out")
    if _elements(check.shape(instr.count)) != 1:
        raise check.fail(
            f"{at}: the step count must be one number, buffer {list(check.shape(instr.count))}"
        )


SHAPES: dict[type[Instr], Callable[[_Checker, str, Any], None]] = {
    Const: _const,
    Gather: _gather,
    Zero: _zero,
    Read: _read,
    Scale: lambda c, at, i: c.same(at, i, "src", "dst"),
    Reshape: _reshape,
    Pool: _pool,
    Affine: _affine,
    Binary: _binary,
    LeakyRelu: lambda c, at, i: c.same(at, i, "src", "dst"),
    Lif: lambda c, at, i: c.same(
        at, i, "spike_out", "membrane_out", "current", "membrane", "spike"
    ),
    Integrate: lambda c, at, i: c.same(at, i, "membrane_out", "current", "membrane"),
    ReadoutMean: _readout_mean,
    ReadoutExp: lambda c, at, i: c.same(at, i, "y", "acc_out", "x", "acc"),
}


# What the periphery and the programmer read of each layer record: field -> check.
LAYER_FIELDS: dict[str, Callable[[Any], bool]] = {
    "layer": lambda v: isinstance(v, str),
    "value": lambda v: isinstance(v, str),
    "kind": lambda v: isinstance(v, str),
    "mode": lambda v: v in ("as_formed", "programmed"),
    "drive": lambda v: isinstance(v, str),
    "planes": lambda v: _int(v) and 1 <= v <= MAX_PLANES,
    "input_quantum": lambda v: _number(v) and v > 0,
    "gain": lambda v: _number(v),
}


def _layer_problem(layer: Any) -> str | None:
    if not isinstance(layer, dict):
        return "not an object"
    bad = next((k for k, ok in LAYER_FIELDS.items() if k not in layer or not ok(layer[k])), None)
    return None if bad is None else f"field {bad} is missing or out of range ({layer.get(bad)!r})"


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _elements(shape: tuple[int, ...]) -> int:
    return math.prod(int(d) for d in shape)


def _flat(value: Any) -> tuple:
    return value if isinstance(value, tuple) else (value,)
