"""Simulator input files: `data.npz` with `x` [N, T, ...] and optional labels `y` [N].

Every way such a file can be wrong gets one message that says what was expected and what was
found, before any simulation starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from primec.archive import read_npz, reader_error
from primec.errors import PrimecError

_INPUT_ERROR = reader_error("input data", "write it with numpy.savez(path, x=x, y=y)")


@dataclass(frozen=True)
class SimData:
    """Validated inputs: x as float32 [N, T, ...] and labels (or None)."""

    x: np.ndarray
    y: np.ndarray | None


def load_inputs(
    path: str | Path,
    step_shape: tuple[int, ...],
    timesteps: int,
    classes: int | None = None,
    drive: tuple[float, int] | None = None,
) -> SimData:
    """Read and check `path` against the artefact's per-step input shape, T and class count.

    With `drive` = (quantum, planes), every value of x must be a whole number of quanta that
    the input drivers can apply: 0 .. (2**planes - 1) * quantum.
    """
    where = str(path)
    arrays = _read_npz(Path(path), where)
    if "x" not in arrays:
        raise PrimecError(
            f"no array `x` in the file (found: {', '.join(sorted(arrays)) or 'nothing'})",
            where=where,
            hint="save x [N, T, ...] (and y [N]) with numpy.savez",
        )
    x = _check_x(arrays["x"], step_shape, timesteps, where)
    if drive is not None:
        _check_levels(x, *drive, where)
    y = _check_y(arrays["y"], len(x), classes, where) if "y" in arrays else None
    return SimData(x, y)


def _read_npz(path: Path, where: str) -> dict[str, np.ndarray]:
    try:
        with path.open("rb") as handle:
            head = handle.read(6)
    except OSError as exc:
        raise _INPUT_ERROR(str(exc), where) from exc
    if head == b"\x93NUMPY":
        raise PrimecError(
            "expected an .npz archive with arrays x and y, found a single array", where=where
        )
    return read_npz(path, where, keys=("x", "y"), error=_INPUT_ERROR)


def _check_levels(x: np.ndarray, quantum: float, planes: int, where: str) -> None:
    top = 2**planes - 1
    levels = x.reshape(len(x), -1) / np.float32(quantum)
    applicable = (levels >= 0) & (levels <= top) & (levels == np.round(levels))
    bad = ~applicable.all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        value = levels[first][~applicable[first]][0] * quantum
        unit = "" if quantum == 1.0 else f" times {quantum}"
        raise PrimecError(
            f"x has values the input drivers cannot apply in {int(bad.sum())} samples "
            f"(first: sample {first}, value {value:g}); each must be a whole number 0..{top}{unit}",
            where=where,
            hint="inputs are event counts or levels on the driver's grid (docs/simulator.md)",
        )


def _check_x(x: np.ndarray, step_shape: tuple[int, ...], timesteps: int, where: str) -> np.ndarray:
    expected = f"[N, {timesteps}, {', '.join(map(str, step_shape))}]"
    if x.dtype.kind not in "iuf":
        raise PrimecError(
            f"x has dtype {x.dtype}; expected float32 (or another real number type)", where=where
        )
    if x.ndim != 2 + len(step_shape) or tuple(x.shape[2:]) != tuple(step_shape):
        raise PrimecError(f"x has shape {list(x.shape)}; expected {expected}", where=where)
    if x.shape[1] != timesteps:
        raise PrimecError(
            f"x has T={x.shape[1]} timesteps; the model runs T={timesteps}",
            where=where,
            hint=f"give x as {expected}",
        )
    if x.shape[0] == 0:
        raise PrimecError("x holds no samples", where=where)
    finite = (
        np.isfinite(x).reshape(x.shape[0], -1).all(axis=1)
        if x.dtype.kind == "f"
        else np.ones(len(x), bool)
    )
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise PrimecError(
            f"x has NaN or infinite values in {bad.size} samples (first: sample {bad[0]})",
            where=where,
        )
    return x.astype(np.float32, copy=False)


def _check_y(y: np.ndarray, samples: int, classes: int | None, where: str) -> np.ndarray:
    if y.dtype.kind not in "iu":
        raise PrimecError(f"y has dtype {y.dtype}; expected integer class labels", where=where)
    if y.shape != (samples,):
        raise PrimecError(
            f"y has shape {list(y.shape)}; expected [{samples}], one label per sample of x",
            where=where,
        )
    if classes is not None and (y.min() < 0 or y.max() >= classes):
        raise PrimecError(
            f"y has labels outside 0..{classes - 1} (found {y.min()}..{y.max()})", where=where
        )
    return y.astype(np.int64, copy=False)
