"""The counter-based random stream of the latent sampler, written once for NumPy and PyTorch.

A draw is a pure function of its key (seed, sample, step, channel): no generator state, so the
PyTorch module, the reference interpreter, onnxruntime (the ONNX function body of
`primec.SampleBernoulli`, built from the same constants) and the simulator draw the same index
whatever order or batching they run in.

The mixer is Chris Wellons' `lowbias32` (xor-shift-multiply, a bijection of 32-bit words):

    x ^= x >> 16;  x *= 0x7FEB352D;  x ^= x >> 15;  x *= 0x846CA68B;  x ^= x >> 16   (mod 2^32)

and the key is absorbed one coordinate at a time, h = mix(mix(mix(mix(channel) ^ step) ^ sample)
^ seed); the draw is h mod k. Everything runs in int64 on values below 2^32; a 32x32-bit product
would overflow int64, so each multiply is split into two 16-bit halves of the constant (products
below 2^48). Shifts are floor divisions by powers of two (the values are never negative), so
the same few operators (`^`, `//`, `%`, `*`, `+`) mean the same thing on NumPy arrays, torch
tensors and in ONNX (BitwiseXor, Div, Mod, Mul, Add on int64).
"""

from __future__ import annotations

from typing import Any

WORD = 1 << 32
HALF = 1 << 16
MULTIPLIERS = (0x7FEB352D, 0x846CA68B)
SHIFTS = (16, 15, 16)
SEED_LIMIT = WORD  # seeds are integers in [0, 2^32)


def mul32(x: Any, constant: int) -> Any:
    """x * constant mod 2^32 for 0 <= x < 2^32, without leaving int64."""
    low, high = constant % HALF, constant // HALF
    return (x * low + ((x * high) % HALF) * HALF) % WORD


def mix32(x: Any) -> Any:
    """lowbias32: a bijective scramble of 32-bit words (int64 arrays or tensors, or ints)."""
    x = x ^ (x // (1 << SHIFTS[0]))
    x = mul32(x, MULTIPLIERS[0])
    x = x ^ (x // (1 << SHIFTS[1]))
    x = mul32(x, MULTIPLIERS[1])
    return x ^ (x // (1 << SHIFTS[2]))


def draw_index(seed: int, sample: Any, step: Any, channel: Any, k: int) -> Any:
    """The drawn candidate in [0, k) for each (sample, step, channel): mix the key, mod k.

    `sample`, `step` and `channel` are int64 arrays or tensors that broadcast together.
    """
    h = mix32(channel % WORD)
    h = mix32(h ^ (step % WORD))
    h = mix32(h ^ (sample % WORD))
    return mix32(h ^ seed) % k


def check_seed(seed: Any) -> int:
    """The seed as an int in [0, 2^32), or ValueError saying what is wrong."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"the sampler seed must be an integer, got {seed!r}")
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"the sampler seed must be in [0, 2^32), got {seed}")
    return seed
