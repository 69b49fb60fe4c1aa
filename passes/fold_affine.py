"""fold-affine: BatchNorm and biases become per-channel `affine` steps after the ADC.

    batch_norm(x, gamma, beta, mean, var) {eps}  ->  affine(x, scale, shift)
        scale = gamma / sqrt(var + eps),  shift = beta - mean * scale
    add(y, b), b constant [C] on y [C] or [C,1,1] on y [C,H,W]  ->  affine(y, 1, b)
    affine(affine(x, s1, t1), s2, t2), inner used once  ->  affine(x, s1 s2, t1 s2 + t2)

The digital periphery applies one multiply-add per output channel, whatever the layer had.

Requires: a verified graph; batch_norm parameters are `weight` nodes.
Ensures: no `batch_norm` remains; per-channel constant biases are affines; chains of affines are
merged; scale and shift are float64 `weight` nodes. Outputs change only by rounding (the
float64 interpreter differs in the last bits, spikes stay the same).
"""

from __future__ import annotations

import logging

import numpy as np

from primec.core.ir import Graph, Node, Value
from primec.core.rewrite import Namer, constant, weight_node
from primec.hardware.choices import NO_CHOICES, Choices
from primec.hardware.target import Target

log = logging.getLogger(__name__)

_Pending = tuple[Value, np.ndarray, np.ndarray]  # affine input, scale, shift


def run(graph: Graph, target: Target | None = None, choices: Choices = NO_CHOICES) -> Graph:
    """Turn BatchNorm and biases into affines and merge chains of them."""
    producers = graph.producers()
    users = graph.users()
    outputs = {v.name for v in graph.outputs}
    pending: dict[str, _Pending] = {}
    merged_away: set[str] = set()
    for node in graph.nodes:
        found = _as_affine(node, producers)
        if found is None:
            continue
        x = found[0]
        if x.name in pending and len(users[x.name]) == 1 and x.name not in outputs:
            merged_away.add(x.name)
            found = _merge(pending[x.name], found)
        elif x.name in pending:
            why = "is a step output" if x.name in outputs else "has other users"
            log.debug("affine %%%s is not merged into %s: %%%s %s", x.name, node.op, x.name, why)
        pending[node.outputs[0].name] = found
    namer = Namer(graph)
    nodes: list[Node] = []
    for node in graph.nodes:
        name = node.outputs[0].name
        if name in merged_away:
            continue
        nodes += _emit(node, pending[name], namer) if name in pending else [node]
    return graph.replace(nodes=tuple(nodes))


def _as_affine(node: Node, producers: dict[str, Node]) -> _Pending | None:
    if node.op == "batch_norm":
        gamma, beta, mean, var = (
            constant(node, v, producers, ("weight",)).attr("value").array().astype(np.float64)
            for v in node.inputs[1:]
        )
        scale = gamma / np.sqrt(var + node.attr("eps"))
        return node.inputs[0], scale, beta - mean * scale
    if node.op != "add":
        return None
    y, b = node.inputs
    producer = producers.get(b.name)
    if producer is None or producer.op != "weight" or not _per_channel(y, b):
        why = (
            "is not a weight"
            if producer is None or producer.op != "weight"
            else "is not per channel"
        )
        log.debug(
            "add -> %%%s is no bias to fold: operand %%%s %s", node.outputs[0].name, b.name, why
        )
        return None
    shift = producer.attr("value").array().astype(np.float64).reshape(-1)
    return y, np.ones_like(shift), shift


def _per_channel(y: Value, b: Value) -> bool:
    """b holds one value per channel of y: [C] on [C], or [C,1,...] on [C,H,...]."""
    same_rank = len(b.type.shape) == len(y.type.shape)
    return same_rank and b.type.shape == (y.type.shape[0],) + (1,) * (len(y.type.shape) - 1)


def _merge(inner: _Pending, outer: _Pending) -> _Pending:
    """(x s1 + t1) s2 + t2 = x (s1 s2) + (t1 s2 + t2)."""
    x, scale_inner, shift_inner = inner
    _, scale, shift = outer
    return x, scale_inner * scale, shift_inner * scale + shift


def _emit(node: Node, affine: _Pending, namer: Namer) -> list[Node]:
    x, scale, shift = affine
    out = node.outputs[0]
    scale_node = weight_node(namer.fresh(f"{out.name}.scale"), scale, node.loc)
    shift_node = weight_node(namer.fresh(f"{out.name}.shift"), shift, node.loc)
    inputs = (x, scale_node.outputs[0], shift_node.outputs[0])
    return [scale_node, shift_node, Node("affine", inputs, (out,), (), node.loc)]
