"""Simulator bytecode: every instruction round-trips, the file round-trips byte for byte, and
every malformed file gets one clear error."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from isa_strategies import instructions
from primec.backends import bytecode
from primec.backends.isa import INSTRUCTIONS, decode_program, encode_program

from primec.cli import main
from primec.errors import PrimecError
from primec.hardware.target import DEFAULT_TARGET, load_target
from primec.pipeline import BackendOptions, compile_model

GOLDEN = Path(__file__).parent / "golden" / "ir"


@settings(max_examples=300, deadline=None)
@given(st.lists(instructions(), max_size=12))
def test_every_instruction_round_trips(program) -> None:
    encoded = encode_program(tuple(program))
    assert decode_program(encoded) == tuple(program)


def test_every_opcode_is_covered_and_unique() -> None:
    assert sorted(INSTRUCTIONS) == list(range(1, len(INSTRUCTIONS) + 1))


@pytest.fixture(scope="module")
def program():
    target = load_target(DEFAULT_TARGET)
    return compile_model(
        GOLDEN / "small_conv_snn.pir", target=target, log=lambda _: None, backend=BackendOptions()
    ).program


def test_file_round_trip_is_byte_identical(program) -> None:
    data = bytecode.encode(program)
    again = bytecode.decode(data)
    assert again.content_equal(program)
    assert bytecode.encode(again) == data


def test_same_input_same_bytes(program) -> None:
    target = load_target(DEFAULT_TARGET)
    again = compile_model(
        GOLDEN / "small_conv_snn.pir",
        target=target,
        log=lambda _: None,
        backend=BackendOptions(("bytecode",)),
    )
    assert again.artefacts["bytecode"] == bytecode.encode(program)


def corrupt(data: bytes, how: str) -> bytes:
    if how == "truncated":
        return data[: len(data) // 2]
    if how == "flipped":
        return data[:100] + bytes([data[100] ^ 0x01]) + data[101:]
    if how == "version":
        return data[:8] + struct.pack("<H", 99) + data[10:]
    return b"NOTPRIME" + data[8:]


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("truncated", "checksum mismatch"),
        ("flipped", "checksum mismatch"),
        ("version", "format version 99 is not supported"),
        ("magic", "not a PRIMEPBC file"),
    ],
)
def test_bad_files(program, tmp_path: Path, how: str, message: str) -> None:
    data = corrupt(bytecode.encode(program), how)
    with pytest.raises(PrimecError, match=message):
        bytecode.decode(data)
    path = tmp_path / "bad.pbc"
    path.write_bytes(data)
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 4, 1, 4, 4), dtype=np.float32))
    report = tmp_path / "r.json"
    result = CliRunner().invoke(
        main, ["simulate", str(path), "--input", str(tmp_path / "x.npz"), "--report", str(report)]
    )
    assert result.exit_code == 2 and "error:" in result.output
    assert not report.exists()


def test_tiny_file_is_truncated_not_a_crash() -> None:
    with pytest.raises(PrimecError, match="truncated"):
        bytecode.decode(b"PRIME")


def test_disassembly_names_ir_values_and_locations(program) -> None:
    text = program.disassembly()
    assert "read dst=" in text and "@ features.conv0" in text and "lif spike_out=" in text
    assert text.splitlines()[-1].rstrip().endswith("controller")
