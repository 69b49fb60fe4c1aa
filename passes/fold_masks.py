"""fold-masks: fold each pruning mask and gain into one `masked_weight`.

`supermask(weight, scores) {sparsity, gain}` becomes `masked_weight() {formed, mask, gain}`:
the as-formed weight stays as it is (it is the chip's conductances), the mask is computed once
from the scores, and the effective weight is formed * gain * mask, exactly as before.

Requires: a verified graph; the weight and scores of every `supermask` are `weight` nodes.
Ensures: no `supermask` remains; each became a `masked_weight` with the same result value, whose
`mask` is the supermask's kept set (it decides which cell pairs the chip resets); the interpreter
computes the same outputs, bit for bit. The weight and scores nodes are left for `dce`.
"""

from __future__ import annotations

import numpy as np

from primec.core.interpret import supermask_keep
from primec.core.ir import Graph, Node, Weight, sorted_attrs
from primec.core.rewrite import constant
from primec.hardware.choices import NO_CHOICES, Choices
from primec.hardware.target import Target


def run(graph: Graph, target: Target | None = None, choices: Choices = NO_CHOICES) -> Graph:
    """Replace every supermask by a masked_weight."""
    producers = graph.producers()
    nodes = tuple(_fold(n, producers) if n.op == "supermask" else n for n in graph.nodes)
    return graph.replace(nodes=nodes)


def _fold(node: Node, producers: dict[str, Node]) -> Node:
    formed, scores = (
        constant(node, value, producers, ("weight",)).attr("value") for value in node.inputs
    )
    # The interpreter ranks scores in float64; so does the mask, to keep the same k-th value.
    keep = supermask_keep(scores.array().astype(np.float64), node.attr("sparsity"))
    attrs = {"formed": formed, "mask": Weight.of(keep), "gain": node.attr("gain")}
    return Node("masked_weight", (), node.outputs, sorted_attrs(attrs), node.loc)
