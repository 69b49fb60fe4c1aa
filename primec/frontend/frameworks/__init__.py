"""Framework models as they are: an `nn.Sequential` built with snnTorch, SpikingJelly or Norse becomes
a `primec.nn.SNN` with the same step semantics, neuron by neuron (docs/from-frameworks.md).
Norse's `SequentialState` is an `nn.Sequential` too.

A framework is recognised by the Python module its neuron classes come from; none of them is
imported here, so primec never needs them at run time. Plain torch layers are kept as they
are; each framework neuron is translated by its framework's module (`snntorch`,
`spikingjelly`, `norse`). The time-loop facts the framework module does not hold (input shape,
timesteps, encoding, readout) come from `PRIMEC_STEP` in the architecture file.
"""

from __future__ import annotations

import copy
import sys
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from primec.errors import PrimecError
from primec.frontend.frameworks import norse, snntorch, spikingjelly
from primec.frontend.frameworks.common import MembraneOutput, Unmodelled
from primec.nn import LIF, SNN, Integrator, MeanReadout
from primec.nn.network import INPUT_ENCODINGS

Translate = Callable[[nn.Module, str], nn.Module]

# framework name -> (its package, its neuron classes by name -> translation)
FRAMEWORKS: dict[str, tuple[str, dict[str, Translate]]] = {
    "snnTorch": ("snntorch", snntorch.NEURONS),
    "SpikingJelly": ("spikingjelly", spikingjelly.NEURONS),
    "Norse": ("norse", norse.NEURONS),
}
# spike_count: the running mean of the output layer's spikes; membrane_mean: the running mean
# of the output layer's membrane (docs/from-frameworks.md).
READOUTS = ("spike_count", "membrane_mean")
FACT_KEYS = ("input_shape", "timesteps", "input_encoding", "readout")


def framework_of(module: nn.Module) -> str | None:
    """The framework a module's class comes from, or None for torch's and others' modules."""
    package = type(module).__module__.split(".")[0]
    return next((name for name, (pkg, _) in FRAMEWORKS.items() if pkg == package), None)


def uses_framework(module: nn.Module) -> str | None:
    """The first framework any submodule comes from, or None."""
    return next((f for m in module.modules() if (f := framework_of(m)) is not None), None)


def adopt(module: nn.Module, facts: Any, where: str) -> SNN:
    """The framework `module` (weights loaded) as a primec SNN with the same spikes every step."""
    framework = uses_framework(module)
    if not isinstance(module, nn.Sequential):
        raise PrimecError(
            f"the factory returned a {framework} {type(module).__name__}; primec reads an "
            "nn.Sequential of torch layers and framework neurons",
            where=where,
            hint="return the network as an nn.Sequential (docs/from-frameworks.md)",
        )
    step = _step_facts(facts, where)
    stages = _translate_sequence(module, "", where)
    _set_readout(stages, step["readout"], where)
    return SNN(
        {"net": stages},
        MeanReadout(),
        input_shape=step["input_shape"],
        timesteps=step["timesteps"],
        input_encoding=step["input_encoding"],
    )


def from_factory(
    net: nn.Module,
    file: Path,
    weights: Mapping[str, Any] | None,
    problems: list[str],
    arch: str,
    path: Path | None,
) -> SNN:
    """A factory's framework model: `weights` (their key `problems` found) loaded, translated."""
    framework = uses_framework(net)
    if problems:
        raise PrimecError(
            f"the state_dict matches neither primec's nor the {framework} model's keys of "
            f"{arch}: {len(problems)} mismatches:\n" + "\n".join(f"  - {p}" for p in problems[:20]),
            where=str(path),
            hint=f"save it with torch.save(model.state_dict(), ...) from the {framework} model",
        )
    if weights is not None:
        net.load_state_dict(weights)
    facts = getattr(sys.modules.get(f"primec_arch_{file.stem}"), "PRIMEC_STEP", None)
    snn = adopt(net.float().eval(), facts, str(file))
    snn.framework = framework
    return snn


def _set_readout(stages: nn.Sequential, readout: str, where: str) -> None:
    """Check the network's last module fits the readout; for membrane_mean, make the output
    neuron answer with its membrane (a leaky integrator, Norse LICell, already does)."""
    parent = stages
    while len(parent) and isinstance(last := parent[-1], nn.Sequential):
        parent = last
    name = list(parent._modules)[-1] if len(parent) else ""
    last = parent._modules.get(name)
    if readout == "spike_count":
        if isinstance(last, Integrator):
            raise PrimecError(
                "readout spike_count needs a spiking output layer; the network ends in a leaky "
                "integrator (Norse LICell), which has no spikes",
                where=where,
                hint='use "readout": "membrane_mean" in PRIMEC_STEP',
            )
        return
    if isinstance(last, Integrator):
        return
    if getattr(last, "membrane_after_reset", False):
        raise PrimecError(
            "readout membrane_mean: the output layer resets at once (snnTorch reset_delay=False), "
            "so its membrane is reported after the reset, which primec's neuron does not keep",
            where=where,
            hint='use reset_delay=True for the output layer, or "readout": "spike_count"',
        )
    if bool((torch.as_tensor(getattr(last, "membrane_shift", 0.0)) != 0).any()):
        raise PrimecError(
            "readout membrane_mean: the output layer's membrane starts at a nonzero value "
            "(SpikingJelly v_reset, Norse v_leak); primec counts it from there, so its membrane "
            "differs from the framework's by that value",
            where=where,
            hint='use "readout": "spike_count", or v_reset 0.0 / v_leak 0.0 for the output layer',
        )
    if type(last) is not LIF:
        raise PrimecError(
            "readout membrane_mean needs a neuron or integrator as the network's last layer, "
            f"found {type(last).__name__}",
            where=where,
            hint='end the network with the output neuron, or use "readout": "spike_count"',
        )
    parent._modules[name] = MembraneOutput.of(last)


def _translate_sequence(seq: nn.Sequential, prefix: str, where: str) -> nn.Sequential:
    children = [
        (name, _translate(child, f"{prefix}{name}", where)) for name, child in seq.named_children()
    ]
    return nn.Sequential(OrderedDict(children))


def _translate(module: nn.Module, path: str, where: str) -> nn.Module:
    framework = framework_of(module)
    if isinstance(module, nn.Sequential):  # torch's, or a framework's (Norse SequentialState)
        return _translate_sequence(module, f"{path}.", where)
    if framework is None:
        return copy.deepcopy(module)
    _, neurons = FRAMEWORKS[framework]
    name = type(module).__name__
    if name not in neurons:
        raise PrimecError(
            f"{framework} {type(module).__module__}.{name} at {path!r} is not supported",
            where=where,
            hint=f"primec translates {framework} {', '.join(sorted(neurons))} and torch's own layers;"
            " see docs/from-frameworks.md",
        )
    try:
        return neurons[name](module, path)
    except Unmodelled as exc:
        raise PrimecError(
            f"{framework} {name} at {path!r}: {exc}",
            where=where,
            hint="primec models this neuron only with the options docs/from-frameworks.md lists",
        ) from exc


def _step_facts(facts: Any, where: str) -> dict[str, Any]:
    if not isinstance(facts, Mapping):
        raise PrimecError(
            "a framework model needs PRIMEC_STEP in its architecture file: a dict of "
            + ", ".join(FACT_KEYS),
            where=where,
            hint='e.g. PRIMEC_STEP = {"input_shape": (2, 34, 34), "timesteps": 10, '
            '"input_encoding": "event_counts", "readout": "spike_count"}',
        )
    step = {"input_encoding": "event_counts", "readout": "spike_count", **facts}
    unknown = sorted(set(step) - set(FACT_KEYS))
    problems = [f"unknown key {k!r}" for k in unknown]
    if "input_shape" not in step or "timesteps" not in step:
        problems.append("input_shape and timesteps are required")
    if step["input_encoding"] not in INPUT_ENCODINGS:
        problems.append(f"input_encoding must be one of {', '.join(INPUT_ENCODINGS)}")
    if step["readout"] not in READOUTS:
        problems.append(f"readout must be one of {', '.join(READOUTS)}, got {step['readout']!r}")
    if problems:
        raise PrimecError("PRIMEC_STEP: " + "; ".join(problems), where=where)
    return step
