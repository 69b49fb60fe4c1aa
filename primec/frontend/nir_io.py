"""NIR import: a `.nir` file (the Neuromorphic Intermediate Representation, HDF5) -> a
`primec.nn.SNN` that the usual frontend exports and imports (docs/from-frameworks.md).

NIR is continuous-time; primec is a discrete step. `--dt` says the step; the discretisation
turns each node's ODE into the step primec runs:

  euler (default, what snnTorch's and SpikingJelly's exporters assume):
      keep = 1 - dt/tau, input_gain = dt*r/tau           (LIF, LI)
  exact (exponential, zero-order hold on the input):
      keep = exp(-dt/tau), input_gain = r*(1 - keep)

  LIF  tau dv/dt = (v_leak - v) + r*I, spike v > v_threshold, v <- v_reset
       -> lif(keep, threshold, strict, reset=zero, before_leak, v_reset, v_leak, input_gain)
  IF   dv/dt = r*I -> lif with keep 1 and input_gain dt*r
  Threshold -> lif with keep 0 and no reset (a spike wherever the input exceeds the threshold)
  LI, I -> integrator (only where their input gain is 1: the integrator has no input scale)
  CubaLIF  tau_syn dI/dt = -I + w_in*S, then LIF on I
       -> integrator(keep_syn) (its input gain dt*w_in/tau_syn must be 1, as snnTorch's
          exporter writes it), then the LIF above on the updated current
  CubaLI -> integrator(keep_syn), then the LI above (both input gains 1)
  Scale -> an elementwise multiply by the scale (a digital multiply)
  SumPool2d -> a depthwise Conv2d of ones without bias (the window's exact sum on a crossbar)
  Affine, Linear, Conv2d, Flatten, AvgPool2d -> the torch layers

Every parameter is read as a float32 value, as primec's ONNX import reads attributes, so a graph
exported with `export_nir` at the same dt imports back identical. A parameter whose values
differ between neurons is kept per neuron (`nir_params`). Refused, all at once with the
reason: graphs that are not one chain from input to output, and nodes outside the list above.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from primec.errors import PrimecError
from primec.frontend.frameworks.common import ElementwiseScale
from primec.frontend.nir_params import Param, rounded, step, values
from primec.nn import LIF, SNN, Integrator, MeanReadout
from primec.nn.network import INPUT_ENCODINGS

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
DISCRETISATIONS = ("euler", "exact")
META_TIMESTEPS, META_ENCODING = "primec.timesteps", "primec.input_encoding"
DEFAULT_TIMESTEPS = 10
REFUSED = {
    "Delay": "primec's step has no delay line (a state per delayed step)",
    "Conv1d": "primec's frontend reads 2-D convolutions only",
    "NIRGraph": "a nested graph (a recurrent layer): primec imports one feed-forward chain",
}
GAIN_TOLERANCE = 1e-6


@dataclass(frozen=True)
class NirOptions:
    """How to read or write NIR: the timestep dt (seconds) and the discretisation."""

    dt: float | None = None
    discretisation: str = "euler"


def is_hdf5(path: Path) -> bool:
    """Whether a file starts with HDF5's signature (as every NIR file does)."""
    with path.open("rb") as handle:
        return handle.read(len(HDF5_MAGIC)) == HDF5_MAGIC


def require_nir() -> Any:
    """The `nir` package, or one clear error saying how to install it."""
    try:
        import nir
    except ImportError as exc:
        raise PrimecError(
            "reading or writing NIR needs the nir package",
            hint="pip install 'primec[nir]' (or pip install nir)",
        ) from exc
    return nir


def read_nir(path: Path, options: NirOptions | None) -> SNN:
    """A NIR file as a primec SNN, discretised with `options` (dt required)."""
    if options is None or options.dt is None:
        raise PrimecError(
            "a NIR file (HDF5) is continuous-time and says no timestep: give --dt SECONDS",
            where=str(path),
            hint="the dt the network was trained or exported with (snnTorch's exporter: 1e-4)",
        )
    if not (math.isfinite(options.dt) and options.dt > 0):
        raise PrimecError(f"--dt must be a positive number of seconds, got {options.dt}")
    nir = require_nir()
    try:
        graph = nir.read(str(path))
    except Exception as exc:
        raise PrimecError(
            f"not a readable NIR graph: {type(exc).__name__}: {exc}", where=str(path)
        ) from exc
    order = _chain(graph, path)
    problems = [
        f"{name}: {type(graph.nodes[name]).__name__} ({_refusal(graph.nodes[name])})"
        for name in order
        if _refusal(graph.nodes[name])
    ]
    if problems:
        raise PrimecError(
            f"the NIR graph has {len(problems)} node(s) primec cannot import:\n"
            + "\n".join(f"  - {p}" for p in problems),
            where=str(path),
        )
    layers: list[tuple[str, nn.Module]] = []
    for name in order:
        layers.append((name, _built(graph, name, layers, options)))
    return _network(graph, layers, path)


def _built(graph: Any, where: str, before: list, options: NirOptions) -> nn.Module:
    """Node `where` as a layer; parameters torch refuses (a bad group count, ...) are the
    file's error. A SumPool2d takes its channels from the layers `before` it."""
    node = graph.nodes[where]
    try:
        if type(node).__name__ == "SumPool2d":
            return _sum_pool(node, _channels(before, graph), where)
        return _layer(node, options, where)
    except (ValueError, TypeError, RuntimeError, IndexError, OverflowError) as exc:
        raise PrimecError(
            f"NIR node {where!r}: its parameters make no layer: {type(exc).__name__}: {exc}"
        ) from exc


def _refusal(node: Any) -> str:
    kind = type(node).__name__
    if kind in REFUSED:
        return REFUSED[kind]
    known = (*_LAYERS, "Input", "Output", "SumPool2d")
    return "" if kind in known else "not a NIR node primec reads"


def _chain(graph: Any, path: Path) -> list[str]:
    """The node names from the input to the output, which must form one chain."""
    following: dict[str, list[str]] = {}
    for source, target in graph.edges:
        following.setdefault(source, []).append(target)
    inputs = [n for n, node in graph.nodes.items() if type(node).__name__ == "Input"]
    if len(inputs) != 1:
        raise PrimecError(f"the NIR graph has {len(inputs)} Input nodes, not 1", where=str(path))
    order, name = [], inputs[0]
    while type(graph.nodes[name]).__name__ != "Output":
        nexts = following.get(name, [])
        if len(nexts) != 1 or nexts[0] in order:
            raise PrimecError(
                f"the NIR graph is not one chain from input to output (node {name!r} leads to "
                f"{nexts or 'nothing'}); primec imports sequential networks",
                where=str(path),
            )
        name = nexts[0]
        order.append(name)
    return [n for n in order if type(graph.nodes[n]).__name__ != "Output"]


def _network(graph: Any, layers: list, path: Path) -> SNN:
    input_node = next(n for n in graph.nodes.values() if type(n).__name__ == "Input")
    shape = tuple(int(d) for d in np.asarray(input_node.input_type["input"]).reshape(-1))
    meta = dict(graph.metadata or {})
    timesteps = int(meta.get(META_TIMESTEPS, DEFAULT_TIMESTEPS))
    encoding = str(meta.get(META_ENCODING, "event_counts"))
    if encoding not in INPUT_ENCODINGS:
        raise PrimecError(f"metadata {META_ENCODING} = {encoding!r} is unknown", where=str(path))
    stages = _nest(layers)
    return SNN(
        stages, MeanReadout(), input_shape=shape, timesteps=timesteps, input_encoding=encoding
    )


def _nest(layers: list[tuple[str, nn.Module]]) -> OrderedDict:
    """Stages named after the NIR nodes: `a.b` becomes child b of Sequential a (names that
    primec wrote), other names as they are with dots replaced."""
    stages: OrderedDict = OrderedDict()
    for name, module in layers:
        head, _, rest = name.partition(".")
        if rest and (head not in stages or list(stages)[-1] == head):
            stages.setdefault(head, nn.Sequential())
            if isinstance(stages[head], nn.Sequential) and rest.isidentifier():
                stages[head].add_module(rest, module)
                continue
        stages[name.replace(".", "_")] = module
    return stages


def _one(node: Any, field: str, where: str) -> float:
    """A parameter that must be one value for the whole layer, as a float32 value."""
    value = values(node, field, where)
    if not isinstance(value, float):
        raise PrimecError(
            f"NIR node {where!r}: {field} differs between neurons; primec models one value "
            "per layer here"
        )
    return value


def _step(tau: Param, r: Param, options: NirOptions, where: str) -> tuple[Param, Param]:
    """(keep, input_gain) of `tau dv/dt = -v + r*I` over one step dt."""
    return step(tau, r, options.discretisation, options.dt, where)


def _lif(node: Any, options: NirOptions, where: str, tau: str = "tau") -> nn.Module:
    keep, gain = _step(values(node, tau, where), values(node, "r", where), options, where)
    threshold, v_leak = (rounded(values(node, f, where)) for f in ("v_threshold", "v_leak"))
    v_reset = rounded(values(node, "v_reset", where))
    variant = dict(v_reset=v_reset, v_leak=v_leak, input_gain=gain)
    return LIF(keep, threshold, True, "zero", "before_leak", **variant)


def _if(node: Any, options: NirOptions, where: str) -> nn.Module:
    gain = rounded(options.dt * np.asarray(values(node, "r", where)))
    threshold, v_reset = (rounded(values(node, f, where)) for f in ("v_threshold", "v_reset"))
    return LIF(1.0, threshold, True, "zero", "before_leak", v_reset=v_reset, input_gain=gain)


def _integrator(keep: Param, gain: Param, where: str) -> nn.Module:
    if np.any(np.abs(np.asarray(gain) - 1.0) > GAIN_TOLERANCE):
        worst = float(np.asarray(gain).reshape(-1)[np.argmax(np.abs(np.asarray(gain) - 1.0))])
        raise PrimecError(
            f"NIR node {where!r}: its input scale at this dt is {worst}; primec's integrator "
            "adds its input unscaled (input scale 1)",
            hint="choose the --dt the graph was exported with",
        )
    return Integrator(keep)


def _li(node: Any, options: NirOptions, where: str, tau: str = "tau") -> nn.Module:
    if _one(node, "v_leak", where) != 0.0:
        raise PrimecError(f"NIR node {where!r}: LI with v_leak != 0 is not modelled")
    keep, gain = _step(values(node, tau, where), values(node, "r", where), options, where)
    return _integrator(keep, gain, where)


def _synapse(node: Any, options: NirOptions, where: str) -> nn.Module:
    """The synaptic current of a CubaLIF or CubaLI: `tau_syn dI/dt = -I + w_in*S`."""
    keep, gain = _step(values(node, "tau_syn", where), values(node, "w_in", where), options, where)
    return _integrator(keep, gain, f"{where} (its synaptic current)")


def _cuba_lif(node: Any, options: NirOptions, where: str) -> nn.Module:
    """CubaLIF: the synaptic current as an integrator, then a LIF on the updated current."""
    membrane = _lif(node, options, where, "tau_mem")
    return nn.Sequential(OrderedDict(syn=_synapse(node, options, where), mem=membrane))


def _cuba_li(node: Any, options: NirOptions, where: str) -> nn.Module:
    """CubaLI: the synaptic current as an integrator, then a leaky integrator on it."""
    membrane = _li(node, options, where, "tau_mem")
    return nn.Sequential(OrderedDict(syn=_synapse(node, options, where), mem=membrane))


def _scale(node: Any, options: NirOptions, where: str) -> nn.Module:
    scale = np.asarray(node.scale, dtype=np.float32)
    if scale.ndim == 0:
        scale = scale.reshape(1)
    return ElementwiseScale(scale)


def _channels(layers: list[tuple[str, nn.Module]], graph: Any) -> int:
    """The channels entering the next layer: the last Conv2d's, else the graph input's."""
    for _, module in reversed(layers):
        convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
        if convs:
            return convs[-1].out_channels
    node = next(n for n in graph.nodes.values() if type(n).__name__ == "Input")
    return int(np.asarray(node.input_type["input"]).reshape(-1)[0])


def _sum_pool(node: Any, channels: int, where: str) -> nn.Module:
    """SumPool2d as a depthwise convolution of ones: each window's sum, exact on a crossbar."""
    kernel = _pair(node.kernel_size)
    stride = _pair(node.stride) if np.asarray(node.stride).size else kernel
    layer = nn.Conv2d(
        channels,
        channels,
        kernel,
        stride=stride,
        padding=_pair(node.padding),
        groups=channels,
        bias=False,
    )
    with torch.no_grad():
        layer.weight.fill_(1.0)
    return layer


def _i(node: Any, options: NirOptions, where: str) -> nn.Module:
    return _integrator(1.0, options.dt * np.asarray(values(node, "r", where)), where)


def _threshold(node: Any, options: NirOptions, where: str) -> nn.Module:
    threshold = rounded(values(node, "threshold", where))
    return LIF(0.0, threshold, True, "none", "before_leak")


def _affine(node: Any, options: NirOptions, where: str) -> nn.Module:
    weight = np.asarray(node.weight, dtype=np.float32)
    bias = getattr(node, "bias", None)
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
        if bias is not None:
            layer.bias.copy_(torch.from_numpy(np.asarray(bias, dtype=np.float32).reshape(-1)))
    return layer


def _pair(value: Any) -> tuple[int, int]:
    flat = [int(v) for v in np.asarray(value).reshape(-1)]
    return (flat[0], flat[0]) if len(flat) == 1 else (flat[0], flat[1])


def _conv(node: Any, options: NirOptions, where: str) -> nn.Module:
    weight = np.asarray(node.weight, dtype=np.float32)
    if isinstance(node.padding, str):
        raise PrimecError(f"NIR node {where!r}: padding {node.padding!r}; primec reads numbers")
    bias = np.asarray(node.bias, dtype=np.float32).reshape(-1)
    out, per_group, kh, kw = weight.shape
    layer = nn.Conv2d(
        per_group * int(node.groups),
        out,
        (kh, kw),
        stride=_pair(node.stride),
        padding=_pair(node.padding),
        dilation=_pair(node.dilation),
        groups=int(node.groups),
        bias=bool(np.any(bias)),
    )
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
        if layer.bias is not None:
            layer.bias.copy_(torch.from_numpy(bias))
    return layer


def _flatten(node: Any, options: NirOptions, where: str) -> nn.Module:
    out = np.asarray(node.output_type.get("output", [])).reshape(-1)
    if out.size != 1:
        raise PrimecError(
            f"NIR node {where!r}: a Flatten to {out.tolist()}; primec flattens to 1-D"
        )
    return nn.Flatten()


def _avg_pool(node: Any, options: NirOptions, where: str) -> nn.Module:
    return nn.AvgPool2d(_pair(node.kernel_size), _pair(node.stride), _pair(node.padding))


_LAYERS = {
    "LIF": _lif,
    "IF": _if,
    "LI": _li,
    "I": _i,
    "Threshold": _threshold,
    "CubaLIF": _cuba_lif,
    "CubaLI": _cuba_li,
    "Scale": _scale,
    "Affine": _affine,
    "Linear": _affine,
    "Conv2d": _conv,
    "Flatten": _flatten,
    "AvgPool2d": _avg_pool,
}


def _layer(node: Any, options: NirOptions, where: str) -> nn.Module:
    return _LAYERS[type(node).__name__](node, options, where)
