"""The counter-based hash of the sampler's random stream (primec/core/counter_rng.py) in ONNX.

ONNX has no 32-bit unsigned multiply, so every product is taken in int64 with the constant split
in 16-bit halves and reduced mod 2^32; the body expects int64 constants `half` (2^16) and `word`
(2^32) in scope.
"""

from __future__ import annotations

from onnx import NodeProto, TensorProto
from onnx import helper as oh


def int64(name: str, value: int) -> NodeProto:
    """A scalar int64 Constant node."""
    return oh.make_node(
        "Constant", [], [name], value=oh.make_tensor(name, TensorProto.INT64, [], [value])
    )


def _mul32(x: str, constant: int, out: str) -> list[NodeProto]:
    """out = x * constant mod 2^32 in int64, the constant split in 16-bit halves (counter_rng)."""
    low, high = f"{out}_low", f"{out}_high"
    return [
        int64(low, constant % 65536),
        int64(high, constant // 65536),
        oh.make_node("Mul", [x, low], [f"{out}_a"]),
        oh.make_node("Mul", [x, high], [f"{out}_b"]),
        oh.make_node("Mod", [f"{out}_b", "half"], [f"{out}_b16"]),
        oh.make_node("Mul", [f"{out}_b16", "half"], [f"{out}_c"]),
        oh.make_node("Add", [f"{out}_a", f"{out}_c"], [f"{out}_d"]),
        oh.make_node("Mod", [f"{out}_d", "word"], [out]),
    ]


def _xorshift(x: str, shift: int, out: str) -> list[NodeProto]:
    return [
        int64(f"{out}_div", 1 << shift),
        oh.make_node("Div", [x, f"{out}_div"], [f"{out}_shifted"]),
        oh.make_node("BitwiseXor", [x, f"{out}_shifted"], [out]),
    ]


def mix32(x: str, out: str) -> list[NodeProto]:
    """lowbias32 (primec/core/counter_rng.py), operator for operator."""
    return [
        *_xorshift(x, 16, f"{out}_s1"),
        *_mul32(f"{out}_s1", 0x7FEB352D, f"{out}_m1"),
        *_xorshift(f"{out}_m1", 15, f"{out}_s2"),
        *_mul32(f"{out}_s2", 0x846CA68B, f"{out}_m2"),
        *_xorshift(f"{out}_m2", 16, out),
    ]
