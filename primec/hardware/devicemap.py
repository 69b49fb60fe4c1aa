"""Device maps: the measured (or synthesised) conductance of every cell of a chip, and binding them
into a model's frozen as-formed weights.

File format (docs/mapping.md, "Device maps"): a NumPy .npz archive (no pickles) with
  format  str    "primec-devicemap"
  version int    1
  target  str    the target name the map was measured on
  units   str    "uS"
  seed    int    the synthesis seed (-1 for a measured chip)
  g       f32    [macros, arrays_per_macro, rows, cols] conductance of each cell in uS
  fault   i8     same shape: 0 healthy, 1 stuck at g_off_us (low), 2 stuck at g_max_us (high)
Cell pair j of an array row is columns (2j, 2j+1) = (G+, G-); its weight is G+ - G- in uS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from primec.archive import read_npz, reader_error
from primec.errors import PrimecError
from primec.fileio import write_npz
from primec.hardware.geometry import PAIR
from primec.hardware.mapping import (
    AS_FORMED,
    Layout,
    Slot,
    layer_tiles,
    matrix_index,
    matrix_shape,
    pack,
    tile_ranges,
)
from primec.hardware.target import Target, load_target

FORMAT = "primec-devicemap"
VERSION = 1
UNITS = "uS"
# Cells may exceed the target's g_max by float32's rounding of it (maps store float32), no more:
# the artefact validator allows the same.
G_MAX_SLACK = 1 + 2.0**-20
HEALTHY, STUCK_LOW, STUCK_HIGH = 0, 1, 2
MEASURED_SEED = -1
KEYS = ("format", "version", "target", "units", "seed", "g", "fault")
_READ_ERROR = reader_error(
    "device map", "write one with `primec devicemap synth` (format in docs/mapping.md)"
)


@dataclass(frozen=True)
class DeviceMap:
    """Per-cell conductances (uS) and fault flags of a chip, [macros, arrays, rows, cols]."""

    target: str
    g: np.ndarray
    fault: np.ndarray
    seed: int = MEASURED_SEED

    @property
    def macros(self) -> int:
        """Macros the map covers."""
        return int(self.g.shape[0])

    def pair_weights(self, slot: Slot, rows: int, pairs: int) -> np.ndarray:
        """G+ - G- (uS, float64) of the `rows` x `pairs` cell pairs starting at `slot`."""
        cells = self.g[slot.macro, slot.array, slot.row : slot.row + rows]
        g_pos, g_neg = PAIR.split(cells[:, slot.col : slot.col + PAIR.width(pairs)])
        return g_pos.astype(np.float64) - g_neg.astype(np.float64)

    def stuck_tables(self) -> np.ndarray:
        """Summed-area tables of stuck cells, one per array in placement order."""
        stuck = (self.fault != HEALTHY).reshape(-1, *self.fault.shape[2:]).astype(np.int32)
        tables = np.zeros((stuck.shape[0], stuck.shape[1] + 1, stuck.shape[2] + 1), np.int32)
        tables[:, 1:, 1:] = stuck.cumsum(axis=1).cumsum(axis=2)
        return tables


def synth(target: Target, seed: int, macros: int | None = None) -> DeviceMap:
    """A chip drawn from the target's as-formed distribution and stuck-at rates, reproducibly."""
    macros = target.chip.macros if macros is None else macros
    if macros < 1:
        raise PrimecError(f"a device map needs at least one macro, got {macros}")
    cells = target.cells
    rng = np.random.default_rng(seed)
    shape = (macros, target.chip.arrays_per_macro, target.array.rows, target.array.cols)
    g = rng.normal(cells.formed_mean_us, cells.formed_std_us, shape)
    g = np.clip(g, cells.g_off_us, cells.g_max_us).astype(np.float32)
    draw = rng.random(shape)
    fault = np.full(shape, HEALTHY, np.int8)
    fault[draw < cells.stuck_low_rate] = STUCK_LOW
    fault[draw >= 1.0 - cells.stuck_high_rate] = STUCK_HIGH
    g[fault == STUCK_LOW] = cells.g_off_us
    g[fault == STUCK_HIGH] = cells.g_max_us
    return DeviceMap(target.name, g, fault, seed)


def save(device_map: DeviceMap, path: str | Path) -> None:
    """Write a device map atomically (byte-identical for the same map)."""
    write_npz(
        path,
        {
            "format": np.array(FORMAT),
            "version": np.array(VERSION, np.int64),
            "target": np.array(device_map.target),
            "units": np.array(UNITS),
            "seed": np.array(device_map.seed, np.int64),
            "g": device_map.g.astype(np.float32),
            "fault": device_map.fault.astype(np.int8),
        },
    )


def load(path: str | Path, target: Target) -> DeviceMap:
    """Read a device map and check it against the target: format, units, shape, values."""
    where = str(path)
    arrays = read_npz(path, where, keys=KEYS, error=_READ_ERROR)
    missing = [k for k in KEYS if k not in arrays]
    if missing:
        raise PrimecError(
            f"not a primec device map: missing {', '.join(missing)}",
            where=where,
            hint="write one with `primec devicemap synth` (format in docs/mapping.md)",
        )
    header = {k: _scalar(arrays[k], k, where) for k in KEYS[:5]}
    kinds = {"format": str, "version": int, "target": str, "units": str, "seed": int}
    wrong = [k for k, kind in kinds.items() if type(header[k]) is not kind]
    if wrong:
        raise PrimecError(
            f"device map field {wrong[0]!r} must be {kinds[wrong[0]].__name__}, "
            f"got {header[wrong[0]]!r}",
            where=where,
        )
    _check_header(header, where)
    device_map = DeviceMap(str(header["target"]), arrays["g"], arrays["fault"], int(header["seed"]))
    if device_map.target != target.name:
        raise PrimecError(
            f"device map was made for target {device_map.target!r}, not {target.name!r}",
            where=where,
            hint=f"compile with --target {device_map.target}, or synthesise a map for {target.name}",
        )
    _check_shape(device_map, target, where)
    _check_values(device_map, target, where)
    return device_map


def _scalar(array: np.ndarray, key: str, where: str) -> Any:
    # The deterministic npz writer stores a scalar as a one-element array.
    if array.size != 1:
        raise PrimecError(
            f"device map field {key!r} must be one value, got {array.size}", where=where
        )
    return array.reshape(-1)[0].item()


def _check_header(header: dict[str, Any], where: str) -> None:
    if header["format"] != FORMAT or header["version"] != VERSION:
        raise PrimecError(
            f"unsupported device map format {header['format']!r} version {header['version']}",
            where=where,
            hint=f"primec reads {FORMAT!r} version {VERSION}",
        )
    if header["units"] != UNITS:
        raise PrimecError(
            f"device map conductances are in {header['units']!r}; primec expects {UNITS!r}",
            where=where,
            hint="convert the map to microsiemens (1 S = 1e6 uS)",
        )


def _check_shape(device_map: DeviceMap, target: Target, where: str) -> None:
    expected = (target.chip.arrays_per_macro, target.array.rows, target.array.cols)
    g, fault = device_map.g, device_map.fault
    if g.ndim != 4 or g.shape[1:] != expected or g.shape[0] < 1:
        raise PrimecError(
            f"device map g has shape {list(g.shape)}; target {target.name} needs "
            f"[macros, {', '.join(map(str, expected))}] (macros x arrays per macro x rows x cols)",
            where=where,
        )
    if fault.shape != g.shape:
        raise PrimecError(
            f"device map fault has shape {list(fault.shape)}, g has {list(g.shape)}", where=where
        )
    if g.shape[0] > target.chip.macros:
        raise PrimecError(
            f"device map covers {g.shape[0]} macros; target {target.name} has {target.chip.macros}",
            where=where,
        )


def _check_values(device_map: DeviceMap, target: Target, where: str) -> None:
    g, cells = device_map.g, target.cells
    if g.dtype.kind != "f" or device_map.fault.dtype.kind not in "iu":
        raise PrimecError(
            f"device map g must hold floats and fault integers, got {g.dtype} and "
            f"{device_map.fault.dtype}",
            where=where,
        )
    if not np.isfinite(g).all() or g.min() < 0:
        raise PrimecError("device map conductances must be finite and non-negative", where=where)
    if float(g.max(initial=0.0)) > cells.g_max_us * G_MAX_SLACK:
        raise PrimecError(
            f"device map conductance {float(g.max()):g} uS is above the target's maximum "
            f"cells.g_max_us ({cells.g_max_us:g} uS)",
            where=where,
            hint="use a target whose cells.g_max_us covers the chip's cells, or clip the map to it",
        )
    if float(np.median(g)) < cells.g_off_us:
        raise PrimecError(
            f"device map conductances (median {float(np.median(g)):.3g}) lie below the target's "
            f"off state {cells.g_off_us} uS: wrong units (siemens instead of microsiemens)?",
            where=where,
        )
    if not np.isin(device_map.fault, (HEALTHY, STUCK_LOW, STUCK_HIGH)).all():
        raise PrimecError("device map fault flags must be 0, 1 or 2", where=where)


@dataclass(frozen=True)
class BoundLayer:
    """A supermask layer as bind sees it: its module path, kind, weight shape and groups."""

    name: str
    kind: str
    shape: tuple[int, ...]
    groups: int


def as_formed_layout(
    layers: list[BoundLayer], target: Target, device_map: DeviceMap | None
) -> Layout:
    """The slot of every tile of the as-formed layers: the compiler's own tiling and placement."""
    tiles = []
    for i, layer in enumerate(layers):
        rows, outputs = matrix_shape(layer.kind, layer.shape, layer.groups)
        tiles += layer_tiles(i, tile_ranges(rows, outputs, target), AS_FORMED)
    if device_map is None:
        return pack(tiles, target)
    limit = min(target.chip.macros, device_map.macros) * target.chip.arrays_per_macro
    return pack(tiles, target, device_map.stuck_tables(), limit)


def layer_cells(
    layer: BoundLayer, layout: Layout, index: int, target: Target, device_map: DeviceMap
) -> np.ndarray:
    """The layer's matrix [R, O] as its cells hold it (G+ - G-, uS)."""
    rows, outputs = matrix_shape(layer.kind, layer.shape, layer.groups)
    matrix = np.zeros((rows, outputs))
    for t, (r0, r1, c0, _) in enumerate(tile_ranges(rows, outputs, target)):
        for piece in layout.pieces[(index, t)]:
            first = c0 + piece.first
            cells = device_map.pair_weights(piece.slot, r1 - r0, piece.pairs)
            matrix[r0:r1, first : first + piece.pairs] = cells
    return matrix


def supermask_layers(model: Any) -> list[tuple[BoundLayer, Any]]:
    """The model's supermask layers (modules with `weight`, `scores` and `gain`), in module order."""
    import torch

    found = []
    for name, module in model.named_modules():
        if not all(hasattr(module, a) for a in ("weight", "scores", "gain")):
            continue
        transposed = isinstance(module, torch.nn.ConvTranspose2d)
        kind = (
            "linear" if module.weight.dim() == 2 else "conv_transpose2d" if transposed else "conv2d"
        )
        groups = int(getattr(module, "groups", 1))
        found.append((BoundLayer(name, kind, tuple(module.weight.shape), groups), module))
    return found


def bind_device_map(
    model: Any, chip: DeviceMap | str | Path, target: Target | str
) -> dict[str, int]:
    """Fill every supermask layer's frozen weight with G+ - G- of the cells it will be placed on.

    Returns the number of weights bound per layer. The layers are taken in module order; the
    compiler places as-formed layers in graph order, which is the same for sequential models
    (`primec compile --device-map` checks every kept weight against its cells either way).
    """
    import torch

    target = load_target(target) if isinstance(target, str) else target
    device_map = chip if isinstance(chip, DeviceMap) else load(chip, target)
    layers = supermask_layers(model)
    if not layers:
        raise PrimecError("the model has no supermask layers (modules with weight, scores, gain)")
    layout = as_formed_layout([layer for layer, _ in layers], target, device_map)
    bound = {}
    for i, (layer, module) in enumerate(layers):
        matrix = layer_cells(layer, layout, i, target, device_map)
        index = matrix_index(layer.kind, layer.shape, layer.groups)
        flat = np.zeros(int(np.prod(layer.shape)), np.float32)
        flat[index[index >= 0]] = matrix[index >= 0]
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(flat.reshape(layer.shape)))
        bound[layer.name] = int(flat.size)
    return bound
