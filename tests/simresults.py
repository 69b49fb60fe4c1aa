"""Comparing simulator runs: every output of two results, bit for bit, and the program the
chip-axis and fused-kernel tests run (the released classifier with PRIME's early-exit rule, so
rows leave the batch at different steps)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from primec.backends.program import Program
from primec.backends.simulator import SimResult
from released import released_program

from primec.hardware.earlyexit import PRIME_RULE


def released_with_exit_rule() -> Program:
    """The released classifier lowered, with PRIME's early-exit rule."""
    return replace(released_program(), exit_table=PRIME_RULE)


def assert_same(a: SimResult, b: SimResult) -> None:
    """Readouts after every step, predictions, exit steps, counts and traced buffers equal."""
    np.testing.assert_array_equal(a.readouts, b.readouts)
    np.testing.assert_array_equal(a.pred, b.pred)
    np.testing.assert_array_equal(a.exit_step, b.exit_step)
    for name in a.counts:
        np.testing.assert_array_equal(a.counts[name], b.counts[name], err_msg=name)
    assert a.spikes.keys() == b.spikes.keys()
    for buffer in a.spikes:
        np.testing.assert_array_equal(a.spikes[buffer], b.spikes[buffer], err_msg=str(buffer))
