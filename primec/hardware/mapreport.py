"""What the mapping passes produced, as report fields and a readable table (`primec compile`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from primec.core.ir import Graph, Node
from primec.core.rewrite import layer_name
from primec.hardware.geometry import PAIR
from primec.hardware.target import Target


def layer_row(node: Node) -> dict[str, Any]:
    """One placed crossbar layer: its matrix, tiles, reads and weights."""
    mask = node.attr("mask").array()
    rows, cols = node.attr("row_map").type.size, node.attr("col_map").type.size
    tiles = len(node.attr("tiles"))
    kept = int(np.count_nonzero(mask))
    positions = node.inputs[0].type.shape[0]
    return {
        "name": layer_name(node),
        "mode": node.attr("mode"),
        "matrix": [int(mask.shape[0]), int(mask.shape[1])],
        "tiles": tiles,
        "cells": rows * PAIR.width(cols),
        "drive": node.attr("drive"),
        "planes": node.attr("planes"),
        "reads_per_timestep": positions * node.attr("planes") * tiles,
        "weights_kept": kept,
        "weights_total": math.prod(node.attr("weight_shape")),
        "pairs_reset": rows * cols - kept,
        "pairs_programmed": kept if node.attr("mode") == "programmed" else 0,
    }


def mapping_report(graph: Graph, target: Target) -> dict[str, Any]:
    """The report fields of a placed graph (empty when the graph was not placed)."""
    if graph.meta_value("arrays_used") is None:
        return {}
    layers = [layer_row(n) for n in graph.nodes if n.op == "crossbar"]
    cells = sum(layer["cells"] for layer in layers)
    pairs_reset = sum(layer["pairs_reset"] for layer in layers)
    programmed = sum(layer["pairs_programmed"] for layer in layers)
    return {
        "target": target.name,
        "arrays_used": graph.meta_value("arrays_used"),
        "arrays_lower_bound": math.ceil(cells / target.cells_per_array),
        "macros_used": graph.meta_value("macros_used"),
        "cells_used": cells,
        "cells_programmed": 2 * (pairs_reset + programmed),
        "pairs_reset": pairs_reset,
        "reads_per_timestep": graph.meta_value("reads_per_timestep"),
        "read_cycles_per_timestep": graph.meta_value("read_cycles_per_timestep"),
        "placement_moves": list(graph.meta_value("placement_moves", ())),
        "stuck_cells_under_tiles": graph.meta_value("stuck_cells_under_tiles", 0),
        "layers": layers,
    }


def mapping_table(report: dict[str, Any]) -> str:
    """The report as the table `primec compile` prints."""
    head = (
        f"target {report['target']}: {report['macros_used']} macro(s), {report['arrays_used']} "
        f"array(s) used (lower bound {report['arrays_lower_bound']}), {report['cells_used']:,} "
        f"cells, {report['pairs_reset']:,} pairs reset, {report['cells_programmed']:,} cells "
        "written (resets and programmed pairs)"
    )
    columns = ("layer", "matrix R x O", "tiles", "drive", "reads/step", "weights kept/total")
    rows = [
        (
            layer["name"],
            f"{layer['matrix'][0]} x {layer['matrix'][1]}",
            str(layer["tiles"]),
            f"{layer['drive']} x{layer['planes']}",
            f"{layer['reads_per_timestep']:,}",
            f"{layer['weights_kept']:,} / {layer['weights_total']:,}",
        )
        for layer in report["layers"]
    ]
    widths = [max(len(r[i]) for r in [columns, *rows]) for i in range(len(columns))]
    lines = [head, "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines += [f"moved for stuck cells: {m}" for m in report["placement_moves"]]
    if report["stuck_cells_under_tiles"]:
        lines.append(f"stuck cells left under tiles: {report['stuck_cells_under_tiles']}")
    return "\n".join(line.rstrip() for line in lines)
