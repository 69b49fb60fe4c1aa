"""Target files: the default target is complete and annotated; bad files name the key and problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from primec.errors import PrimecError
from primec.hardware.target import DEFAULT_TARGET, TARGET_DIR, load_target, target_names

DEFAULT_FILE = TARGET_DIR / "prime-40nm-256k.toml"


def test_default_target_is_the_published_macro() -> None:
    target = load_target(DEFAULT_TARGET)
    assert target_names() == [DEFAULT_TARGET]
    assert target.process_nm == 40
    assert target.cells_per_array * target.chip.arrays_per_macro == 256 * 1024
    assert target.cells.encoding == "differential"


def test_every_default_parameter_says_where_it_comes_from() -> None:
    target = load_target(DEFAULT_TARGET)
    notes = dict(target.provenance)
    rows = target.parameters() + target.optional_parameters()
    keys = ["target.process_nm", *(key for key, _, _ in rows)]
    assert sorted(notes) == sorted(keys)
    kinds = {note.split(":")[0] for note in notes.values()}
    assert kinds <= {"fact", "assumption", "derived", "estimate"}  # no placeholder left
    # Every estimate, and only an estimate, is bounded (low <= value <= high).
    values = {key: value for key, value, _ in target.parameters()}
    bounded = {key: (low, high) for key, low, high in target.estimates}
    assert sorted(bounded) == sorted(k for k in notes if notes[k].startswith("estimate:"))
    assert all(low <= values[k] <= high for k, (low, high) in bounded.items())


def edited(tmp_path: Path, old: str, new: str) -> Path:
    """The default target file with one line changed."""
    text = DEFAULT_FILE.read_text()
    assert old in text
    path = tmp_path / "edited.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    "old,new,message",
    [
        ("rows = 512 ", "rows = 0 ", "array.rows: must be at least 1 rows, got 0"),
        ("cols = 512 ", 'cols = "wide" ', "array.cols: must be an integer, got str 'wide'"),
        ("macros = 64 ", "macroz = 64 ", "chip.macroz: unknown key \\(did you mean 'macros'\\?\\)"),
        ("bits = 8 ", "", "input.bits: missing key \\(int\\)"),
        (
            'encoding = "differential"',
            'encoding = "single"',
            "cells.encoding: must be one of differential",
        ),
        ("read_noise = 0.01", "read_noise = 1.5", "cells.read_noise: must be below 1.0"),
        ("g_max_us = 100.0", "g_max_us = 0.1", "cells.g_max_us: must exceed cells.g_off_us"),
        ("[adc]", "[adc\n", "malformed TOML"),
        (
            "[baseline]",
            "[baselines]",
            "\\[baselines\\]: unknown key \\(did you mean 'baseline'\\?\\)",
        ),
        (
            '"array.rows" = "assumption',
            '"array.rows" = "guess',
            "provenance.array.rows: must start",
        ),
    ],
)
def test_malformed_target_files_name_the_key_and_problem(tmp_path, old, new, message) -> None:
    with pytest.raises(PrimecError, match=message) as info:
        load_target(edited(tmp_path, old, new))
    assert str(tmp_path / "edited.toml") in str(info.value)


def test_unknown_target_name_lists_the_known_ones() -> None:
    with pytest.raises(PrimecError, match="unknown target 'prime-40nm'") as info:
        load_target("prime-40nm")
    assert "did you mean 'prime-40nm-256k'" in str(info.value)
    assert "known targets: prime-40nm-256k" in str(info.value)


def test_missing_target_file() -> None:
    with pytest.raises(PrimecError, match="cannot read target file"):
        load_target("no/such/chip.toml")
