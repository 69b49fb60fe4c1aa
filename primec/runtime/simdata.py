"""Simulator input files: `data.npz` with `x` [N, T, ...] and optional labels `y` [N].

Every way such a file can be wrong gets one message that says what was expected and what was
found, before any simulation starts.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from primec.errors import PrimecError


@dataclass(frozen=True)
class SimData:
    """Validated inputs: x as float32 [N, T, ...] and labels (or None)."""

    x: np.ndarray
    y: np.ndarray | None


def load_inputs(
    path: str | Path, step_shape: tuple[int, ...], timesteps: int, classes: int | None = None
) -> SimData:
    """Read and check `path` against the artefact's per-step input shape, T and class count."""
    where = str(path)
    arrays = _read_npz(Path(path))
    if "x" not in arrays:
        raise PrimecError(
            f"no array `x` in the file (found: {', '.join(sorted(arrays)) or 'nothing'})",
            where=where,
            hint="save x [N, T, ...] (and y [N]) with numpy.savez",
        )
    x = _check_x(arrays["x"], step_shape, timesteps, where)
    y = _check_y(arrays["y"], len(x), classes, where) if "y" in arrays else None
    return SimData(x, y)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise PrimecError(
            f"cannot read input data: {exc}",
            where=str(path),
            hint="write it with numpy.savez(path, x=x, y=y)",
        ) from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise PrimecError(
            "expected an .npz archive with arrays x and y, found a single array", where=str(path)
        )
    try:
        with archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise PrimecError(f"cannot read input data: {exc}", where=str(path)) from exc


def _check_x(x: np.ndarray, step_shape: tuple[int, ...], timesteps: int, where: str) -> np.ndarray:
    expected = f"[N, {timesteps}, {', '.join(map(str, step_shape))}]"
    if (
        not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer))
        or x.dtype == np.bool_
    ):
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
    if not np.issubdtype(y.dtype, np.integer):
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
