"""The verifier of the instruction IR: a `Program` is well formed or it gets one error that
names the instruction, shows the disassembly around it and its debug entry back to the IR node.

The pass manager runs it after `lower` and after `exit-table`, as the graph verifier runs after
every pass. It checks what `lower` ensures of the step's shape (every instruction but the
controller's has a debug entry naming its IR value; the step ends with one `ExitTest` on the
readout, then one `EndStep`), then everything the artefact validator (`backends/validate.py`)
checks of operand roles, buffer shapes, field ranges, conductances and the exit table: what
passes here, every encoder writes and every reader accepts.
"""

from __future__ import annotations

import re

from primec.backends.isa import EndStep, ExitTest
from primec.backends.program import Program
from primec.backends.validate import validate

from primec.errors import PrimecError

CONTROLLER = (ExitTest, EndStep)  # the controller's instructions: no IR node of their own
_INSTRUCTION = re.compile(r"\binstruction (\d+)\b")


class ProgramError(PrimecError):
    """The instruction IR is not well formed."""


def verify_program(program: Program, source: str = "") -> Program:
    """Check the program; return it unchanged or raise `ProgramError`."""
    where = source or f"program {program.name}"
    _check_step(program, where)
    try:
        validate(program, where)
    except PrimecError as exc:
        found = _INSTRUCTION.search(exc.message)
        index = int(found.group(1)) if found else None
        _fail(program, where, exc.message, index)
    return program


def _check_step(program: Program, where: str) -> None:
    instrs = program.instrs
    if len(program.debug) != len(instrs):
        _fail(program, where, f"{len(program.debug)} debug entries for {len(instrs)} instructions")
    for index, (instr, entry) in enumerate(zip(instrs, program.debug, strict=True)):
        if not isinstance(instr, CONTROLLER) and not entry.value:
            _fail(program, where, f"instruction {index} has no debug entry to its IR node", index)
        if isinstance(instr, CONTROLLER) and index < len(instrs) - 2:
            _fail(program, where, f"instruction {index} ends the step before its last", index)
    tail = tuple(type(i) for i in instrs[-2:])
    if tail != CONTROLLER:
        _fail(program, where, "the step must end with exit_test on the readout, then end_step")
    if instrs[-2].readout != program.readout:
        message = f"exit_test reads buffer {instrs[-2].readout}, not the readout {program.readout}"
        _fail(program, where, message, len(instrs) - 2)


def _fail(program: Program, where: str, message: str, index: int | None = None) -> None:
    if index is None or not 0 <= index < len(program.instrs):
        raise ProgramError(message, where=where)
    entry = program.debug[index] if index < len(program.debug) else None
    node = f"%{entry.value} = {entry.op}, loc {entry.loc or '?'}" if entry else "no debug entry"
    raise ProgramError(
        message,
        where=f"{where}: instruction {index} (from {node})",
        context=program_context(program, index),
    )


def program_context(program: Program, index: int) -> str:
    """The disassembly around instruction `index`, that instruction marked with `>`."""
    lines = program.disassembly().split("\n") if len(program.debug) == len(program.instrs) else []
    if not lines:
        return ""
    window = range(max(0, index - 2), min(len(lines), index + 3))
    return "\n".join(("> " if i == index else "  ") + lines[i] for i in window)
