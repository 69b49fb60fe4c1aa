"""The network container: stages applied in order every timestep, then a readout.

`SNN.step(x, states)` is one timestep: the step input and every state in, the readout's value
and the new states out. That step function is what primec exports (`export_step`), so export
never depends on T. `SNN.forward(x)` runs all T steps of x [B, T, ...] and returns the readout
after every step, [B, T, ...].

A stage is any module; a `nn.Sequential` stage is walked child by child, so neurons may sit
inside it. Networks with another topology (skip connections) subclass `SNN` and override `step`
with the same signature.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from primec.nn.neurons import Stateful

STEP_FACTS_FILE = "primec.json"  # the extra file of a .pt2 saved by `save_step`
INPUT_ENCODINGS = ("event_counts", "spikes", "analog_repeat")


class SNN(nn.Module):
    """A spiking network run for `timesteps` steps on inputs shaped [B, T, *input_shape]."""

    def __init__(
        self,
        stages: Mapping[str, nn.Module],
        readout: Stateful,
        *,
        input_shape: tuple[int, ...],
        timesteps: int,
        input_encoding: str,
    ) -> None:
        super().__init__()
        if input_encoding not in INPUT_ENCODINGS:
            raise ValueError(
                f"input_encoding must be one of {INPUT_ENCODINGS}, got {input_encoding!r}"
            )
        for name, stage in stages.items():
            _check_stage(name, stage)
            self.add_module(name, stage)
        self.readout = readout
        self.stage_names = tuple(stages)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.timesteps = int(timesteps)
        self.input_encoding = input_encoding

    def sequence(self) -> Iterator[tuple[str, nn.Module]]:
        """The modules one step applies, in order, with their paths (Sequentials walked)."""
        for name in self.stage_names:
            yield from _walk(name, getattr(self, name))
        yield "readout", self.readout

    def stateful(self) -> list[tuple[str, Stateful]]:
        """The stateful modules in step order, with their paths."""
        return [(path, m) for path, m in self.sequence() if isinstance(m, Stateful)]

    def state_names(self) -> list[str]:
        """One name per state tensor, in the order `step` takes them: PATH.STATE."""
        return [f"{path}.{name}" for path, m in self.stateful() for name in m.state_names]

    def step(
        self, x: Tensor, states: list[Tensor] | None = None, trace: dict | None = None
    ) -> tuple[Tensor, list[Tensor]]:
        """One timestep: (readout value, new states); `states=None` means all zero.

        With `trace`, every stateful module's output is stored there by path.
        """
        given = iter(states) if states is not None else None
        new: list[Tensor] = []
        h = x
        for path, module in self.sequence():
            if not isinstance(module, Stateful):
                h = module(h)
                continue
            state = (
                module.zero_state(h) if given is None else [next(given) for _ in module.state_names]
            )
            h, next_state = module(h, *state)
            new.extend(next_state)
            if trace is not None:
                trace[path] = h
        return h, new

    def zero_states(self, x: Tensor) -> list[Tensor]:
        """Every state at its initial value (zero), for a step input x [B, *input_shape]."""
        with torch.no_grad():
            _, states = self.step(x)
        return [torch.zeros_like(s) for s in states]

    def forward(self, x: Tensor) -> Tensor:
        """Run x [B, T, ...] through T steps; the readout after every step, [B, T, ...]."""
        return self.record(x)["readout"]

    def record(self, x: Tensor) -> dict[str, Tensor]:
        """Run all steps; every stateful module's output by path, each [B, T, ...]."""
        states = self.zero_states(x[:, 0])
        history: dict[str, list[Tensor]] = {}
        for t in range(x.shape[1]):
            trace: dict[str, Tensor] = {}
            _, states = self.step(x[:, t], states, trace)
            for path, value in trace.items():
                history.setdefault(path, []).append(value)
        return {path: torch.stack(values, dim=1) for path, values in history.items()}

    def step_facts(self) -> dict:
        """The time-loop facts that go with the step function (also saved in a .pt2)."""
        return {
            "timesteps": self.timesteps,
            "input_encoding": self.input_encoding,
            "states": self.state_names(),
        }


class StepModule(nn.Module):
    """An `SNN`'s step as a module, for `torch.export`: forward(x, states) -> (y, new states)."""

    def __init__(self, net: SNN) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """One timestep of the wrapped network."""
        return self.net.step(x, states)


def export_step(net: SNN, batch: int = 2) -> torch.export.ExportedProgram:
    """The network's step function as a `torch.export` program (a float32, eval-mode copy)."""
    net = copy.deepcopy(net).float().eval()
    x = torch.zeros(batch, *net.input_shape)
    with torch.no_grad():
        return torch.export.export(StepModule(net), (x, net.zero_states(x)))


def save_step(net: SNN, path: str | Path) -> None:
    """Save the step function as a .pt2 archive that `primec compile` reads, with its time-loop facts."""
    facts = json.dumps(net.step_facts(), sort_keys=True)
    torch.export.save(export_step(net), path, extra_files={STEP_FACTS_FILE: facts})


def run_over_time(module: Stateful, x: Tensor) -> Tensor:
    """Run one stateful module alone over x [B, T, ...]; its outputs, [B, T, ...]."""
    state = module.zero_state(x[:, 0])
    outputs = []
    for t in range(x.shape[1]):
        out, state = module(x[:, t], *state)
        outputs.append(out)
    return torch.stack(outputs, dim=1)


def _walk(path: str, module: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    if not isinstance(module, nn.Sequential):
        yield path, module
        return
    for name, child in module.named_children():
        yield from _walk(f"{path}.{name}", child)


def _check_stage(name: str, stage: nn.Module) -> None:
    """Neurons must be reachable by the step walk: top level or inside Sequentials only."""
    walked = {id(m) for _, m in _walk(name, stage)}
    hidden = [
        f"{name}.{path}"
        for path, m in stage.named_modules()
        if isinstance(m, Stateful) and id(m) not in walked
    ]
    if hidden:
        raise ValueError(
            f"stateful modules {hidden} sit inside a module that is not an nn.Sequential; "
            "SNN.step cannot pass them their state: put them in a Sequential or override step()"
        )
