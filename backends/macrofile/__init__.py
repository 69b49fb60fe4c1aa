"""The macro programming file (`.pmac`), in modules of one job each: `codec` (bytes <-> program,
the schedule's instruction JSON), `validate` (cross-references), `pairs` (the programming plan
per cell pair) and `summary` (`primec inspect`). See docs/macro-format.md.
"""

from __future__ import annotations

from primec.backends.macrofile.codec import (
    FORMAT,
    MAGIC_PREFIX,
    VERSION,
    decode,
    encode,
    read,
    write,
)
from primec.backends.macrofile.pairs import (
    PAIR_CODES,
    PAIR_KEEP,
    PAIR_PROGRAM,
    PAIR_RESET,
    PAIR_UNUSED,
    estimated_pulses,
    layer_pairs,
    pair_operations,
)
from primec.backends.macrofile.summary import describe_table, summary
from primec.backends.macrofile.validate import MacroFileError, validate

__all__ = [
    "FORMAT",
    "MAGIC_PREFIX",
    "PAIR_CODES",
    "PAIR_KEEP",
    "PAIR_PROGRAM",
    "PAIR_RESET",
    "PAIR_UNUSED",
    "VERSION",
    "MacroFileError",
    "decode",
    "describe_table",
    "encode",
    "estimated_pulses",
    "layer_pairs",
    "pair_operations",
    "read",
    "summary",
    "validate",
    "write",
]
