"""The IR's printer: the canonical text of a graph (`docs/ir.md` has the grammar); the parser in
`primec.core.text` reads it back, `parse(print(g)) == g`.
"""

from __future__ import annotations

import json
import math
from typing import Any

from primec.core.ir import UNSET, Graph, Node, TileRecord, Weight


def format_value(value: Any) -> str:
    """One attribute or meta value in text form."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _format_float(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Weight):
        return f"weight<{value.type} #{value.digest}>"
    if isinstance(value, TileRecord):
        return format_tile(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    raise TypeError(f"cannot print attribute value {value!r}")


def format_tile(tile: TileRecord) -> str:
    """`tile<rows 0:25, outputs 0:8, macro 0, array 1, at (0, 16), queue 3>`; unset parts left out."""
    parts = [f"rows {tile.rows[0]}:{tile.rows[1]}", f"outputs {tile.outputs[0]}:{tile.outputs[1]}"]
    if tile.placed:
        parts.append(f"macro {tile.macro}, array {tile.array}, at ({tile.row}, {tile.col})")
    if tile.queue != UNSET:
        parts.append(f"queue {tile.queue}")
    return f"tile<{', '.join(parts)}>"


def _format_float(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(value)


def format_node(node: Node) -> str:
    """One node as one line (without indentation)."""
    outs = ", ".join(f"%{v.name}" for v in node.outputs)
    args = ", ".join(f"%{v.name}" for v in node.inputs)
    text = f"{outs} = {node.op}({args})"
    if node.attrs:
        text += " {" + ", ".join(f"{k} = {format_value(v)}" for k, v in node.attrs) + "}"
    text += " : " + ", ".join(str(v.type) for v in node.outputs)
    if node.loc.path:
        text += f" loc({json.dumps(node.loc.path)})"
    return text


def graph_lines(graph: Graph) -> list[str]:
    """The graph's text, one line per list entry; node i is line `node_line(i)`."""
    params = ", ".join(f"%{v.name}: {v.type}" for v in graph.inputs)
    results = ", ".join(f"%{v.name}: {v.type}" for v in graph.outputs)
    lines = [f"graph @{graph.name}({params}) -> ({results}) {{"]
    lines += [f"  meta {k} = {format_value(v)}" for k, v in graph.meta]
    lines += [f"  state %{s.input} <- %{s.output}" for s in graph.states]
    lines += [f"  {format_node(n)}" for n in graph.nodes]
    lines.append("  return " + ", ".join(f"%{v.name}" for v in graph.outputs))
    lines.append("}")
    return lines


def node_line(graph: Graph, index: int) -> int:
    """The 1-based line number on which node `index` is printed."""
    return 2 + len(graph.meta) + len(graph.states) + index


def print_graph(graph: Graph) -> str:
    """The canonical text form of a graph."""
    return "\n".join(graph_lines(graph)) + "\n"


# ---------------------------------------------------------------------------------------------
# parser
