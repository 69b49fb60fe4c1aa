"""lower-crossbar: conv, transposed conv and linear layers become crossbar matrix-vector products.

    conv2d(x, w)            ->  reshape(crossbar(im2col(x)))      rows (c, p, q), one read per pixel
    conv_transpose2d(x, w)  ->  the same over x dilated by the stride, with the flipped kernel
    linear(flatten(x), w)   ->  reshape(crossbar(reshape(x)))     the flatten is the row order

The matrix is [R rows, O outputs] in the row order of docs/mapping.md (`primec.hardware.mapping`). An
average pool whose window has a power-of-two number of cells and that feeds only this layer is
folded into it: the pool becomes a window sum (`sum_pool2d`, integer counts of spikes) and the
layer's `input_scale` takes the 1/n, which is exact in binary floating point. Other pools stay
digital; `choose-drive` then drives the layer's multi-level input bit-serially.

Requires: a verified graph; every layer's weight operand is a `masked_weight` (as-formed) or a
`weight` (programmed: mask = weight != 0, gain 1).
Ensures: no conv2d, conv_transpose2d or linear remains; each is an `im2col` (conv) or `reshape`
(linear) feeding one `crossbar` whose result is reshaped to the layer's original result value.
The weight nodes are left for `dce`. Outputs change only by the order of floating-point sums.
"""

from __future__ import annotations

import logging

from primec.core.ir import Graph, Node, Value, Weight, sorted_attrs
from primec.core.rewrite import Namer, constant, result
from primec.errors import PrimecError
from primec.hardware.choices import NO_CHOICES, Choices
from primec.hardware.mapping import layer_matrix
from primec.hardware.target import Target

LAYERS = ("conv2d", "conv_transpose2d", "linear")
log = logging.getLogger(__name__)


def run(graph: Graph, target: Target | None = None, choices: Choices = NO_CHOICES) -> Graph:
    """Lower every conv, transposed conv and linear layer to a crossbar."""
    producers, users = graph.producers(), graph.users()
    sources = {id(n): _source(n, producers, users) for n in graph.nodes if n.op in LAYERS}
    dropped = {id(flatten) for _, _, flatten in sources.values() if flatten is not None}
    folded = {id(pool) for _, pool, _ in sources.values() if pool is not None}
    namer = Namer(graph)
    renamed: dict[str, Value] = {}
    nodes: list[Node] = []
    for node in graph.nodes:
        if id(node) in folded:
            nodes.append(_sum_pool(node, namer, renamed))
        elif node.op in LAYERS:
            nodes += _lower(node, sources[id(node)], producers, namer, renamed)
        elif id(node) not in dropped:
            nodes.append(node)
    return graph.replace(nodes=tuple(nodes))


def _source(node: Node, producers: dict, users: dict) -> tuple[Value, Node | None, Node | None]:
    """The value the layer's rows read, a pool it folds, and a flatten it owns (or None)."""
    x, flatten = node.inputs[0], producers.get(node.inputs[0].name)
    owns_flatten = node.op == "linear" and flatten is not None and flatten.op == "flatten"
    if owns_flatten and len(users[x.name]) == 1:
        x = flatten.inputs[0]
    else:
        if owns_flatten:
            _declined(node, f"flatten %{x.name} stays: it has other users")
        flatten = None
    pool = producers.get(x.name)
    if pool is None or pool.op != "avg_pool2d":
        return x, None, flatten
    if len(users[x.name]) != 1:
        _declined(node, f"average pool %{x.name} stays digital: it has other users")
        return x, None, flatten
    kh, kw = pool.attr("kernel")
    if (kh * kw) & (kh * kw - 1) != 0:
        _declined(
            node,
            f"average pool %{x.name} stays digital: its {kh}x{kw} window's 1/{kh * kw} is not exact",
        )
        return x, None, flatten
    return x, pool, flatten


def _declined(node: Node, why: str) -> None:
    log.debug("%s -> %%%s: %s", node.op, node.outputs[0].name, why)


def _sum_pool(pool: Node, namer: Namer, renamed: dict[str, Value]) -> Node:
    out = pool.outputs[0]
    summed = Value(namer.fresh(f"{out.name}.sum"), out.type)
    renamed[out.name] = summed
    return Node("sum_pool2d", pool.inputs, (summed,), pool.attrs, pool.loc)


def _lower(node: Node, source, producers: dict, namer: Namer, renamed: dict) -> list[Node]:
    x, pool, _ = source
    out = node.outputs[0]
    rows_value = renamed.get(x.name, x)
    if node.op == "linear":
        rows = result(
            "reshape",
            (rows_value,),
            namer.fresh(f"{out.name}.row"),
            node.loc,
            shape=(1, x.type.size),
        )
    else:
        rows = result(
            "im2col", (rows_value,), namer.fresh(f"{out.name}.rows"), node.loc, **_gather(node)
        )
    scale = 1.0
    if pool is not None:
        kh, kw = pool.attr("kernel")
        scale = 1.0 / (kh * kw)
    attrs = _matrix_attrs(node, producers) | {"input_scale": scale}
    mvm = result("crossbar", rows.outputs, namer.fresh(f"{out.name}.mvm"), node.loc, **attrs)
    back = Node("reshape", mvm.outputs, (out,), sorted_attrs({"shape": out.type.shape}), node.loc)
    return [rows, mvm, back]


def _gather(node: Node) -> dict:
    """im2col attributes: the conv's window, or the transposed conv's as a conv."""
    w = node.inputs[1].type.shape
    stride, padding, dilation = node.attr("stride"), node.attr("padding"), node.attr("dilation")
    if node.op == "conv2d":
        return {
            "kernel": w[2:],
            "stride": stride,
            "dilation": dilation,
            "padding": (*padding, *padding),
        }
    reach = [d * (k - 1) for d, k in zip(dilation, w[2:], strict=True)]
    near = tuple(r - p for r, p in zip(reach, padding, strict=True))
    if min(near) < 0:
        raise PrimecError(
            f"conv_transpose2d padding {list(padding)} exceeds dilation*(kernel-1) {reach}",
            where=f"node conv_transpose2d -> %{node.outputs[0].name}, loc {node.loc}",
            hint="such a transposed conv crops its output; crop after it instead",
        )
    far = tuple(n + o for n, o in zip(near, node.attr("output_padding"), strict=True))
    return {
        "kernel": w[2:],
        "dilation": dilation,
        "input_dilation": stride,
        "padding": (*near, *far),
    }


def _matrix_attrs(node: Node, producers: dict) -> dict:
    producer = constant(node, node.inputs[1], producers, ("masked_weight", "weight"))
    if producer.op == "masked_weight":
        formed, mask = producer.attr("formed").array(), producer.attr("mask").array()
        gain, mode = producer.attr("gain"), "as_formed"
    else:
        formed = producer.attr("value").array()
        mask, gain, mode = formed != 0, 1.0, "programmed"
    groups = node.attr("groups") if node.op != "linear" else 1
    return {
        "formed": Weight.of(layer_matrix(node.op, formed, groups)),
        "mask": Weight.of(layer_matrix(node.op, mask, groups)),
        "gain": gain,
        "mode": mode,
        "kind": node.op,
        "weight_shape": tuple(formed.shape),
        "groups": groups,
    }
