"""primec's IR: small, typed, immutable.

A `Graph` is the *step graph* of a spiking network: one timestep. Its inputs are the step's
input(s) and the neuron states; its outputs are the step's outputs and the new states. The
pairs (state input -> state output) are listed in `Graph.states`; every state starts at zero.

Shapes are per sample: every value carries an implicit leading batch dimension that the IR
never spells out. Weights are `Weight` references that compare by content hash, so comparing
two graphs never compares arrays.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DTYPES = ("f32", "f64", "i64", "bool")
_NUMPY_DTYPES = {"f32": np.float32, "f64": np.float64, "i64": np.int64, "bool": np.bool_}
_DTYPE_OF_NUMPY = {np.dtype(v): k for k, v in _NUMPY_DTYPES.items()}


@dataclass(frozen=True)
class TensorType:
    """The per-sample shape and storage dtype of a value."""

    shape: tuple[int, ...]
    dtype: str = "f32"

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(str(d) for d in self.shape)}]"

    @property
    def size(self) -> int:
        """Number of elements per sample."""
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class Value:
    """A named SSA value: defined once, by a graph input or by one node output."""

    name: str
    type: TensorType


@dataclass(frozen=True)
class Loc:
    """Where a node came from: a torch module path or an ONNX node name (machine independent)."""

    path: str = ""

    def __str__(self) -> str:
        return self.path or "?"


UNKNOWN_LOC = Loc()


def numpy_dtype(dtype: str) -> np.dtype:
    """The NumPy dtype for an IR dtype name."""
    return np.dtype(_NUMPY_DTYPES[dtype])


def ir_dtype(array: np.ndarray) -> str:
    """The IR dtype name for a NumPy array."""
    dtype = _DTYPE_OF_NUMPY.get(array.dtype)
    if dtype is None:
        raise ValueError(
            f"unsupported weight dtype {array.dtype}; use float32, float64, int64 or bool"
        )
    return dtype


def content_digest(array: np.ndarray) -> str:
    """Sixteen hex digits of sha256 over dtype, shape and bytes: the identity of a weight."""
    contiguous = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(str(contiguous.dtype).encode())
    h.update(str(contiguous.shape).encode())
    h.update(contiguous.tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Weight:
    """A tensor held by reference: equal when the content hash is equal.

    `data` is None when a graph was parsed without its weight side file; such a graph prints,
    verifies and compares, but cannot be interpreted.
    """

    digest: str
    type: TensorType
    data: np.ndarray | None = field(default=None, compare=False, repr=False, hash=False)

    @staticmethod
    def of(array: np.ndarray) -> Weight:
        """Wrap an array (copied, read-only) as a content-addressed weight."""
        frozen = np.array(array, copy=True)
        frozen.setflags(write=False)
        return Weight(
            content_digest(frozen), TensorType(tuple(frozen.shape), ir_dtype(frozen)), frozen
        )

    def array(self) -> np.ndarray:
        """The weight's data; raises if the side file was not loaded."""
        if self.data is None:
            raise ValueError(
                f"weight #{self.digest} has no data: load the graph with its .npz side file"
            )
        return self.data


UNSET = -1  # a TileRecord field that a later pass fills in


@dataclass(frozen=True)
class TileRecord:
    """One tile of a crossbar (docs/mapping.md): the one IR record of where it is and when it reads.

    `rows` and `outputs` are (start, stop) ranges into the crossbar's `row_map` and `col_map`
    (set by `tile`); `macro`, `array`, `row`, `col` say where its first cell sits, `row`
    and `col` counted in physical rows and columns of the array (set by `place`); `queue`
    is its read-queue index within its phase (set by `schedule`). Unset fields are -1.
    """

    rows: tuple[int, int]
    outputs: tuple[int, int]
    macro: int = UNSET
    array: int = UNSET
    row: int = UNSET
    col: int = UNSET
    queue: int = UNSET

    @property
    def placed(self) -> bool:
        """Whether `place` has given the tile its array."""
        return self.macro != UNSET

    def fields(self) -> tuple[int, ...]:
        """Every number of the record, in declaration order."""
        return (*self.rows, *self.outputs, self.macro, self.array, self.row, self.col, self.queue)


Attrs = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Node:
    """One operation: `outputs = op(inputs) {attrs}` at `loc`. Attrs are sorted by name."""

    op: str
    inputs: tuple[Value, ...]
    outputs: tuple[Value, ...]
    attrs: Attrs = ()
    loc: Loc = UNKNOWN_LOC

    def attr(self, name: str) -> Any:
        """The value of one attribute."""
        for key, value in self.attrs:
            if key == name:
                return value
        raise KeyError(f"node {self.op} has no attribute {name!r}")

    @property
    def attr_dict(self) -> dict[str, Any]:
        """Attributes as a dict (a copy)."""
        return dict(self.attrs)


@dataclass(frozen=True)
class State:
    """A neuron state carried between timesteps: `input` at step t is `output` of step t-1."""

    input: str
    output: str


@dataclass(frozen=True)
class Graph:
    """A step graph: inputs (step inputs then states), nodes in order, outputs, state pairs."""

    name: str
    inputs: tuple[Value, ...]
    outputs: tuple[Value, ...]
    nodes: tuple[Node, ...]
    states: tuple[State, ...] = ()
    meta: Attrs = ()

    @property
    def state_inputs(self) -> frozenset[str]:
        """Names of the inputs that are neuron states."""
        return frozenset(s.input for s in self.states)

    @property
    def step_inputs(self) -> tuple[Value, ...]:
        """The inputs fed from data each timestep (not states)."""
        return tuple(v for v in self.inputs if v.name not in self.state_inputs)

    @property
    def step_outputs(self) -> tuple[Value, ...]:
        """The outputs that are results, not next states."""
        state_outputs = {s.output for s in self.states}
        return tuple(v for v in self.outputs if v.name not in state_outputs)

    def meta_value(self, key: str, default: Any = None) -> Any:
        """One entry of the time-loop metadata."""
        return dict(self.meta).get(key, default)

    def producers(self) -> dict[str, Node]:
        """Map from value name to the node that defines it."""
        return {out.name: node for node in self.nodes for out in node.outputs}

    def users(self) -> dict[str, list[Node]]:
        """Map from value name to the nodes that read it, in graph order."""
        result: dict[str, list[Node]] = {}
        for node in self.nodes:
            for value in node.inputs:
                result.setdefault(value.name, []).append(node)
        return result

    def weights(self) -> dict[str, Weight]:
        """Every weight referenced by an attribute, by digest."""
        found: dict[str, Weight] = {}
        for node in self.nodes:
            for _, value in node.attrs:
                if isinstance(value, Weight):
                    found[value.digest] = value
        return found

    def replace(self, **changes: Any) -> Graph:
        """A copy with some fields replaced."""
        return dataclasses.replace(self, **changes)


def sorted_attrs(attrs: dict[str, Any]) -> Attrs:
    """Attributes in canonical order, lists frozen to tuples."""
    return tuple((k, _freeze(v)) for k, v in sorted(attrs.items()))


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value
