"""The function bodies of primec's neuron ops (`primec.LIF`, `LIFGeneral`, `LIFTensor`,
`Integrator`, `IntegratorTensor`) in standard ONNX ops, and the node helpers every body uses.

Each body follows the IR op's equation (`primec/core/ops.py`) operation by operation, so
float32 results match PyTorch's. A parameter is either a function attribute (a `Constant`
node referring to it) or, in the tensor forms, a function input of the same name.
"""

from __future__ import annotations

from onnx import AttributeProto, NodeProto, TensorProto
from onnx import helper as oh

Attrs = tuple[tuple[str, str], ...]  # (name, kind): kind is float, int, integer or string

_ATTR_TYPES = {
    "float": AttributeProto.FLOAT,
    "int": AttributeProto.INT,
    "integer": AttributeProto.INT,  # a true integer (`int` attributes are flags)
    "string": AttributeProto.STRING,
}


def ref(name: str, kind: str) -> NodeProto:
    """A Constant node whose value is the function's attribute `name`."""
    value = "value_int" if kind == "integer" else f"value_{kind}"
    attribute = AttributeProto(name=value, ref_attr_name=name, type=_ATTR_TYPES[kind])
    node = oh.make_node("Constant", [], [name])
    node.attribute.append(attribute)
    return node


def const(name: str, value: float | str) -> NodeProto:
    if isinstance(value, str):
        return oh.make_node(
            "Constant",
            [],
            [name],
            value=oh.make_tensor(name, TensorProto.STRING, [], [value.encode()]),
        )
    return oh.make_node("Constant", [], [name], value_float=value)


def leaky(x: str, out: str) -> list[NodeProto]:
    """out = x if x >= 0 else slope*x, with `slope` and `zero` already defined."""
    return [
        oh.make_node("GreaterOrEqual", [x, "zero"], [f"{x}_nonneg"]),
        oh.make_node("Mul", [x, "slope"], [f"{x}_scaled"]),
        oh.make_node("Where", [f"{x}_nonneg", x, f"{x}_scaled"], [out]),
    ]


def fire() -> list[NodeProto]:
    """spike_out = membrane_out > threshold (strict) or >= threshold, as 1.0 or 0.0."""
    return [
        oh.make_node("Cast", ["strict"], ["is_strict"], to=TensorProto.BOOL),
        *_fire_named("membrane_out", "spike_out", ""),
    ]


def _fire_named(x: str, out: str, prefix: str) -> list[NodeProto]:
    """out = x > threshold (strict) or >= threshold as 1.0 or 0.0; `is_strict` defined."""
    above, reached = f"{prefix}above", f"{prefix}reached"
    return [
        oh.make_node("Greater", [x, "threshold"], [above]),
        oh.make_node("GreaterOrEqual", [x, "threshold"], [reached]),
        # onnxruntime has no Where over booleans: choose between the spikes as floats.
        oh.make_node("Cast", [above], [f"{above}_f"], to=TensorProto.FLOAT),
        oh.make_node("Cast", [reached], [f"{reached}_f"], to=TensorProto.FLOAT),
        oh.make_node("Where", ["is_strict", f"{above}_f", f"{reached}_f"], [out]),
    ]


def _at_once() -> list[NodeProto]:
    """reset_timing=at_once: r = fire(U); H = (leak(U) + I) - threshold*r; s' = fire(H);
    U' = LeakyReLU(H - (s' - r)*threshold); chosen over the other timings' results."""
    return [
        const("at_once_timing", "at_once"),
        oh.make_node("Equal", ["reset_timing", "at_once_timing"], ["is_at_once"]),
        *_fire_named("membrane", "still", "still_"),
        oh.make_node("Mul", ["threshold", "still"], ["still_drop"]),
        oh.make_node("Sub", ["charged", "still_drop"], ["once_charged"]),
        *_fire_named("once_charged", "once_spike", "once_"),
        oh.make_node("Sub", ["once_spike", "still"], ["once_reset"]),
        oh.make_node("Mul", ["once_reset", "threshold"], ["once_drop"]),
        oh.make_node("Sub", ["once_charged", "once_drop"], ["once_raw"]),
        *leaky("once_raw", "once_membrane"),
        oh.make_node("Where", ["is_at_once", "once_membrane", "timed_membrane"], ["membrane_out"]),
        oh.make_node("Where", ["is_at_once", "once_spike", "timed_spike"], ["spike_out"]),
    ]


def lif_body(attrs: Attrs) -> list[NodeProto]:
    """The plain LIF: fixed reset target 0, no leak target, unit input gain."""
    return [
        *(ref(name, kind) for name, kind in attrs),
        const("one", 1.0),
        const("zero", 0.0),
        const("after_leak", "after_leak"),
        const("zero_reset", "zero"),
        const("subtract_reset", "subtract"),
        oh.make_node("Equal", ["reset_timing", "after_leak"], ["is_after"]),
        oh.make_node("Mul", ["membrane", "keep"], ["leaked"]),
        oh.make_node("Where", ["is_after", "leaked", "membrane"], ["base"]),
        oh.make_node("Sub", ["one", "spike"], ["not_spiked"]),
        oh.make_node("Mul", ["base", "not_spiked"], ["zeroed"]),
        oh.make_node("Mul", ["threshold", "spike"], ["drop"]),
        oh.make_node("Sub", ["base", "drop"], ["subtracted"]),
        oh.make_node("Equal", ["reset", "subtract_reset"], ["is_subtract"]),
        oh.make_node("Where", ["is_subtract", "subtracted", "base"], ["kept_or_subtracted"]),
        oh.make_node("Equal", ["reset", "zero_reset"], ["is_zero"]),
        oh.make_node("Where", ["is_zero", "zeroed", "kept_or_subtracted"], ["after_reset"]),
        oh.make_node("Mul", ["after_reset", "keep"], ["reset_leaked"]),
        oh.make_node("Where", ["is_after", "after_reset", "reset_leaked"], ["carried"]),
        oh.make_node("Add", ["carried", "current"], ["integrated"]),
        *leaky("integrated", "membrane_out"),
        *fire(),
    ]


def _reset(x: str, out: str) -> list[NodeProto]:
    """out = reset(x) of the general LIF, with is_zero, is_subtract and the attributes defined."""
    return [
        oh.make_node("Mul", [x, "not_spiked"], [f"{x}_zeroed"]),
        oh.make_node("Mul", ["v_reset", "spike"], [f"{x}_target"]),
        oh.make_node("Add", [f"{x}_zeroed", f"{x}_target"], [f"{x}_reset_to"]),
        oh.make_node("Sub", [x, "drop"], [f"{x}_subtracted"]),
        oh.make_node("Where", ["is_subtract", f"{x}_subtracted", x], [f"{x}_kept"]),
        oh.make_node("Where", ["is_zero", f"{x}_reset_to", f"{x}_kept"], [out]),
    ]


def _leak(x: str, out: str) -> list[NodeProto]:
    """out = v_leak + keep*(x - v_leak)."""
    return [
        oh.make_node("Sub", [x, "v_leak"], [f"{x}_rel"]),
        oh.make_node("Mul", [f"{x}_rel", "keep"], [f"{x}_rel_kept"]),
        oh.make_node("Add", ["v_leak", f"{x}_rel_kept"], [out]),
    ]


def lif_general_body(attrs: Attrs) -> list[NodeProto]:
    """The LIF with every variant; `attrs` are the op's attributes (the rest are inputs)."""
    timing = [("before_leak", "is_before"), ("after_leak", "is_after")]
    return [
        *(ref(attr, kind) for attr, kind in attrs),
        const("one", 1.0),
        const("zero", 0.0),
        *(const(f"{name}_timing", name) for name, _ in timing),
        const("zero_reset", "zero"),
        const("subtract_reset", "subtract"),
        *(oh.make_node("Equal", ["reset_timing", f"{n}_timing"], [flag]) for n, flag in timing),
        oh.make_node("Equal", ["reset", "zero_reset"], ["is_zero"]),
        oh.make_node("Equal", ["reset", "subtract_reset"], ["is_subtract"]),
        oh.make_node("Sub", ["one", "spike"], ["not_spiked"]),
        oh.make_node("Mul", ["threshold", "spike"], ["drop"]),
        oh.make_node("Mul", ["input_gain", "current"], ["drive"]),
        *_reset("membrane", "reset_first"),
        *_leak("reset_first", "before_leak"),
        *_leak("membrane", "leaked"),
        *_reset("leaked", "after_leak"),
        oh.make_node("Add", ["leaked", "drive"], ["charged"]),
        *_reset("charged", "after_input"),
        oh.make_node("Where", ["is_before", "before_leak", "after_leak"], ["carried"]),
        oh.make_node("Add", ["carried", "drive"], ["integrated_early"]),
        oh.make_node("Or", ["is_before", "is_after"], ["is_early"]),
        oh.make_node("Where", ["is_early", "integrated_early", "after_input"], ["integrated"]),
        *leaky("integrated", "timed_membrane"),
        oh.make_node("Cast", ["strict"], ["is_strict"], to=TensorProto.BOOL),
        *_fire_named("timed_membrane", "timed_spike", ""),
        *_at_once(),
    ]


def integrator_body(attrs: Attrs) -> list[NodeProto]:
    """The non-spiking integrator."""
    return [
        *(ref(attr, kind) for attr, kind in attrs),
        const("zero", 0.0),
        oh.make_node("Mul", ["membrane", "keep"], ["leaked"]),
        oh.make_node("Add", ["leaked", "current"], ["integrated"]),
        *leaky("integrated", "membrane_out"),
    ]
