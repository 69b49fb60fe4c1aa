"""The instruction IR: a `Program` is what one artefact asks a macro to do, whatever file it is
encoded in. `lower` builds it from the placed IR; the bytecode and the macro file encode it; the
simulator runs it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from primec.backends.isa import Gather, Instr, Read, disassemble

from primec.hardware.earlyexit import ExitTable


@dataclass(frozen=True)
class DebugEntry:
    """Where an instruction came from: the IR value it computes, the op, the source location."""

    value: str
    op: str
    loc: str


@dataclass(frozen=True)
class Program:
    """Instructions of one timestep plus everything they refer to.

    `buffers[i]` is buffer i's per-sample shape; `inputs` are the step inputs' buffers; `states`
    pairs each state buffer with the buffer that holds its next value; `outputs` are the step
    outputs (the readout first). `arrays` maps (macro, array) to its cell conductances
    [rows, cols] in uS, as map-pairs decided them: pair j of a tile whose first column is c0
    sits at `PAIR.column(c0, j)` (`primec.hardware.geometry`: G+ there, G- in the next column).
    """

    name: str
    timesteps: int
    buffers: tuple[tuple[int, ...], ...]
    inputs: tuple[int, ...]
    states: tuple[tuple[int, int], ...]
    outputs: tuple[int, ...]
    instrs: tuple[Instr, ...]
    debug: tuple[DebugEntry, ...]
    tensors: dict[str, np.ndarray] = field(compare=False)
    arrays: dict[tuple[int, int], np.ndarray] = field(compare=False)
    neurons: tuple[dict[str, Any], ...]
    meta: dict[str, Any] = field(compare=False)
    exit_table: ExitTable | None = None

    @property
    def readout(self) -> int:
        """The buffer the controller watches (the first step output)."""
        return self.outputs[0]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The per-sample shape of the (single) step input."""
        return self.buffers[self.inputs[0]]

    def as_text(self) -> str:
        """The instruction IR as text (`--print-after lower`): a header, then the disassembly."""
        table = "none" if self.exit_table is None else self.exit_table.to_dict()
        head = (
            f"program {self.name}: target {self.meta['target']}, T={self.timesteps}, "
            f"{len(self.buffers)} buffers, {len(self.states)} states, {len(self.arrays)} arrays, "
            f"exit table {table}"
        )
        return head + "\n" + self.disassembly()

    @property
    def input_drive(self) -> tuple[float, int] | None:
        """(quantum, planes) of the reads that drive the step input, if any read it directly.

        A step input value x is driven as the level x / quantum on `planes` bit planes, so
        it must be a whole level in 0 .. 2**planes - 1.
        """
        sources = {self.inputs[0]} | {
            i.dst for i in self.instrs if isinstance(i, Gather) and i.src == self.inputs[0]
        }
        drives = sorted(
            {
                (i.quantum, i.planes)
                for i in self.instrs
                if isinstance(i, Read) and i.src in sources
            },
            key=lambda drive: drive[1],
        )
        return drives[0] if drives else None

    def disassembly(self) -> str:
        """Every instruction with its debug location, one per line."""
        width = max((len(disassemble(i)) for i in self.instrs), default=0)
        return "\n".join(
            f"{n:4d}  {disassemble(i):<{width}}  // "
            + (f"%{d.value} = {d.op} @ {d.loc or '?'}" if d.value else d.op)
            for n, (i, d) in enumerate(zip(self.instrs, self.debug, strict=True))
        )

    def content_equal(self, other: Program) -> bool:
        """Equal including tensors, conductances and metadata (the fields `==` skips)."""
        same_tensors = self.tensors.keys() == other.tensors.keys() and all(
            np.array_equal(v, other.tensors[k]) for k, v in self.tensors.items()
        )
        same_arrays = self.arrays.keys() == other.arrays.keys() and all(
            np.array_equal(v, other.arrays[k]) for k, v in self.arrays.items()
        )
        return (
            self == other
            and same_tensors
            and same_arrays
            and json.dumps(self.meta, sort_keys=True) == json.dumps(other.meta, sort_keys=True)
        )


def program_header(program: Program) -> dict[str, Any]:
    """The JSON header both artefacts carry: name, T, buffers, inputs, states, outputs, meta."""
    return {
        "name": program.name,
        "timesteps": program.timesteps,
        "buffers": [list(s) for s in program.buffers],
        "inputs": list(program.inputs),
        "states": [list(s) for s in program.states],
        "outputs": list(program.outputs),
        "meta": program.meta,
    }


def program_from_header(header: dict[str, Any], **parts: Any) -> Program:
    """A program from its JSON header plus the parts each artefact stores its own way."""
    return Program(
        name=header["name"],
        timesteps=header["timesteps"],
        buffers=tuple(tuple(s) for s in header["buffers"]),
        inputs=tuple(header["inputs"]),
        states=tuple(tuple(s) for s in header["states"]),
        outputs=tuple(header["outputs"]),
        meta=header["meta"],
        **parts,
    )


def target_hash(parameters: dict[str, Any]) -> str:
    """A short hash of a target's parameters, so an artefact names the exact target it was built for."""
    return hashlib.sha256(json.dumps(parameters, sort_keys=True).encode()).hexdigest()[:16]
