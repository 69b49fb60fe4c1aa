"""The IR's text form: a printer and a parser with `parse(print(g)) == g`.

The grammar is written down in `docs/ir.md`. Weights print as references
(`weight<f32[12,2,5,5] #0123456789abcdef>`); their data lives in a side file `X.npz` next to
`X.pir`, one array per digest.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from primec.archive import read_npz, reader_error
from primec.core.ir import (
    DTYPES,
    Graph,
    Loc,
    Node,
    State,
    TensorType,
    Value,
    Weight,
    content_digest,
    numpy_dtype,
)
from primec.core.ops import OPS, REQUIRED
from primec.core.printer import format_node, format_value, graph_lines, node_line, print_graph
from primec.core.tiletext import read_tile
from primec.core.tokens import ParseError, _Tokens
from primec.errors import PrimecError
from primec.fileio import atomic_write_bytes, atomic_write_text, npz_bytes

# ---------------------------------------------------------------------------------------------
# printer


# The text form's public names (printer and tokens included, so callers need one module).
__all__ = [
    "ParseError",
    "format_node",
    "format_value",
    "graph_lines",
    "load_weights",
    "node_line",
    "parse_graph",
    "parse_with_lines",
    "print_graph",
    "read_graph_file",
    "save_graph",
    "side_file",
]

_MAX_NESTING = 64  # list attributes nest at most this deep
_MAX_DIGITS = 64  # a number token is at most this long

_SIDE_ERROR = reader_error("weight side file", "rewrite it with `primec compile ... --emit ir`")


class _Parser:
    def __init__(self, text: str, source: str, weights: dict[str, np.ndarray] | None) -> None:
        self.t = _Tokens(text, source)
        self.weights = weights
        self.types: dict[str, TensorType] = {}
        self.node_lines: list[int] = []

    def graph(self) -> Graph:
        t = self.t
        t.expect("ident", "graph")
        name = t.expect("symbol")[1:]
        inputs = self.typed_values()
        self.types.update((v.name, v.type) for v in inputs)
        t.expect("arrow", "->")
        outputs = self.typed_values()
        t.expect("punct", "{")
        meta, states, nodes = [], [], []
        while True:
            token = t.peek()
            if token[1] == "meta" and token[0] == "ident":
                meta.append(self.meta())
            elif token[1] == "state" and token[0] == "ident":
                states.append(self.state())
            elif token[1] == "return" and token[0] == "ident":
                break
            else:
                self.node_lines.append(token[2])
                nodes.append(self.node())
        t.expect("ident", "return")
        returned = self.names_until_newline()
        t.expect("punct", "}")
        t.expect("eof")
        self.check_return(returned, outputs)
        return Graph(name, tuple(inputs), tuple(outputs), tuple(nodes), tuple(states), tuple(meta))

    def typed_values(self) -> list[Value]:
        t = self.t
        t.expect("punct", "(")
        values: list[Value] = []
        while not t.accept("punct", ")"):
            if values:
                t.expect("punct", ",")
            name = t.expect("value")[1:]
            t.expect("punct", ":")
            values.append(Value(name, self.tensor_type()))
        return values

    def tensor_type(self) -> TensorType:
        t = self.t
        dtype = t.expect("ident")
        if dtype not in DTYPES:
            t.pos -= 1
            t.fail(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
        t.expect("punct", "[")
        dims: list[int] = []
        while not t.accept("punct", "]"):
            if dims:
                t.expect("punct", ",")
            dims.append(self.integer())
        return TensorType(tuple(dims), dtype)

    def integer(self) -> int:
        token = self.t.peek()
        if token[0] != "number" or not re.fullmatch(r"-?\d+", token[1]):
            self.t.fail(f"expected an integer, found {token[1]!r}")
        return self.number()

    def string(self) -> str:
        """A string token, decoded as a JSON string."""
        lexeme = self.t.expect("string")
        try:
            return json.loads(lexeme)
        except ValueError:
            self.t.pos -= 1
            self.t.fail(f"invalid string {lexeme[:40]}: use JSON escapes")

    def number(self) -> int | float:
        """A number token: an int, or a finite float; at most _MAX_DIGITS characters."""
        lexeme = self.t.peek()[1]
        if len(lexeme) > _MAX_DIGITS:
            self.t.fail(f"number {lexeme[:20]}... is longer than {_MAX_DIGITS} characters")
        value = int(lexeme) if re.fullmatch(r"-?\d+", lexeme) else float(lexeme)
        if not math.isfinite(value):
            self.t.fail(f"number {lexeme} is out of range")
        self.t.pos += 1
        return value

    def meta(self) -> tuple[str, Any]:
        t = self.t
        t.expect("ident", "meta")
        key = t.expect("ident")
        t.expect("punct", "=")
        return key, self.attr_value()

    def state(self) -> State:
        t = self.t
        t.expect("ident", "state")
        source = t.expect("value")[1:]
        t.expect("arrow", "<-")
        return State(source, t.expect("value")[1:])

    def names_until_newline(self) -> list[tuple[str, int, int]]:
        t = self.t
        names = []
        while t.peek(skip_newlines=False)[0] == "value":
            token = t.next(skip_newlines=False)
            names.append((token[1][1:], token[2], token[3]))
            if not t.accept("punct", ",", skip_newlines=False):
                break
        return names

    def check_return(self, returned: list[tuple[str, int, int]], outputs: list[Value]) -> None:
        declared = [v.name for v in outputs]
        if [n for n, _, _ in returned] != declared:
            line, col = (
                (returned[0][1], returned[0][2]) if returned else (len(self.t.text.splitlines()), 1)
            )
            self.t.fail_at(
                line,
                col,
                f"return lists {[n for n, _, _ in returned]}, the signature declares {declared}",
            )

    def node(self) -> Node:
        t = self.t
        out_names = []
        while True:
            out_names.append(t.expect("value")[1:])
            if not t.accept("punct", ","):
                break
        t.expect("punct", "=")
        op = t.expect("ident")
        t.expect("punct", "(")
        args: list[str] = []
        while not t.accept("punct", ")"):
            if args:
                t.expect("punct", ",")
            args.append(t.expect("value")[1:])
        attrs = self.attr_dict() if t.peek()[1] == "{" else {}
        t.expect("punct", ":")
        out_types = [self.tensor_type()]
        while t.accept("punct", ",", skip_newlines=False):
            out_types.append(self.tensor_type())
        if len(out_types) != len(out_names):
            t.fail(f"{len(out_names)} results but {len(out_types)} types")
        loc = Loc()
        if t.peek(skip_newlines=False)[1] == "loc":
            t.next()
            t.expect("punct", "(")
            loc = Loc(self.string())
            t.expect("punct", ")")
        if t.peek(skip_newlines=False)[0] not in ("nl", "eof"):
            t.fail(f"unexpected {t.peek(skip_newlines=False)[1]!r} after node")
        inputs = tuple(Value(a, self.types.get(a, TensorType((), "f32"))) for a in args)
        outputs = tuple(Value(n, ty) for n, ty in zip(out_names, out_types, strict=True))
        for value in outputs:
            self.types.setdefault(value.name, value.type)
        return Node(op, inputs, outputs, tuple(sorted(_with_defaults(op, attrs).items())), loc)

    def attr_dict(self) -> dict[str, Any]:
        t = self.t
        t.expect("punct", "{")
        attrs: dict[str, Any] = {}
        while not t.accept("punct", "}"):
            if attrs:
                t.expect("punct", ",")
            key = t.expect("ident")
            if key in attrs:
                t.pos -= 1
                t.fail(f"attribute {key!r} given twice")
            t.expect("punct", "=")
            attrs[key] = self.attr_value()
        return attrs

    def attr_value(self, depth: int = 0) -> Any:
        t = self.t
        kind, lexeme, _, _ = t.peek()
        if depth > _MAX_NESTING:
            t.fail(f"lists nested deeper than {_MAX_NESTING} levels")
        if kind == "number":
            return self.number()
        if kind == "string":
            return self.string()
        if kind == "ident" and lexeme in ("true", "false"):
            t.pos += 1
            return lexeme == "true"
        if kind == "ident" and lexeme == "weight":
            return self.weight_ref()
        if kind == "ident" and lexeme == "tile":
            return read_tile(self.t, self.integer)
        if lexeme == "[":
            t.pos += 1
            items = []
            while not t.accept("punct", "]"):
                if items:
                    t.expect("punct", ",")
                items.append(self.attr_value(depth + 1))
            return tuple(items)
        t.fail(f"expected an attribute value, found {lexeme!r}")

    def inline_weight(self, ty: TensorType) -> Weight:
        """A weight written out in the text (`weight<f32[2] = [1.0, 2.0]>`), for hand-written IR."""
        return _make_inline(self, ty)

    def weight_ref(self) -> Weight:
        t = self.t
        t.expect("ident", "weight")
        t.expect("punct", "<")
        ty = self.tensor_type()
        if t.accept("punct", "="):
            return self.inline_weight(ty)
        digest = t.expect("digest")[1:]
        t.expect("punct", ">")
        if self.weights is not None and digest not in self.weights:
            t.fail(f"weight #{digest} is not in the weight side file")
        data = None if self.weights is None else self.weights[digest]
        if data is not None and (tuple(data.shape) != ty.shape):
            t.fail(
                f"weight #{digest} in the side file has shape {list(data.shape)}, the text says {ty}"
            )
        if data is not None:
            data = np.array(data, copy=True)
            data.setflags(write=False)
        return Weight(digest, ty, data)


def _inline_values(parser: _Parser) -> list[float]:
    values = parser.attr_value()
    if not isinstance(values, tuple) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        parser.t.fail("an inline weight takes a flat list of numbers: weight<f32[2] = [1.0, 2.0]>")
    return list(values)


def _with_defaults(op: str, attrs: dict[str, Any]) -> dict[str, Any]:
    # Hand-written IR may leave out attributes that have a default; the canonical form has all.
    definition = OPS.get(op)
    if definition is None:
        return attrs
    defaults = {
        a.name: a.default
        for a in definition.attrs
        if a.default is not REQUIRED and not a.optional and a.name not in attrs
    }
    return {**attrs, **defaults}


def _make_inline(parser: _Parser, ty: TensorType) -> Weight:
    values = _inline_values(parser)
    parser.t.expect("punct", ">")
    if len(values) != ty.size:
        parser.t.fail(f"inline weight {ty} needs {ty.size} values, got {len(values)}")
    return Weight.of(np.array(values, dtype=numpy_dtype(ty.dtype)).reshape(ty.shape))


def parse_graph(
    text: str, source: str = "<text>", weights: dict[str, np.ndarray] | None = None
) -> Graph:
    """Parse IR text; `weights` maps digests to arrays (from the side file)."""
    return _Parser(text, source, weights).graph()


def parse_with_lines(
    text: str, source: str = "<text>", weights: dict[str, np.ndarray] | None = None
) -> tuple[Graph, list[int]]:
    """Parse IR text and also return the source line of every node (for diagnostics)."""
    parser = _Parser(text, source, weights)
    return parser.graph(), parser.node_lines


# ---------------------------------------------------------------------------------------------
# files


def side_file(path: str | Path) -> Path:
    """The weight side file that belongs to an IR file."""
    return Path(path).with_suffix(".npz")


def save_graph(graph: Graph, path: str | Path) -> None:
    """Write `path` (.pir text) and its side file (.npz of weights by digest), atomically."""
    arrays = {digest: w.array() for digest, w in sorted(graph.weights().items())}
    atomic_write_bytes(side_file(path), npz_bytes(arrays))
    atomic_write_text(path, print_graph(graph))


def load_weights(path: Path) -> dict[str, np.ndarray]:
    """Read a weight side file and check that every array matches its digest."""
    arrays = read_npz(path, str(path), error=_SIDE_ERROR)
    for digest, array in arrays.items():
        if content_digest(array) != digest:
            raise PrimecError(
                f"weight #{digest} does not match its content (corrupted side file)",
                where=str(path),
            )
    return arrays


def read_graph_file(path: str | Path) -> tuple[Graph, list[int], str]:
    """Read a .pir file (and its side file if present); return graph, node lines and text."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PrimecError(f"cannot read IR file: {exc}", where=str(path)) from exc
    weights_path = side_file(path)
    weights = load_weights(weights_path) if weights_path.exists() else None
    graph, lines = parse_with_lines(text, str(path), weights)
    return graph, lines, text
