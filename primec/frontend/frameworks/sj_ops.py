"""SpikingJelly's own neuron ops in a .pt2 step (`torch.ops.sj_lif.forward`, `sj_if.forward`)
-> primec's `lif`, without importing SpikingJelly.

`prepare` reads the archive's program JSON as data, refuses every `sj_*` op primec does not
model (all named at once) and registers a stand-in schema for the ones it does, only where
SpikingJelly has not registered them, so `torch.export.load` can rebuild the graph. The stand-ins
have no kernel: nothing runs them; `translate` replaces each call before anything else reads the
graph.

SpikingJelly keeps V, the membrane after its reset; primec's `lif` keeps (H, s), the charged
membrane before the reset and the spike, and resets at the start of the next step
(reset_timing=before_leak). V = reset(H, s), and reset(V, 0) = V, so SpikingJelly's state V is
primec's (membrane=V, spike=0), and both start at zero (V counted from v_reset, see
`spikingjelly.py`). Each SpikingJelly state input v therefore becomes two primec states
(membrane, spike), and the returned V' becomes (H', s'). With the parameters of
`spikingjelly.lif_node` (keep = 1 - 1/tau, input_gain = 1/tau with decay_input, threshold
v_threshold - v_reset, >= firing, hard reset -> zero, v_reset None -> subtract) the spikes are
SpikingJelly's. The step's first output (the output layer's spikes) is read out by primec's
running mean (spike count / T, readout spike_count), which adds two states.
"""

from __future__ import annotations

import math
import operator
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch.export.graph_signature import (
    InputKind,
    InputSpec,
    OutputKind,
    OutputSpec,
    TensorArgument,
)
from torch.fx import Graph, Node

import primec.nn  # noqa: F401 - registers torch.ops.primec.*
from primec.errors import PrimecError

# The schemas SpikingJelly 2.0 registers for the ops primec models.
SCHEMAS = {
    "sj_lif": "forward(Tensor x, Tensor v, float tau, bool decay_input, float threshold, "
    "float? reset, bool detach_reset, float alpha, bool store_v_seq=True, SymInt surrogate_id=0) "
    "-> (Tensor, Tensor, Tensor)",
    "sj_if": "forward(Tensor x, Tensor v, float threshold, float? reset, bool detach_reset, "
    "float alpha, bool store_v_seq=True, SymInt surrogate_id=0) -> (Tensor, Tensor, Tensor)",
}
_CLASSES = {"sj_lif": "LIFNode", "sj_if": "IFNode"}
_OP = re.compile(r"torch\.ops\.(sj_[A-Za-z0-9_]+)\.([A-Za-z0-9_]+)")
_MAX_PROGRAM = 256 << 20
_LIBRARIES: dict[str, torch.library.Library] = {}
_HINT = (
    "primec reads SpikingJelly's LIFNode and IFNode ops (sj_lif.forward, sj_if.forward) in a .pt2; "
    "build the model with those, or compile it from its module with --arch "
    "(docs/from-frameworks.md)"
)


def prepare(path: Path) -> None:
    """Refuse SpikingJelly ops primec does not model; register stand-ins for those it does."""
    found = set(_OP.findall(_program_text(path)))
    unmodelled = sorted(f"{ns}.{op}" for ns, op in found if ns not in SCHEMAS or op != "forward")
    if unmodelled:
        raise PrimecError(
            "the step calls SpikingJelly ops primec does not model: "
            + ", ".join(f"torch.ops.{name}" for name in unmodelled),
            where=str(path),
            hint=_HINT,
        )
    for namespace in sorted({ns for ns, _ in found}):
        register(namespace)


def _program_text(path: Path) -> str:
    """The archive's program JSON as text, read as data ('' when there is none); at most
    `_MAX_PROGRAM` bytes (`check_archive` bounds the members of an untrusted archive)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("models/model.json")]
            if not names:
                return ""
            with archive.open(names[0]) as member:
                return member.read(_MAX_PROGRAM).decode("utf-8", "replace")
    except (OSError, zipfile.BadZipFile, RuntimeError, NotImplementedError):
        return ""  # torch.export.load reports what is wrong with the file


def register(namespace: str) -> None:
    """Define `torch.ops.NAMESPACE.forward` (schema only) unless SpikingJelly already did."""
    if namespace in _LIBRARIES or hasattr(getattr(torch.ops, namespace), "forward"):
        return
    library = torch.library.Library(namespace, "FRAGMENT")
    library.define(SCHEMAS[namespace])
    _LIBRARIES[namespace] = library


def step_facts(program: torch.export.ExportedProgram, facts: dict, where: str = "") -> dict:
    """The step's facts; a step calling SpikingJelly's neuron ops is translated first."""
    if any(_namespace(node) for node in program.graph.nodes):
        return translate(program, facts, where)
    return facts


def translate(program: torch.export.ExportedProgram, facts: dict, where: str) -> dict:
    """Rewrite every SpikingJelly neuron call into `primec.lif_general`, add the spike states and
    the spike-count readout; returns the facts with the new state names."""
    readout = facts.get("readout", "spike_count")
    if readout != "spike_count":
        raise PrimecError(
            f"readout {readout!r}: a SpikingJelly .pt2 step is read out by its output spikes",
            where=where,
            hint='use "readout": "spike_count" (or leave it out) in primec.json',
        )
    graph = program.graph
    names: dict[str, str] = {}
    replaced: dict[str, tuple[Node, Node]] = {}  # SpikingJelly's V' -> (H', s')
    for index, node in enumerate([n for n in graph.nodes if _namespace(n)]):
        _rewrite(program, node, index, names, replaced, where)
    total, count = _rewrite_outputs(program, replaced)
    names[total.name], names[count.name] = "readout.sum", "readout.count"
    graph.eliminate_dead_code()
    program.graph_module.recompile()
    states = [names.get(n, n) for n in program.graph_signature.user_inputs[1:]]
    return {**facts, "states": states}


def _namespace(node: Node) -> str:
    target = node.target
    if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload):
        return ""
    namespace = target.namespace
    return namespace if namespace in SCHEMAS else ""


def _arguments(node: Node) -> dict[str, Any]:
    schema = node.target._schema
    values = {a.name: a.default_value for a in schema.arguments if a.has_default_value()}
    values.update(zip([a.name for a in schema.arguments], node.args, strict=False))
    values.update(node.kwargs)
    return values


def _refuse(node: Node, what: str, where: str) -> PrimecError:
    namespace = _namespace(node)
    return PrimecError(
        f"SpikingJelly {_CLASSES[namespace]} op torch.ops.{namespace}.forward ({node.name}): {what}",
        where=where,
        hint="export the step as docs/from-frameworks.md shows (one step: the op on "
        "x.unsqueeze(0), its membrane a state input, store_v_seq=False)",
    )


def parameters(namespace: str, a: dict[str, Any]) -> tuple[float, float, str, float]:
    """(keep, threshold, reset, input_gain) of primec's `lif` for the op's arguments, with the
    membrane counted from v_reset (`spikingjelly.py`); raises ValueError for what cannot fire."""
    threshold, v_reset = float(a["threshold"]), a["reset"]
    shift = 0.0 if v_reset is None else float(v_reset)
    if not threshold - shift > 0:
        raise ValueError(f"threshold {threshold} must lie above v_reset {shift}")
    reset = "subtract" if v_reset is None else "zero"
    if namespace == "sj_if":
        return 1.0, threshold - shift, reset, 1.0
    tau = float(a["tau"])
    if not (math.isfinite(tau) and tau > 1):
        raise ValueError(f"tau {tau} must be finite and above 1")
    return 1.0 - 1.0 / tau, threshold - shift, reset, 1.0 / tau if a["decay_input"] else 1.0


def _rewrite(
    program: torch.export.ExportedProgram,
    node: Node,
    index: int,
    names: dict[str, str],
    replaced: dict[str, tuple[Node, Node]],
    where: str,
) -> None:
    namespace = _namespace(node)
    if str(node.target._schema) != f"{namespace}::{SCHEMAS[namespace]}":
        raise _refuse(
            node, "its registered schema is not SpikingJelly 2.0's, which primec reads", where
        )
    a = _arguments(node)
    if a["store_v_seq"]:
        raise _refuse(node, "store_v_seq=True returns every step's membrane; pass False", where)
    try:
        keep, threshold, reset, gain = parameters(namespace, a)
    except ValueError as exc:
        raise _refuse(node, str(exc), where) from exc
    sequence, membrane = node.args[0], node.args[1]
    if not _is_call(sequence, "aten.unsqueeze.default") or sequence.args[1] != 0:
        raise _refuse(node, "its input is not the step input made a length-1 sequence", where)
    if membrane.name not in program.graph_signature.user_inputs:
        raise _refuse(node, "its membrane is not a state input of the step", where)
    outputs = _outputs(node, where)
    graph = program.graph
    spike_state = _state_input(program, membrane, f"{membrane.name}_spike")
    with graph.inserting_before(node):
        args = (sequence.args[0], membrane, spike_state, keep, threshold, False, reset)
        args += ("before_leak", 1.0, 0.0, 0.0, gain)
        call = graph.call_function(torch.ops.primec.lif_general.default, args)
        call.meta.update({k: v for k, v in node.meta.items() if k != "val"})
        spike, charged = (_getitem(graph, call, i, membrane) for i in (0, 1))
    for select in outputs[0]:
        select.replace_all_uses_with(spike)
    replaced[outputs[1].name] = (charged, spike)
    stem = _stem(node, index)
    names[membrane.name], names[spike_state.name] = f"{stem}.membrane", f"{stem}.spike"


def _outputs(node: Node, where: str) -> tuple[list[Node], Node]:
    """(the ops taking step 0 of the spike sequence, the V' node); refuses other uses."""
    items = {user.args[1]: user for user in node.users if _is_call(user, "getitem")}
    if len(items) != len(node.users) or 1 not in items or items.get(2, node).users:
        raise _refuse(node, "use only its spikes and its new membrane", where)
    takes = list(items[0].users) if 0 in items else []
    if not all(_is_call(t, "aten.select.int") and t.args[1:] == (0, 0) for t in takes):
        raise _refuse(node, "its spike sequence must be read as step 0 (spikes[0])", where)
    if any(user.op != "output" for user in items[1].users):
        raise _refuse(node, "its new membrane must be returned as the next state only", where)
    return takes, items[1]


def _is_call(node: Any, name: str) -> bool:
    if not isinstance(node, Node) or node.op != "call_function":
        return False
    target = node.target
    return (getattr(target, "__name__", "") == name) or str(target) == name


def _getitem(graph: Graph, call: Node, index: int, like: Node) -> Node:
    item = graph.call_function(operator.getitem, (call, index))
    item.meta.update(call.meta)
    item.meta["val"] = like.meta["val"]
    return item


def _stem(node: Node, index: int) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    path = list(stack.values())[-1][0] if len(stack) > 1 else ""
    return path or f"{_namespace(node)}{index}"


def _state_input(
    program: torch.export.ExportedProgram, after: Node, name: str, like: Node | None = None
) -> Node:
    """A new state input NAME of the step, right after `after` (shaped like `like`, default
    `after`)."""
    graph = program.graph
    with graph.inserting_after(after):
        state = graph.placeholder(name)
    state.meta["val"] = (like or after).meta["val"]
    specs = program.graph_signature.input_specs
    position = next(i for i, s in enumerate(specs) if s.arg.name == after.name) + 1
    specs.insert(position, InputSpec(InputKind.USER_INPUT, TensorArgument(state.name), None))
    return state


def _rewrite_outputs(
    program: torch.export.ExportedProgram, replaced: dict[str, tuple[Node, Node]]
) -> tuple[Node, Node]:
    """Return (H', s') where the step returned V'; read the first output out by its mean."""
    graph = program.graph
    output = next(n for n in graph.nodes if n.op == "output")
    returned = list(output.args[0])
    results: list[Node] = []
    for value in returned[1:]:
        results.extend(replaced.get(value.name, (value,)))
    first = returned[0]
    last_input = [n for n in graph.nodes if n.op == "placeholder"][-1]
    total = _state_input(program, last_input, "readout_sum", first)
    count = _state_input(program, total, "readout_count")
    count.meta["val"] = torch.zeros(first.meta["val"].shape[0], 1)
    with graph.inserting_before(output):
        call = graph.call_function(torch.ops.primec.readout_mean.default, (first, total, count))
        items = [_getitem(graph, call, i, like) for i, like in enumerate((first, total, count))]
    output.args = ((items[0], *results, items[1], items[2]),)
    specs = [
        OutputSpec(OutputKind.USER_OUTPUT, TensorArgument(n.name), None) for n in output.args[0]
    ]
    program.graph_signature.output_specs[:] = specs
    return total, count
