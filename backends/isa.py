"""The instruction set of primec's simulator bytecode: what a macro and its digital periphery do
in one timestep. Each instruction is a frozen dataclass; `docs/isa.md` documents them.

Operands are buffer numbers (a buffer holds one per-sample tensor of the step) and tensor names
(constants in the file's tensor section). The encoder derives each instruction's binary layout
from its field types, so every instruction round-trips by construction and by test.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from primec.errors import PrimecError


@dataclass(frozen=True)
class Instr:
    """Base of all instructions; `OPCODE` is the byte that starts its encoding."""

    OPCODE: ClassVar[int] = 0
    # Operand roles, declared once: the buffers an instruction reads and those it writes. The
    # simulator, the macro file's validator and the disassembler read them from here.
    READS: ClassVar[tuple[str, ...]] = ()
    WRITES: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def buffers(cls) -> tuple[str, ...]:
        """Every field that names a buffer (read or written)."""
        return cls.READS + cls.WRITES


@dataclass(frozen=True)
class Const(Instr):
    """dst <- tensor `tensor` (a constant operand such as a bias), once per program."""

    OPCODE: ClassVar[int] = 1
    WRITES: ClassVar[tuple[str, ...]] = ("dst",)
    dst: int
    tensor: str


@dataclass(frozen=True)
class Gather(Instr):
    """dst[P, R] <- the crossbar rows of src[C, H, W] (im2col, row r = (c*kh + p)*kw + q)."""

    OPCODE: ClassVar[int] = 2
    READS: ClassVar[tuple[str, ...]] = ("src",)
    WRITES: ClassVar[tuple[str, ...]] = ("dst",)
    dst: int
    src: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: tuple[int, ...]  # top, left, bottom, right
    input_dilation: tuple[int, ...]


@dataclass(frozen=True)
class Zero(Instr):
    """dst[O, P] <- 0: clears a layer's partial-sum accumulator before its tiles are read."""

    OPCODE: ClassVar[int] = 3
    WRITES: ClassVar[tuple[str, ...]] = ("dst",)
    dst: int
    outputs: int


@dataclass(frozen=True)
class Read(Instr):
    """One tile: drive rows row0.. of (macro, array) with src[P, rows] (bit-serially with
    `planes` planes of `quantum`), read column pairs col0.. through the ADC, and add the
    differential currents (uA) into dst[cols, P]."""

    OPCODE: ClassVar[int] = 4
    READS: ClassVar[tuple[str, ...]] = ("src",)
    WRITES: ClassVar[tuple[str, ...]] = ("dst",)
    dst: int
    src: int
    macro: int
    array: int
    row0: int
    col0: int
    rows: str  # tensor: matrix rows (indices into src's last axis) driven on rows row0..
    cols: str  # tensor: outputs (indices into dst's first axis) read from pairs col0..
    planes: int
    quantum: float


@dataclass(frozen=True)
class Scale(Instr):
    """dst <- src * f0 * f1 * ... (left to right; the periphery's fixed-point scale steps)."""

    OPCODE: ClassVar[int] = 5
    READS: ClassVar[tuple[str, ...]] = ("src",)
    WRITES: ClassVar[tuple[str, ...]] = ("dst",)
    dst: int
    src: int
    factors: tuple[float, ...]


@dataclass(frozen=True)
class Reshape(Instr):
    """dst <- src reshaped (row-major) to `shape`."""

    OPCODE: ClassVar[int] = 6
    READS: ClassVar[tuple[str, ...]] = ("src",)
    WRITES: ClassVar[tuple[str, ...]] = ("dst",)
    dst: int
    src: int
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Pool(Instr):
    """dst <- pooling of src[C, H, W]: kind "avg", "sum" or "max" over the window."""

    OPCODE: ClassVar[int] = 7
    READS: ClassVar[tuple[str, ...]] = ("src",)
    WRITES: ClassVar[tuple[str, ...]] = ("dst",)
    dst: int
    src: int
    kind: str
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]


@dataclass(frozen=True)
class Affine(Instr):
    """dst[c, ...] <- src[c, ...] * scale[c] + shift[c] (tensors), after the ADC."""

    OPCODE: ClassVar[int] = 8
    READS: ClassVar[tuple[str, ...]] = ("src",)
    WRITES: ClassVar[tuple[str, ...]] = ("dst",)
    dst: int
    src: int
    scale: str
    shift: str


@dataclass(frozen=True)
class Binary(Instr):
    """dst <- a (+ or *) b, b broadcast onto a."""

    OPCODE: ClassVar[int] = 9
    READS: ClassVar[tuple[str, ...]] = ("a", "b")
    WRITES: ClassVar[tuple[str, ...]] = ("dst",)
    dst: int
    a: int
    b: int
    kind: str  # "add" | "mul"


@dataclass(frozen=True)
class LeakyRelu(Instr):
    """dst <- src if src >= 0 else slope * src."""

    OPCODE: ClassVar[int] = 10
    READS: ClassVar[tuple[str, ...]] = ("src",)
    WRITES: ClassVar[tuple[str, ...]] = ("dst",)
    dst: int
    src: int
    slope: float


@dataclass(frozen=True)
class Lif(Instr):
    """LIF neuron update with parameter record `params` of the neuron section (see the IR's `lif`)."""

    OPCODE: ClassVar[int] = 11
    READS: ClassVar[tuple[str, ...]] = ("current", "membrane", "spike")
    WRITES: ClassVar[tuple[str, ...]] = ("spike_out", "membrane_out")
    spike_out: int
    membrane_out: int
    current: int
    membrane: int
    spike: int
    params: int


@dataclass(frozen=True)
class Integrate(Instr):
    """Non-spiking integrator: membrane_out <- leaky(keep * membrane + current); record `params`."""

    OPCODE: ClassVar[int] = 12
    READS: ClassVar[tuple[str, ...]] = ("current", "membrane")
    WRITES: ClassVar[tuple[str, ...]] = ("membrane_out",)
    membrane_out: int
    current: int
    membrane: int
    params: int


@dataclass(frozen=True)
class ReadoutMean(Instr):
    """Running mean over steps: sum' = sum + x; count' = count + 1; mean = sum' / count'."""

    OPCODE: ClassVar[int] = 13
    READS: ClassVar[tuple[str, ...]] = ("x", "sum", "count")
    WRITES: ClassVar[tuple[str, ...]] = ("mean", "sum_out", "count_out")
    mean: int
    sum_out: int
    count_out: int
    x: int
    sum: int
    count: int


@dataclass(frozen=True)
class ReadoutExp(Instr):
    """Exponential readout: acc' = decay * acc + x; y = tanh(acc')."""

    OPCODE: ClassVar[int] = 14
    READS: ClassVar[tuple[str, ...]] = ("x", "acc")
    WRITES: ClassVar[tuple[str, ...]] = ("y", "acc_out")
    y: int
    acc_out: int
    x: int
    acc: int
    decay: float


@dataclass(frozen=True)
class ExitTest(Instr):
    """The controller applies the early-exit table to buffer `readout`; exited samples stop."""

    OPCODE: ClassVar[int] = 15
    READS: ClassVar[tuple[str, ...]] = ("readout",)
    readout: int


@dataclass(frozen=True)
class EndStep(Instr):
    """End of a timestep: next states <- this step's outputs."""

    OPCODE: ClassVar[int] = 16


@dataclass(frozen=True)
class Sample(Instr):
    """Latent sampler: z[c] = q[c*k + draw(seed, sample, step, c)]; step' = step + 1.

    draw: the counter-based stream of `primec.core.counter_rng` keyed by (seed, the sample's
    index in its data set, the step counter, c), mod k.
    """

    OPCODE: ClassVar[int] = 17
    READS: ClassVar[tuple[str, ...]] = ("q", "step")
    WRITES: ClassVar[tuple[str, ...]] = ("z", "step_out")
    z: int
    step_out: int
    q: int
    step: int
    k: int
    seed: int


INSTRUCTIONS: dict[int, type[Instr]] = {
    cls.OPCODE: cls
    for cls in (
        Const,
        Gather,
        Zero,
        Read,
        Scale,
        Reshape,
        Pool,
        Affine,
        Binary,
        LeakyRelu,
        Lif,
        Integrate,
        ReadoutMean,
        ReadoutExp,
        ExitTest,
        EndStep,
        Sample,
    )
}


def _encode_field(kind: str, value: Any) -> bytes:
    if kind == "int":
        return struct.pack("<q", value)
    if kind == "float":
        return struct.pack("<d", value)
    if kind == "str":
        encoded = value.encode()
        return struct.pack("<H", len(encoded)) + encoded
    if kind == "tuple[int, ...]":
        return struct.pack(f"<I{len(value)}q", len(value), *value)
    return struct.pack(f"<I{len(value)}d", len(value), *value)


def _decode_field(kind: str, data: bytes, offset: int) -> tuple[Any, int]:
    if kind == "int":
        return struct.unpack_from("<q", data, offset)[0], offset + 8
    if kind == "float":
        return struct.unpack_from("<d", data, offset)[0], offset + 8
    if kind == "str":
        (length,) = struct.unpack_from("<H", data, offset)
        return data[offset + 2 : offset + 2 + length].decode(), offset + 2 + length
    (count,) = struct.unpack_from("<I", data, offset)
    code = "q" if kind == "tuple[int, ...]" else "d"
    return tuple(struct.unpack_from(f"<{count}{code}", data, offset + 4)), offset + 4 + 8 * count


def encode_program(program: tuple[Instr, ...]) -> bytes:
    """The instruction stream: per instruction its opcode byte, then its fields in order."""
    parts = [struct.pack("<I", len(program))]
    for instr in program:
        parts.append(bytes([instr.OPCODE]))
        parts += [_encode_field(f.type, getattr(instr, f.name)) for f in fields(instr)]
    return b"".join(parts)


def decode_program(data: bytes, where: str = "") -> tuple[Instr, ...]:
    """Decode an instruction stream; malformed input gets one clear error."""
    try:
        return _decode(data)
    except (struct.error, UnicodeDecodeError, KeyError, IndexError) as exc:
        raise PrimecError(f"malformed program section: {exc!r}", where=where) from exc


def _decode(data: bytes) -> tuple[Instr, ...]:
    (count,), offset = struct.unpack_from("<I", data), 4
    program = []
    for _ in range(count):
        cls = INSTRUCTIONS[data[offset]]
        offset += 1
        values = {}
        for f in fields(cls):
            values[f.name], offset = _decode_field(f.type, data, offset)
        program.append(cls(**values))
    if offset != len(data):
        raise struct.error(f"{len(data) - offset} stray bytes after the last instruction")
    return tuple(program)


def disassemble(instr: Instr) -> str:
    """One instruction as text: `read dst=%4 src=%3 macro=0 ...`."""
    name = type(instr).__name__.lower()
    args = []
    for f in fields(instr):
        value = getattr(instr, f.name)
        shown = (
            f"%{value}"
            if f.name in instr.buffers()
            else repr(value)
            if isinstance(value, str)
            else value
        )
        args.append(f"{f.name}={list(shown) if isinstance(shown, tuple) else shown}")
    return f"{name} {' '.join(args)}".rstrip()
