"""NIR neuron parameters as primec reads them: one value per layer, or one per neuron.

NIR gives every neuron parameter as an array of the layer's shape. Where all its values are
equal it is one value, read as a float32 value the way primec's ONNX import reads attributes
(the shortest decimal of the float32), so a graph exported at the same dt imports back
identical. Where they differ it is per neuron: the step's parameters are computed from the
float64 values and rounded to float32 arrays, which the IR then holds exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from primec.errors import PrimecError

Param = float | np.ndarray  # one value, or one per neuron (float32, the layer's shape)


def f32(value: float) -> float:
    """A float32 parameter as primec's IR holds it: the shortest decimal of the float32."""
    return float(str(np.float32(value)))


def rounded(value: Any) -> Param:
    """A computed parameter as primec holds it: f32 of one value, float32 per neuron."""
    if np.ndim(value) == 0:
        return f32(float(value))
    return np.asarray(value, dtype=np.float32)


def values(node: Any, field: str, where: str) -> Param:
    """A parameter of one value (a float) or one per neuron (a float64 array of its shape)."""
    array = np.asarray(getattr(node, field), dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise PrimecError(f"NIR node {where!r}: {field} is not finite")
    flat = array.reshape(-1)
    if flat.size == 0:
        raise PrimecError(f"NIR node {where!r}: {field} holds no value")
    return f32(flat[0]) if np.all(flat == flat[0]) else array


def step(tau: Param, r: Param, discretisation: str, dt: float, where: str) -> tuple[Param, Param]:
    """(keep, input_gain) of `tau dv/dt = -v + r*I` over one step dt, as primec holds them."""
    if np.any(np.asarray(tau) <= 0.0):
        least = float(np.min(tau))
        raise PrimecError(f"NIR node {where!r}: a time constant must be positive, got {least}")
    if isinstance(tau, float) and isinstance(r, float):
        if discretisation == "exact":
            keep = f32(math.exp(-dt / tau))  # the input gain from the keep primec will run
            return keep, f32(r * (1.0 - keep))
        return f32(1.0 - dt / tau), f32(dt * r / tau)
    if discretisation == "exact":
        keep = rounded(np.exp(-dt / np.asarray(tau)))
        return keep, rounded(np.asarray(r) * (1.0 - np.asarray(keep, dtype=np.float64)))
    return rounded(1.0 - dt / np.asarray(tau)), rounded(dt * np.asarray(r) / np.asarray(tau))
