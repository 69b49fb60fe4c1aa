"""Shape rules of the artefact validator: what each instruction's execution needs of the buffers
it names (per-sample shapes from the program header), so that a validated program never fails
inside the simulator on a shape."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
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

if TYPE_CHECKING:
    from primec.backends.validate import _Checker as Checker

MAX_PLANES = 32
MAX_WINDOW = 1 << 12  # kernel, stride, dilation, padding


def no_shape(check: Checker, at: str, instr: Instr) -> None:
    return None


def _const(check: Checker, at: str, instr: Const) -> None:
    tensor = check.p.tensors[instr.tensor]
    if tuple(tensor.shape) != check.shape(instr.dst):
        raise check.fail(
            f"{at}: tensor {list(tensor.shape)} does not fill buffer {list(check.shape(instr.dst))}"
        )


def _window(check: Checker, at: str, name: str, values: tuple, count: int, low: int) -> None:
    if len(values) != count or not all(low <= v <= MAX_WINDOW for v in values):
        raise check.fail(
            f"{at}: {name} must be {count} integers in {low}..{MAX_WINDOW}, got {list(values)}"
        )


def _gather(check: Checker, at: str, instr: Gather) -> None:
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


def _zero(check: Checker, at: str, instr: Zero) -> None:
    target = check.shape(instr.dst)
    if len(target) != 2 or target[0] != instr.outputs:
        raise check.fail(f"{at}: clears {instr.outputs} outputs of buffer {list(target)}")


def _read(check: Checker, at: str, read: Read) -> None:
    p = check.p
    if (read.macro, read.array) not in p.arrays:
        raise check.fail(
            f"{at} reads macro {read.macro} array {read.array}, which the file does not contain"
        )
    rows, cols = p.tensors[read.rows], p.tensors[read.cols]
    source, target = check.shape(read.src), check.shape(read.dst)
    if rows.ndim != 1 or cols.ndim != 1 or rows.dtype.kind != "i" or cols.dtype.kind != "i":
        raise check.fail(f"{at}: row and column maps must be 1-D integer arrays")
    if not rows.size or not cols.size:
        raise check.fail(f"{at}: a tile drives at least one row and reads at least one pair")
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


def _reshape(check: Checker, at: str, instr: Reshape) -> None:
    if check.shape(instr.dst) != tuple(instr.shape) or _elements(instr.shape) != _elements(
        check.shape(instr.src)
    ):
        raise check.fail(
            f"{at}: cannot reshape {list(check.shape(instr.src))} to {list(instr.shape)} into buffer {list(check.shape(instr.dst))}"
        )


def _pool(check: Checker, at: str, instr: Pool) -> None:
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


def _affine(check: Checker, at: str, instr: Affine) -> None:
    check.same(at, instr, "src", "dst")
    channels = check.shape(instr.src)[0]
    for name in (instr.scale, instr.shift):
        if check.p.tensors[name].shape != (channels,):
            raise check.fail(
                f"{at}: tensor {name!r} has shape {list(check.p.tensors[name].shape)}, the layer has {channels} channels"
            )


def _binary(check: Checker, at: str, instr: Binary) -> None:
    a, b = check.shape(instr.a), check.shape(instr.b)
    try:
        joined = np.broadcast_shapes(a, b)
    except ValueError:
        joined = None
    if joined != a or check.shape(instr.dst) != a:
        raise check.fail(
            f"{at}: {list(b)} does not broadcast onto {list(a)} into {list(check.shape(instr.dst))}"
        )


def _readout_mean(check: Checker, at: str, instr: ReadoutMean) -> None:
    check.same(at, instr, "mean", "sum_out", "x", "sum")
    check.same(at, instr, "count", "count_out")
    if _elements(check.shape(instr.count)) != 1:
        raise check.fail(
            f"{at}: the step count must be one number, buffer {list(check.shape(instr.count))}"
        )


def _sample(check: Checker, at: str, instr: Sample) -> None:
    check.same(at, instr, "step", "step_out")
    candidates, drawn = _elements(check.shape(instr.q)), _elements(check.shape(instr.z))
    if instr.k < 1 or candidates != drawn * instr.k or not 0 <= instr.seed < 2**32:
        raise check.fail(
            f"{at}: the sampler keeps 1 of k={instr.k} per channel (seed {instr.seed}): "
            f"{candidates} candidates cannot give {drawn} latents"
        )
    if _elements(check.shape(instr.step)) != 1:
        raise check.fail(f"{at}: the step counter must be one number")


SHAPES: dict[type[Instr], Callable[[Checker, str, Any], None]] = {
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
    Sample: _sample,
}


def _elements(shape: tuple[int, ...]) -> int:
    return math.prod(int(d) for d in shape)
