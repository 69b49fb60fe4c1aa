"""Hypothesis strategies for instructions of the ISA: any instruction with any field values."""

from __future__ import annotations

from dataclasses import fields

from hypothesis import strategies as st
from primec.backends.isa import INSTRUCTIONS

FIELD_VALUES = {
    "int": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(allow_nan=False),
    "str": st.text(max_size=20),
    "tuple[int, ...]": st.lists(st.integers(-(2**40), 2**40), max_size=6).map(tuple),
    "tuple[float, ...]": st.lists(st.floats(allow_nan=False), max_size=6).map(tuple),
}


def instruction_of(cls: type) -> st.SearchStrategy:
    """Any instruction of class `cls`, with any field values."""
    return st.builds(cls, **{f.name: FIELD_VALUES[f.type] for f in fields(cls)})


def instructions() -> st.SearchStrategy:
    """Any instruction with any field values."""
    return st.sampled_from(sorted(INSTRUCTIONS.values(), key=lambda c: c.OPCODE)).flatmap(
        instruction_of
    )
