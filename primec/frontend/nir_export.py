"""NIR export: a primec step graph (as imported, before any pass) -> a NIR graph, the inverse of
`nir_io.read_nir` at the same dt and discretisation (docs/from-frameworks.md).

What NIR cannot say is refused with the reason, all at once, never changed silently:
subtract reset and no reset (NIR's LIF and IF reset to v_reset), a reset after the leak or
after the input (NIR resets before integrating the next step), PRIME's LeakyReLU membrane
(slope != 1), max pooling, batch norm and every other op without a NIR node. Firing at `>=`
is written with a warning: NIR's LIF fires at v > v_threshold. A product with a constant is
written as Scale and a depthwise convolution of ones as SumPool2d, the forms `read_nir` gives
them, so a graph with them round-trips.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from primec.core.ir import Graph, Node, Weight
from primec.errors import PrimecError
from primec.fileio import atomic_write_bytes
from primec.frontend.nir_io import META_ENCODING, META_TIMESTEPS, NirOptions, require_nir
from primec.frontend.nir_params import Param


class _Exporter:
    """Walks the graph's nodes in order, one NIR node per layer or neuron."""

    def __init__(self, graph: Graph, options: NirOptions) -> None:
        self.graph, self.options, self.nir = graph, options, require_nir()
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []
        self.producer: dict[str, str] = {}  # IR value -> NIR node that computes it
        self.consts: dict[str, np.ndarray] = {}
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def run(self) -> Any:
        x = self.graph.step_inputs[0]
        self.nodes["input"] = self.nir.Input(input_type={"input": np.array(x.type.shape)})
        self.producer[x.name] = "input"
        for node in self.graph.nodes:
            rule = _RULES.get(node.op)
            if rule is None:
                self.problems.append(f"{_where(node)}: {node.op} has no NIR node")
                continue
            reason = rule(self, node)
            if reason:
                self.problems.append(f"{_where(node)}: {node.op}: {reason}")
        if self.problems:
            raise PrimecError(
                f"the model has {len(self.problems)} part(s) NIR cannot express:\n"
                + "\n".join(f"  - {p}" for p in self.problems)
            )
        meta = {
            META_TIMESTEPS: int(self.graph.meta_value("timesteps")),
            META_ENCODING: str(self.graph.meta_value("input_encoding")),
        }
        return self.nir.NIRGraph(nodes=self.nodes, edges=self.edges, metadata=meta)

    def add(self, node: Node, nir_node: Any) -> None:
        source = self.producer.get(node.inputs[0].name)
        if source is None:
            return  # its input comes from a node already refused
        name = _where(node)
        self.nodes[name] = nir_node
        self.edges.append((source, name))
        self.producer[node.outputs[0].name] = name

    def full(self, node: Node, value: Param) -> np.ndarray:
        return np.full(node.outputs[0].type.shape, value, dtype=np.float64)  # keeps dt exact


def _where(node: Node) -> str:
    return node.loc.path if node.loc and node.loc.path else node.outputs[0].name


def _weight(ex: _Exporter, node: Node) -> str:
    ex.consts[node.outputs[0].name] = node.attr("value").array().astype(np.float32)
    return ""


def _conv(ex: _Exporter, node: Node) -> str:
    weight = ex.consts.get(node.inputs[1].name)
    if weight is None:
        return "its weight is computed, not a constant"
    shape = node.inputs[0].type.shape
    if _is_sum_pool(node, weight):
        ex.add(node, _sum_pool(ex, node))
        return ""
    ex.add(
        node,
        ex.nir.Conv2d(
            input_shape=shape[1:],
            weight=weight,
            stride=node.attr("stride"),
            padding=node.attr("padding"),
            dilation=node.attr("dilation"),
            groups=node.attr("groups"),
            bias=np.zeros(weight.shape[0], np.float32),
        ),
    )
    return ""


def _is_sum_pool(node: Node, weight: np.ndarray) -> bool:
    """A depthwise convolution of ones (what NIR's SumPool2d imports as)."""
    channels = weight.shape[0]
    return (
        node.attr("groups") == channels > 1
        and weight.shape[1] == 1
        and bool(np.all(weight == 1.0))
        and tuple(node.attr("dilation")) == (1, 1)
    )


def _sum_pool(ex: _Exporter, node: Node) -> Any:
    kernel = node.inputs[1].type.shape[2:]
    return ex.nir.SumPool2d(
        kernel_size=np.array(kernel),
        stride=np.array(node.attr("stride")),
        padding=np.array(node.attr("padding")),
    )


def _linear(ex: _Exporter, node: Node) -> str:
    weight = ex.consts.get(node.inputs[1].name)
    if weight is None:
        return "its weight is computed, not a constant"
    ex.add(node, ex.nir.Linear(weight=weight))
    return ""


def _bias(ex: _Exporter, node: Node) -> str:
    """add(layer, constant): the bias of the Conv2d or Linear just before."""
    bias, name = ex.consts.get(node.inputs[1].name), ex.producer.get(node.inputs[0].name)
    if name is None:
        return ""  # its input comes from a node already refused
    layer = ex.nodes.get(name)
    if bias is None or type(layer).__name__ not in ("Conv2d", "Linear"):
        return "only a constant bias after a convolution or linear layer has a NIR form"
    flat = bias.reshape(-1)
    if type(layer).__name__ == "Linear":
        ex.nodes[name] = ex.nir.Affine(weight=layer.weight, bias=flat)
    else:
        layer.bias = flat
    ex.producer[node.outputs[0].name] = name
    return ""


def _scale(ex: _Exporter, node: Node) -> str:
    """mul(x, constant): NIR's Scale, the constant broadcast to x's shape."""
    scale = ex.consts.get(node.inputs[1].name)
    if scale is None:
        return "only a product with a constant (NIR's Scale) has a NIR form"
    shape = node.inputs[0].type.shape
    ex.add(node, ex.nir.Scale(scale=np.broadcast_to(scale, shape).astype(np.float32)))
    return ""


def _flatten(ex: _Exporter, node: Node) -> str:
    shape = np.array(node.inputs[0].type.shape)
    ex.add(node, ex.nir.Flatten(input_type={"input": shape}, start_dim=0, end_dim=-1))
    return ""


def _pool(kind: str):
    def rule(ex: _Exporter, node: Node) -> str:
        pool = getattr(ex.nir, kind)
        ex.add(
            node,
            pool(
                kernel_size=np.array(node.attr("kernel")),
                stride=np.array(node.attr("stride")),
                padding=np.array(node.attr("padding")),
            ),
        )
        return ""

    return rule


def _tau_r(ex: _Exporter, keep: Param, gain: Param) -> tuple[Param, Param]:
    """NIR's tau and r for a step that keeps `keep` and scales its input by `gain`."""
    dt = ex.options.dt
    if isinstance(keep, np.ndarray) or isinstance(gain, np.ndarray):
        keep, gain = np.asarray(keep, dtype=np.float64), np.asarray(gain, dtype=np.float64)
        if ex.options.discretisation == "exact":
            return -dt / np.log(keep), gain / (1.0 - keep)
        return dt / (1.0 - keep), gain / (1.0 - keep)
    if ex.options.discretisation == "exact":
        return -dt / math.log(keep), gain / (1.0 - keep)
    return dt / (1.0 - keep), gain / (1.0 - keep)


def _param(node: Node, name: str, default: float = 0.0) -> Param:
    """A neuron parameter: one float, or per channel or per neuron as a float64 array."""
    value = node.attr_dict.get(name, default)
    return value.array().astype(np.float64) if isinstance(value, Weight) else value


def _lif_reason(node: Node) -> str:
    keep = np.asarray(_param(node, "keep"))
    if node.attr("slope") != 1.0:
        return f"slope={node.attr('slope')}: PRIME's LeakyReLU membrane has no NIR form"
    if node.attr("reset") != "zero":
        return f"reset={node.attr('reset')}: NIR neurons reset to v_reset (no subtract, no none)"
    if node.attr("reset_timing") != "before_leak":
        return f"reset_timing={node.attr('reset_timing')}: NIR resets before the next integration"
    if np.any(np.asarray(_param(node, "v_leak")) != 0.0) and np.all(keep == 1.0):
        return "v_leak without a leak has no NIR form"
    if not np.all((keep > 0.0) & (keep <= 1.0)):
        return f"keep={_shown(keep)}: NIR's LIF decays by 0 < keep <= 1"
    if np.any(keep == 1.0) and not np.all(keep == 1.0):
        return "keep is 1 for some neurons only: NIR's IF (no leak) and LIF are separate nodes"
    return ""


def _shown(value: np.ndarray) -> str:
    return str(float(value)) if value.ndim == 0 else f"{value.min()}..{value.max()} (per neuron)"


def _lif(ex: _Exporter, node: Node) -> str:
    reason = _lif_reason(node)
    if reason:
        return reason
    keep, gain = _param(node, "keep"), _param(node, "input_gain", 1.0)
    if not node.attr("strict"):
        ex.warnings.append(f"{_where(node)}: fires at >= threshold; NIR's LIF fires at >")
    common = dict(
        v_threshold=ex.full(node, _param(node, "threshold")),
        v_reset=ex.full(node, _param(node, "v_reset")),
    )
    if np.all(np.asarray(keep) == 1.0):
        ex.add(node, ex.nir.IF(r=ex.full(node, np.divide(gain, ex.options.dt)), **common))
        return ""
    tau, r = _tau_r(ex, keep, gain)
    v_leak = ex.full(node, _param(node, "v_leak"))
    ex.add(node, ex.nir.LIF(tau=ex.full(node, tau), r=ex.full(node, r), v_leak=v_leak, **common))
    return ""


def _integrator(ex: _Exporter, node: Node) -> str:
    keep, slope = _param(node, "keep"), node.attr("slope")
    if slope != 1.0:
        return f"slope={slope}: PRIME's LeakyReLU membrane has no NIR form"
    if np.all(np.asarray(keep) == 1.0):
        ex.add(node, ex.nir.I(r=ex.full(node, 1.0 / ex.options.dt)))
        return ""
    if np.any(np.asarray(keep) == 1.0):
        return "keep is 1 for some neurons only: NIR's I (no leak) and LI are separate nodes"
    tau, r = _tau_r(ex, keep, 1.0)
    ex.add(node, ex.nir.LI(tau=ex.full(node, tau), r=ex.full(node, r), v_leak=ex.full(node, 0.0)))
    return ""


def _readout(ex: _Exporter, node: Node) -> str:
    shape = np.array(node.inputs[0].type.shape)
    ex.nodes["output"] = ex.nir.Output(output_type={"output": shape})
    if node.inputs[0].name in ex.producer:
        ex.edges.append((ex.producer[node.inputs[0].name], "output"))
    return ""


_RULES = {
    "weight": _weight,
    "conv2d": _conv,
    "linear": _linear,
    "add": _bias,
    "mul": _scale,
    "flatten": _flatten,
    "avg_pool2d": _pool("AvgPool2d"),
    "sum_pool2d": _pool("SumPool2d"),
    "lif": _lif,
    "integrator": _integrator,
    "readout_mean": _readout,
}


def export_nir(graph: Graph, options: NirOptions) -> tuple[Any, list[str]]:
    """The NIR graph of a step graph, and the warnings on what NIR says differently."""
    if options.dt is None:
        raise PrimecError("writing NIR needs the timestep: give --dt SECONDS")
    exporter = _Exporter(graph, options)
    return exporter.run(), exporter.warnings


def write_nir(graph: Graph, options: NirOptions, path: Path) -> list[str]:
    """Write the step graph as a NIR file (all at once: nothing is written on an error)."""
    nir_graph, warnings = export_nir(graph, options)
    buffer = io.BytesIO()
    require_nir().write(buffer, nir_graph)
    atomic_write_bytes(path, buffer.getvalue())
    return warnings
