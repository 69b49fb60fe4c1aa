"""Lower the placed IR to a `Program`: one or more instructions per node, cells per array.

Requires: a verified graph after `schedule` (every crossbar tiled, placed and paired: its
pairs' conductances `g_pos_us`/`g_neg_us` decided by map-pairs, which lowering only copies).
Ensures: every IR value that varies per sample has a buffer; every crossbar tile is one `Read`
of the array it is placed on, into a zeroed accumulator, followed by one `Scale` to weight units;
the step ends with `ExitTest` on the readout and `EndStep`; every instruction has a debug entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from primec.backends.isa import (
    Affine,
    Binary,
    Const,
    EndStep,
    ExitTest,
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
from primec.backends.program import DebugEntry, Program, target_hash
from primec.backends.transfers import transfer_bits_per_step

from primec.core.ir import Graph, Node, Weight
from primec.core.ops import OPS
from primec.errors import PrimecError
from primec.hardware.driftmodel import drift_meta
from primec.hardware.earlyexit import ExitTable
from primec.hardware.geometry import PAIR
from primec.hardware.mapping import PlacedTile, placed_tiles
from primec.hardware.target import Target

NEURON_FIELDS = ("keep", "threshold", "strict", "reset", "reset_timing", "slope")


class _Lowering:
    def __init__(self, graph: Graph, target: Target) -> None:
        self.graph = graph
        self.target = target
        self.buffer: dict[str, int] = {}
        self.shapes: list[tuple[int, ...]] = []
        self.consts: dict[str, np.ndarray] = {}
        self.instrs: list[Instr] = []
        self.debug: list[DebugEntry] = []
        self.tensors: dict[str, np.ndarray] = {}
        self.arrays: dict[tuple[int, int], np.ndarray] = {}
        self.neurons: list[dict[str, Any]] = []
        self.current: Node | None = None
        self.dense_macs = 0
        self.layers: list[dict[str, Any]] = []
        self.types = {v.name: v.type.shape for v in graph.inputs}
        self.types |= {v.name: v.type.shape for n in graph.nodes for v in n.outputs}

    def buf(self, name: str) -> int:
        """The buffer of an IR value, created on first use."""
        if name not in self.buffer:
            self.buffer[name] = len(self.shapes)
            self.shapes.append(self.types[name])
        return self.buffer[name]

    def new_buffer(self, shape: tuple[int, ...]) -> int:
        """A scratch buffer (e.g. a crossbar's accumulator)."""
        self.shapes.append(tuple(shape))
        return len(self.shapes) - 1

    def emit(self, instr: Instr) -> None:
        node = self.current
        self.instrs.append(instr)
        self.debug.append(
            DebugEntry(node.outputs[0].name, node.op, node.loc.path)
            if node
            else DebugEntry("", "controller", "")
        )

    def tensor(self, name: str, array: np.ndarray) -> str:
        self.tensors[name] = np.ascontiguousarray(array)
        return name

    def operand(self, name: str) -> int:
        """A node operand: a per-sample buffer, or a constant loaded once with `Const`."""
        if name in self.consts and name not in self.buffer:
            self.emit(Const(self.buf(name), self.tensor(f"const.{name}", self.consts[name])))
        return self.buf(name)

    def run(self) -> Program:
        inputs = tuple(self.buf(v.name) for v in self.graph.step_inputs)
        states = tuple((self.buf(s.input), 0) for s in self.graph.states)
        for node in self.graph.nodes:
            self.current = node
            self.lower(node)
        self.current = None
        outputs = tuple(self.buf(v.name) for v in self.graph.step_outputs)
        self.emit(ExitTest(outputs[0]))
        self.emit(EndStep())
        states = tuple(
            (state, self.buf(s.output))
            for (state, _), s in zip(states, self.graph.states, strict=True)
        )
        return self.program(inputs, states, outputs)

    def program(
        self, inputs: tuple[int, ...], states: tuple[tuple[int, int], ...], outputs: tuple[int, ...]
    ) -> Program:
        meta = self.graph.meta_value
        parameters = {key: value for key, value, _ in self.target.parameters()}
        # The hash names the exact target, drift model included (targets without one keep
        # the hash they always had).
        hashed = parameters | {key: value for key, value, _ in self.target.optional_parameters()}
        table = meta("exit_table")
        return Program(
            name=self.graph.name,
            timesteps=int(meta("timesteps", 1)),
            buffers=tuple(self.shapes),
            inputs=inputs,
            states=states,
            outputs=outputs,
            instrs=tuple(self.instrs),
            debug=tuple(self.debug),
            tensors=self.tensors,
            arrays=self.arrays,
            neurons=tuple(self.neurons),
            meta={
                "target": self.target.name,
                "target_hash": target_hash(hashed),
                "target_parameters": parameters,
                "graph_meta": {
                    k: v for k, v in self.graph.meta if isinstance(v, int | float | str | bool)
                },
                "dense_macs_per_step": self.dense_macs,
                "macro_transfer_bits_per_step": transfer_bits_per_step(
                    self.instrs, self.shapes, self.tensors, self.target.adc.bits
                ),
                "target_estimates": {key: [lo, hi] for key, lo, hi in self.target.estimates},
                "layers": self.layers,
            }
            | drift_meta(self.target),
            exit_table=ExitTable.from_dict(dict(table)) if table else None,
        )

    def lower(self, node: Node) -> None:
        if node.op in ("weight", "masked_weight"):
            self.consts[node.outputs[0].name] = _constant(node)
            return
        rule = LOWERINGS.get(node.op)
        if rule is None:
            raise PrimecError(
                f"op {node.op} reached the backend; the mapping passes should have lowered it",
                where=f"node %{node.outputs[0].name}, loc {node.loc}",
                hint="compile through all passes (no --stop-after) before emitting an artefact",
            )
        rule(self, node)

    def ins(self, node: Node) -> list[int]:
        return [self.operand(v.name) for v in node.inputs]

    def outs(self, node: Node) -> list[int]:
        return [self.buf(v.name) for v in node.outputs]

    def crossbar(self, node: Node) -> None:
        (src,) = self.ins(node)
        (dst,) = self.outs(node)
        outputs, positions = node.outputs[0].type.shape
        accumulator = self.new_buffer((outputs, positions))
        self.emit(Zero(accumulator, outputs))
        for tile in placed_tiles(node):
            self.read(node, src, accumulator, tile)
        rows, outputs = node.attr("formed").type.shape
        self.dense_macs += rows * outputs * positions
        self.layers.append(_layer_record(node, positions))
        # Same rounding as the model: exact partial sums, then the input scale, then the gain.
        steps = (node.attr("input_scale"), 1.0 / node.attr("us_per_unit"), node.attr("gain"))
        self.emit(Scale(dst, accumulator, tuple(f for f in steps if f != 1.0)))

    def read(self, node: Node, src: int, accumulator: int, tile: PlacedTile) -> None:
        """One tile: its pairs (as map-pairs decided them) into its cells, and its `Read`."""
        rows, outputs = tile.rows, tile.outputs
        block = np.ix_(rows, outputs)
        g_pos, g_neg = node.attr("g_pos_us").array()[block], node.attr("g_neg_us").array()[block]
        cells = self.arrays.setdefault((tile.macro, tile.array), self.empty_array())
        r0, c0 = tile.row, tile.col
        PAIR.place(cells[r0 : r0 + len(rows), c0 : c0 + PAIR.width(len(outputs))], g_pos, g_neg)
        prefix = f"{node.outputs[0].name}.t{tile.index}"
        self.emit(
            Read(
                dst=accumulator,
                src=src,
                macro=tile.macro,
                array=tile.array,
                row0=r0,
                col0=c0,
                rows=self.tensor(f"{prefix}.rows", rows.astype(np.int64)),
                cols=self.tensor(f"{prefix}.cols", outputs.astype(np.int64)),
                planes=node.attr("planes"),
                quantum=node.attr("input_quantum"),
            )
        )

    def empty_array(self) -> np.ndarray:
        return np.full(
            (self.target.array.rows, self.target.array.cols),
            self.target.cells.g_off_us,
            dtype=np.float64,
        )

    def neuron(self, node: Node, names: tuple[str, ...]) -> int:
        # Optional variants (v_reset, ...) are recorded only where set: old records stay as they were.
        optional = [a.name for a in OPS[node.op].attrs if a.optional and a.name in node.attr_dict]
        record = {name: node.attr(name) for name in (*names, *optional)}
        # A tensor-valued parameter (per channel or per neuron) is a float64 tensor of the
        # program, which the record names: the neuron group's parameter table.
        prefix = f"neuron{len(self.neurons)}"
        self.neurons.append(
            {
                name: self.tensor(f"{prefix}.{name}", value.array().astype(np.float64))
                if isinstance(value, Weight)
                else value
                for name, value in record.items()
            }
        )
        return len(self.neurons) - 1


def _layer_record(node: Node, positions: int) -> dict[str, Any]:
    """What the macro's periphery needs to know about one crossbar layer."""
    names = (
        "kind",
        "mode",
        "weight_shape",
        "groups",
        "drive",
        "planes",
        "input_quantum",
        "input_scale",
        "gain",
        "us_per_unit",
    )
    record: dict[str, Any] = {name: node.attr(name) for name in names}
    record["weight_shape"] = list(record["weight_shape"])
    return {
        "layer": node.loc.path or node.outputs[0].name,
        "value": node.outputs[0].name,
        "positions": positions,
    } | record


def _constant(node: Node) -> np.ndarray:
    if node.op == "weight":
        return node.attr("value").array()
    return node.attr("formed").array() * node.attr("gain") * node.attr("mask").array()


def _simple(
    make: Callable[[_Lowering, Node, list[int], list[int]], Instr],
) -> Callable[[_Lowering, Node], None]:
    return lambda lowering, node: lowering.emit(
        make(lowering, node, lowering.ins(node), lowering.outs(node))
    )


def _pool(kind: str) -> Callable[[_Lowering, Node], None]:
    return _simple(
        lambda lw, n, i, o: Pool(
            o[0], i[0], kind, n.attr("kernel"), n.attr("stride"), n.attr("padding")
        )
    )


def _affine(lowering: _Lowering, node: Node) -> None:
    x, scale, shift = node.inputs
    missing = [v.name for v in (scale, shift) if v.name not in lowering.consts]
    if missing:
        raise PrimecError(
            f"affine parameters {missing} vary per sample; the periphery holds constants only",
            where=f"loc {node.loc}",
        )
    name = node.outputs[0].name
    lowering.emit(
        Affine(
            lowering.buf(name),
            lowering.operand(x.name),
            lowering.tensor(f"{name}.scale", lowering.consts[scale.name]),
            lowering.tensor(f"{name}.shift", lowering.consts[shift.name]),
        )
    )


LOWERINGS: dict[str, Callable[[_Lowering, Node], None]] = {
    "crossbar": _Lowering.crossbar,
    "im2col": _simple(
        lambda lw, n, i, o: Gather(
            o[0],
            i[0],
            n.attr("kernel"),
            n.attr("stride"),
            n.attr("dilation"),
            n.attr("padding"),
            n.attr("input_dilation"),
        )
    ),
    "reshape": _simple(lambda lw, n, i, o: Reshape(o[0], i[0], n.outputs[0].type.shape)),
    "flatten": _simple(lambda lw, n, i, o: Reshape(o[0], i[0], n.outputs[0].type.shape)),
    "avg_pool2d": _pool("avg"),
    "sum_pool2d": _pool("sum"),
    "max_pool2d": _pool("max"),
    "affine": _affine,
    "add": _simple(lambda lw, n, i, o: Binary(o[0], i[0], i[1], "add")),
    "mul": _simple(lambda lw, n, i, o: Binary(o[0], i[0], i[1], "mul")),
    "leaky_relu": _simple(lambda lw, n, i, o: LeakyRelu(o[0], i[0], n.attr("slope"))),
    "lif": _simple(
        lambda lw, n, i, o: Lif(o[0], o[1], i[0], i[1], i[2], lw.neuron(n, NEURON_FIELDS))
    ),
    "integrator": _simple(
        lambda lw, n, i, o: Integrate(o[0], i[0], i[1], lw.neuron(n, ("keep", "slope")))
    ),
    "readout_mean": _simple(lambda lw, n, i, o: ReadoutMean(o[0], o[1], o[2], i[0], i[1], i[2])),
    "readout_exp_tanh": _simple(
        lambda lw, n, i, o: ReadoutExp(o[0], o[1], i[0], i[1], n.attr("decay"))
    ),
    "sample_bernoulli": _simple(
        lambda lw, n, i, o: Sample(o[0], o[1], i[0], i[1], n.attr("k"), n.attr("seed"))
    ),
}


def lower(graph: Graph, target: Target, exit_table: ExitTable | None = None) -> Program:
    """The program of a placed graph; `exit_table` overrides one in the graph's metadata."""
    program = _Lowering(graph, target).run()
    return program if exit_table is None else replace(program, exit_table=exit_table.check())
