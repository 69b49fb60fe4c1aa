"""A small helper to build step graphs in code: names are made unique, result types come from
the op table's shape rules, defaults are filled in."""

from __future__ import annotations

from typing import Any

import numpy as np

from primec.core.ir import Graph, Loc, Node, State, TensorType, Value, Weight, sorted_attrs
from primec.core.ops import OPS, canonical_attrs


class GraphBuilder:
    """Accumulates inputs, states, nodes and outputs; `build()` returns the frozen `Graph`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.inputs: list[Value] = []
        self.nodes: list[Node] = []
        self.outputs: list[Value] = []
        self.states: list[tuple[Value, Value | None]] = []
        self.meta: dict[str, Any] = {}
        self._taken: set[str] = set()

    def fresh(self, hint: str) -> str:
        """A value name based on `hint` that is not taken yet."""
        base = "".join(c if c.isalnum() or c in "_.-" else "_" for c in hint) or "v"
        name, counter = base, 1
        while name in self._taken:
            name, counter = f"{base}_{counter}", counter + 1
        self._taken.add(name)
        return name

    def input(self, name: str, shape: tuple[int, ...], dtype: str = "f32") -> Value:
        """Add a step input."""
        value = Value(self.fresh(name), TensorType(tuple(shape), dtype))
        self.inputs.append(value)
        return value

    def state(self, name: str, shape: tuple[int, ...], dtype: str = "f32") -> Value:
        """Add a state input (zero at the first step); give its next value with `set_state`."""
        value = self.input(name, shape, dtype)
        self.states.append((value, None))
        return value

    def set_state(self, state: Value, next_value: Value) -> None:
        """Say which value becomes `state` at the next timestep."""
        self.states = [(s, next_value if s == state else n) for s, n in self.states]

    def op(self, op: str, *inputs: Value, loc: Loc | str = "", name: str = "", **attrs: Any) -> Any:
        """Add a node; returns its result Value (or a tuple for several results)."""
        definition = OPS[op]
        full = canonical_attrs(definition, attrs)
        types = definition.infer(tuple(v.type for v in inputs), full)
        hint = name or op
        names = [self.fresh(hint if len(types) == 1 else f"{hint}.{r}") for r in definition.outputs]
        outputs = tuple(Value(n, t) for n, t in zip(names, types, strict=True))
        location = loc if isinstance(loc, Loc) else Loc(loc)
        self.nodes.append(Node(op, tuple(inputs), outputs, sorted_attrs(full), location))
        return outputs[0] if len(outputs) == 1 else outputs

    def weight(self, array: np.ndarray, loc: Loc | str = "", name: str = "w") -> Value:
        """Add a `weight` node holding `array`."""
        return self.op("weight", loc=loc, name=name, value=Weight.of(array))

    def output(self, value: Value) -> None:
        """Mark a value as a step output."""
        self.outputs.append(value)

    def build(self) -> Graph:
        """The graph: step outputs first, then the states' next values."""
        missing = [s.name for s, n in self.states if n is None]
        if missing:
            raise ValueError(f"states without a next value: {missing}")
        outputs = list(self.outputs) + [n for _, n in self.states if n not in self.outputs]
        states = tuple(State(s.name, n.name) for s, n in self.states)
        return Graph(
            self.name,
            tuple(self.inputs),
            tuple(outputs),
            tuple(self.nodes),
            states,
            sorted_attrs(self.meta),
        )
