"""Data moved between macros per timestep, counted once a placement spans several macros.

A layer's periphery sits on its *home* macro, the macro of its first tile: there its partial
sums are accumulated, its neurons updated and its outputs pooled. So per timestep
- a tile on another macro sends its partial sums home: outputs x positions words of
  (adc.bits + planes) bits (an ADC code grown by the shift-add over the bit planes);
- a layer's input map is sent once to every macro that holds a tile of the next layer but is not
  the macro that produced it: elements x planes bits (one bit per spike, `planes` bits per
  multi-level value). The network's input comes from outside and is not counted.
A placement on one macro moves nothing. `docs/energy.md` states the model; the energy is
`energy.macro_transfer_pj_per_bit` per bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from primec.backends.isa import Gather, Instr, Read

OUTPUT_FIELDS = {"dst", "spike_out", "membrane_out", "sum_out", "count_out", "mean", "acc_out", "y"}
NOT_BUFFERS = {"macro", "array", "row0", "col0", "planes", "outputs", "params"}


def transfer_bits_per_step(
    instrs: Sequence[Instr],
    buffers: Sequence[tuple[int, ...]],
    tensors: dict[str, Any],
    adc_bits: int,
) -> int:
    """Bits moved between macros in one timestep of the schedule."""
    origin: dict[int, int] = {}  # buffer -> macro whose periphery produced it
    gathers = {ins.dst: ins.src for ins in instrs if isinstance(ins, Gather)}
    sent: set[tuple[int, int]] = set()
    bits = 0
    for ins in instrs:
        if not isinstance(ins, Read):
            _propagate(ins, origin)
            continue
        home = origin.setdefault(ins.dst, ins.macro)
        if ins.macro != home:
            outputs, positions = len(tensors[ins.cols]), buffers[ins.src][0]
            bits += outputs * positions * (adc_bits + ins.planes)
        source = gathers.get(ins.src, ins.src)
        producer = origin.get(source)
        if producer is not None and producer != ins.macro and (source, ins.macro) not in sent:
            sent.add((source, ins.macro))
            bits += math.prod(buffers[source]) * ins.planes
    return bits


def _propagate(ins: Instr, origin: dict[int, int]) -> None:
    """An instruction's outputs come from the macro of its first input that has one."""
    names = [f.name for f in fields(ins) if f.type == "int" and f.name not in NOT_BUFFERS]
    inputs = [getattr(ins, n) for n in names if n not in OUTPUT_FIELDS]
    macro = next((origin[b] for b in inputs if b in origin), None)
    if macro is None:
        return
    for name in names:
        if name in OUTPUT_FIELDS:
            origin.setdefault(getattr(ins, name), macro)
