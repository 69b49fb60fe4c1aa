"""Data files from elsewhere: limits and checks apply before anything is decompressed or allocated."""

from __future__ import annotations

import io
import re
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from primec.archive import Limits, UntrustedZip, parse_npy, read_npz
from primec.errors import PrimecError
from primec.fileio import npy_bytes
from primec.hardware.target import BUILTIN_TARGETS, DEFAULT_TARGET, TARGET_DIR
from primec.runtime.simdata import load_inputs

SHAPE = (2, 3)


def _npz(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return path


def _x(values: float = 1.0, dtype=np.float32) -> np.ndarray:
    return np.full((2, 4, *SHAPE), values, dtype=dtype)


def _bomb_header(name: str, declared: int) -> bytes:
    """A one-member zip whose central directory declares `declared` uncompressed bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, b"\0" * 1000)
    data = bytearray(buffer.getvalue())
    central = data.rindex(b"PK\x01\x02")
    data[central + 24 : central + 28] = min(declared, 0xFFFFFFFF).to_bytes(4, "little")
    return bytes(data)


def test_unused_member_is_refused_before_it_is_read(tmp_path):
    path = _npz(tmp_path / "d.npz", [("x.npy", npy_bytes(_x())), ("junk.npy", b"\0" * 10_000_000)])
    tracemalloc.start()
    with pytest.raises(PrimecError, match="unexpected member 'junk.npy'"):
        load_inputs(path, SHAPE, 4)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 5_000_000  # the 10 MB member was never inflated


def test_declared_sizes_are_bounded_before_decompressing(tmp_path):
    path = tmp_path / "bomb.npz"
    path.write_bytes(_bomb_header("x.npy", 3 << 30))
    with pytest.raises(PrimecError, match="declares 3221225472 bytes, over the limit"):
        read_npz(path, str(path))


def test_a_member_larger_than_declared_is_cut_off():
    data = bytearray(_bomb_header("x.npy", 10))
    local = data.index(b"PK\x03\x04")
    data[local + 22 : local + 26] = (10).to_bytes(4, "little")
    with pytest.raises(PrimecError, match="inflates past its declared size|corrupted"):
        UntrustedZip(bytes(data), "mem").read("x.npy")


@pytest.mark.parametrize(
    "name",
    ["../evil.npy", "/abs.npy", "a/../../b.npy", "c:\\x.npy", "a\\b.npy"],
)
def test_unsafe_member_names_are_refused(tmp_path, name):
    path = _npz(tmp_path / "d.npz", [(name, npy_bytes(_x()))])
    with pytest.raises(PrimecError, match="not a plain relative path"):
        UntrustedZip(path, str(path))


def test_duplicate_members_are_refused(tmp_path):
    with pytest.warns(UserWarning, match="Duplicate name"):
        path = _npz(tmp_path / "d.npz", [("x.npy", npy_bytes(_x(1))), ("x.npy", npy_bytes(_x(2)))])
    with pytest.raises(PrimecError, match="member 'x.npy' appears twice"):
        load_inputs(path, SHAPE, 4)


def test_member_count_is_bounded(tmp_path):
    path = _npz(tmp_path / "d.npz", [(f"{i}.npy", b"") for i in range(20)])
    with pytest.raises(PrimecError, match="20 members, over the limit of 10"):
        UntrustedZip(path, str(path), Limits(members=10))


def _header(shape: str, descr: str = "<f4") -> bytes:
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    text += " " * (63 - len(text) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode()


@pytest.mark.parametrize(
    "header, expected",
    [
        (_header("(10**6, 10**6, 10**6)"), "not a valid .npy array"),
        (_header("(1000000, 1000000, 1000000)"), "over the limit"),
        (_header("(4,)") + b"\0" * 8, "but 8 bytes follow"),
        (_header("(2,)", "|O"), "Python objects"),
        (b"\x93NUMPY\x01\x00\x05\x00{'a'\n", "not a valid .npy array"),
        (b"\x93NUMPY\x09\x00", "not a valid .npy array"),
        (_header("(" * 3000), "not a valid .npy array"),
    ],
)
def test_npy_headers_are_checked_before_allocating(header, expected):
    with pytest.raises(PrimecError, match=expected):
        parse_npy(header, "mem")


def test_npy_round_trip_equals_numpy():
    for array in (np.arange(12, dtype=np.int16).reshape(3, 4), np.asfortranarray(np.eye(3))):
        assert np.array_equal(parse_npy(npy_bytes(array), "mem"), array)
        assert parse_npy(npy_bytes(array), "mem").dtype == array.dtype


@pytest.mark.parametrize(
    "x, expected",
    [
        (_x(-1), "value -1"),
        (_x(0.5), "value 0.5"),
        (_x(256), "value 256"),
        (_x(3e38), "value 3e+38"),
    ],
)
def test_inputs_must_be_levels_the_drivers_can_apply(tmp_path, x, expected):
    path = tmp_path / "d.npz"
    np.savez(path, x=x)
    with pytest.raises(
        PrimecError, match=r"cannot apply in 2 samples .first: sample 0, " + re.escape(expected)
    ):
        load_inputs(path, SHAPE, 4, drive=(1.0, 8))
    assert load_inputs(path, SHAPE, 4).x.shape == x.shape  # without a drive: only finiteness


def test_levels_on_a_quantum_grid(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=_x(0.75))
    assert load_inputs(path, SHAPE, 4, drive=(0.25, 2)).x.max() == 0.75
    with pytest.raises(PrimecError, match="whole number 0..1 times 0.25"):
        load_inputs(path, SHAPE, 4, drive=(0.25, 1))


def test_timedelta_inputs_are_refused(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=_x(1).astype(np.int64).astype("m8[s]"))
    with pytest.raises(PrimecError, match="dtype timedelta64"):
        load_inputs(path, SHAPE, 4)


TARGET_FILE = TARGET_DIR / BUILTIN_TARGETS[DEFAULT_TARGET]


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("voltage_v = 0.2 ", "voltage_v = nan ", "read.voltage_v: must be a finite number of V"),
        ("voltage_v = 0.2 ", "voltage_v = -0.0 ", "read.voltage_v: must be positive"),
        ("full_scale_ua = 100.0", "full_scale_ua = inf", "must be a finite number of uA"),
        ("full_scale_ua = 100.0", "full_scale_ua = 0.0", "adc.full_scale_ua: must be positive"),
        ("cols = 512 ", "cols = 513 ", "array.cols: must be even"),
        ("rows = 512 ", "rows = 65536 ", "array.rows: must be at most 4096 rows"),
        ("rows = 512 ", "rows = " + "[" * 2000 + "]" * 2000 + " ", "malformed TOML"),
    ],
)
def test_target_values_must_be_finite_and_in_range(tmp_path, old, new, message):
    from primec.hardware.target import load_target

    text = TARGET_FILE.read_text()
    assert old in text
    path = tmp_path / "t.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(PrimecError, match=re.escape(message)):
        load_target(path)


def test_target_file_that_is_not_text(tmp_path):
    from primec.hardware.target import load_target

    path = tmp_path / "t.toml"
    path.write_bytes(TARGET_FILE.read_bytes().replace(b"rows", b"r\x80ws", 1))
    with pytest.raises(PrimecError, match="not UTF-8 text"):
        load_target(path)


GOLDEN_OPS = Path(__file__).resolve().parent / "golden/ir/ops"


@pytest.mark.parametrize(
    "file, old, new, message",
    [
        ("pools.pir", "stride = [2, 2]", "stride = [0, 0]", "stride must be 2 integers >= 1"),
        ("conv2d.pir", "stride = [", "stride = [0, ", "stride must be 2 integers >= 1"),
        ("pools.pir", "stride = [2, 2]", "stride = [2]", "stride must be 2 integers >= 1"),
        (
            "pools.pir",
            "padding = [1, 1]",
            "padding = " + "[" * 500 + "]" * 500,
            "nested deeper than 64",
        ),
        ("pools.pir", "padding = [1, 1]", "padding = [1, " + "9" * 5000 + "]", "longer than 64"),
        ("pools.pir", "padding = [1, 1]", "padding = [1, 1e999]", "out of range"),
        ("pools.pir", 'loc("max")', 'loc("\\q")', "invalid string"),
    ],
)
def test_malformed_ir_gets_one_clear_error(tmp_path, file, old, new, message):
    from primec.core.text import read_graph_file
    from primec.core.verify import verify

    text = (GOLDEN_OPS / file).read_text()
    assert old in text
    path = tmp_path / file
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(PrimecError, match=re.escape(message)):
        graph, lines, _ = read_graph_file(path)
        verify(graph, lines, str(path))


def test_ir_timesteps_must_be_an_integer(tmp_path):
    from primec.core.text import read_graph_file
    from primec.core.verify import verify

    path = tmp_path / "t.pir"
    text = (GOLDEN_OPS.parent / "small_conv_snn.pir").read_text()
    assert "meta timesteps = 4" in text
    path.write_text(text.replace("meta timesteps = 4", "meta timesteps = 10.5"))
    graph, lines, _ = read_graph_file(path)
    with pytest.raises(PrimecError, match="graph meta timesteps must be an integer 1..1048576"):
        verify(graph, lines, str(path))
