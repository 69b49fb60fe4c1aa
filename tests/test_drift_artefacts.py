"""The drift model travels in the artefacts: a custom target's `[drift]` table is written into
both artefacts when compiled, `--age` ages the chip by the artefact's own parameters (checked
against the conductance shift computed by hand, with the target file gone), old artefacts
without it fall back to the named target, and malformed drift entries are refused with one
clear error by every reader.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from primec.backends import BACKENDS, bytecode, read_artefact
from primec.backends.container import pack, unpack
from primec.backends.program import Program
from primec.backends.simulator import Noise, Simulator
from released import RELEASED, single_thread

from primec.cli import main
from primec.datasets import load_split
from primec.errors import PrimecError
from primec.hardware.target import DEFAULT_TARGET, TARGET_DIR, load_target
from primec.runtime.simulation import drift_model

# A custom target's drift: no spread, so the aged conductance is exactly
# max(gain g + mean_log ln t, g_min).
CUSTOM = {"gain": 0.9, "mean_log_us": -0.5, "std_log_us": 0.0, "std_us": 0.0, "g_min_us": 1.0}
AGE = 3600.0


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    yield from single_thread()


def invoke(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def custom_target(folder: Path, drift: dict[str, float]) -> Path:
    """The default target as a file named `custom-drift`, with `drift` as its [drift] table."""
    text = (TARGET_DIR / f"{DEFAULT_TARGET}.toml").read_text()
    start, end = text.index("[drift]"), text.index("[adc]")
    table = "[drift]\n" + "".join(f"{k} = {v!r}\n" for k, v in drift.items()) + "\n"
    text = text[:start] + table + text[end:]
    text = text.replace(f'name = "{DEFAULT_TARGET}"', 'name = "custom-drift"', 1)
    path = folder / "custom-drift.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, Path]:
    """The released classifier compiled for the custom target, both artefacts; then the target
    file is deleted, so only the artefacts know its drift."""
    folder = tmp_path_factory.mktemp("drift")
    target = custom_target(folder, CUSTOM)
    out = {"pbc": folder / "m.pbc", "pmac": folder / "m.pmac"}
    for kind, emit in (("pbc", "bytecode"), ("pmac", "macro")):
        args = ("compile", RELEASED, "--arch", "prime-nmnist", "--target", target)
        result = invoke(*args, "--emit", emit, "-o", out[kind])
        assert result.exit_code == 0, result.output
    target.unlink()
    np.savez(folder / "d.npz", x=load_split("test")[0][:2].astype(np.float32))
    out["data"] = folder / "d.npz"
    return out


@pytest.mark.parametrize("kind", ["pbc", "pmac"])
def test_both_artefacts_carry_the_custom_drift_table(compiled, kind: str) -> None:
    program = read_artefact(compiled[kind])
    entry = program.meta["drift"]
    assert program.meta["target"] == "custom-drift" and entry["target"] == "custom-drift"
    assert entry["parameters"] == CUSTOM and entry["reference_time_s"] == 1.0
    assert set(entry["provenance"]) == set(CUSTOM)
    spec = drift_model(program)  # from the artefact: the target file is gone
    assert {k: getattr(spec, k) for k in CUSTOM} == CUSTOM


def test_inspect_shows_the_artefacts_drift_model(compiled) -> None:
    result = invoke("inspect", compiled["pmac"])
    assert result.exit_code == 0, result.output
    assert "drift model of custom-drift: g_min_us 1, gain 0.9, mean_log_us -0.5," in result.output


def test_the_builtin_targets_provenance_travels(tmp_path: Path) -> None:
    from primec.hardware.driftmodel import drift_entry

    entry = drift_entry(load_target(DEFAULT_TARGET))
    assert entry["provenance"]["mean_log_us"].startswith("fact: IBM aihwkit")
    assert entry["parameters"]["std_us"] == 0.41183342


@pytest.mark.parametrize("kind", ["pbc", "pmac"])
def test_an_artefact_ages_by_its_own_parameters(compiled, kind: str) -> None:
    program = read_artefact(compiled[kind])
    simulator = Simulator(program, Noise(age=AGE, seed=3), drift=drift_model(program))
    for key, programmed in program.arrays.items():
        by_hand = np.maximum(0.9 * programmed - 0.5 * math.log(AGE), 1.0)
        np.testing.assert_array_equal(simulator.cells[0][key], by_hand)
    # The default target's model (aihwkit's fit, with spread) ages the same cells otherwise.
    default = Simulator(program, Noise(age=AGE, seed=3), drift=load_target(DEFAULT_TARGET).drift)
    key = next(iter(program.arrays))
    assert not np.array_equal(default.cells[0][key], simulator.cells[0][key])


def test_simulate_reports_the_age_compensation_and_model(compiled, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    args = ("simulate", compiled["pmac"], "--input", compiled["data"], "--no-statistical-energy")
    result = invoke(*args, "--age", "1h", "--drift-comp", "column", "--report", report)
    assert result.exit_code == 0, result.output
    assert "age 1h, compensation column, model from the artefact" in result.output
    drift = json.loads(report.read_text())["drift"]
    assert drift["age_s"] == AGE and drift["compensation"] == "column"
    assert drift["model"] == CUSTOM and drift["model_source"] == "the artefact"


def without_drift(program: Program) -> Program:
    meta = {k: v for k, v in program.meta.items() if k != "drift"}
    return replace(program, meta=meta)


def test_an_old_artefact_falls_back_to_its_named_target(compiled) -> None:
    program = read_artefact(compiled["pbc"])
    old = without_drift(program)
    assert "drift" not in BACKENDS["bytecode"].decode(BACKENDS["bytecode"].encode(old)).meta
    # Its target, custom-drift, cannot be loaded by name any more: one clear refusal.
    with pytest.raises(PrimecError, match="needs the drift model of target 'custom-drift'"):
        drift_model(old)
    renamed = replace(old, meta=old.meta | {"target": DEFAULT_TARGET})
    assert drift_model(renamed) == load_target(DEFAULT_TARGET).drift


def meta_edit(edit: Callable[[dict], object]) -> Callable[[bytes], bytes]:
    """Re-pack a .pbc with its META's drift entry edited (NaN allowed in the JSON)."""

    def corrupt(data: bytes) -> bytes:
        sections = unpack(data, bytecode.MAGIC, bytecode.VERSION, "test")
        header = json.loads(sections[b"META"])
        edit(header["meta"]["drift"])
        sections[b"META"] = json.dumps(header, sort_keys=True).encode()
        return pack(bytecode.MAGIC, bytecode.VERSION, list(sections.items()))

    return corrupt


BAD = {
    "negative std": (
        lambda d: d["parameters"].update(std_us=-0.1),
        "drift parameter std_us must be at least 0.0",
    ),
    "NaN": (
        lambda d: d["parameters"].update(mean_log_us=float("nan")),
        "drift parameter mean_log_us must be a finite number",
    ),
    "string": (
        lambda d: d["parameters"].update(gain="0.9"),
        "drift parameter gain must be a number, got str",
    ),
    "zero gain": (lambda d: d["parameters"].update(gain=0.0), "gain must be positive"),
    "missing key": (
        lambda d: d["parameters"].pop("g_min_us"),
        "drift parameters must be an object with keys",
    ),
    "reference time": (lambda d: d.update(reference_time_s=60.0), "reference_time_s must be 1.0"),
    "provenance": (lambda d: d["provenance"].update(gain=3), "provenance of gain must be a string"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_drift_entries_are_refused(compiled, tmp_path: Path, case: str) -> None:
    edit, message = BAD[case]
    bad = tmp_path / "bad.pbc"
    bad.write_bytes(meta_edit(edit)(compiled["pbc"].read_bytes()))
    for command in (("check", bad), ("simulate", bad, "--input", compiled["data"], "--age", "1h")):
        result = invoke(*command)
        assert result.exit_code == 2, result.output
        assert message in result.output, result.output
        assert result.output.count("error:") == 1 and "Traceback" not in result.output


def test_the_encoders_refuse_a_malformed_drift_entry(compiled) -> None:
    program = read_artefact(compiled["pbc"])
    entry = json.loads(json.dumps(program.meta["drift"]))
    entry["parameters"]["std_log_us"] = -1.0
    broken = replace(program, meta=program.meta | {"drift": entry})
    for name in ("bytecode", "macro"):
        with pytest.raises(PrimecError, match="drift parameter std_log_us must be at least 0.0"):
            BACKENDS[name].encode(broken)


def test_the_target_hash_covers_the_drift_table(compiled, tmp_path: Path) -> None:
    """Two targets that differ only in their drift model get different hashes; a target without
    a drift table keeps the hash of its parameters alone (the bytes of its artefacts hold)."""
    from primec.backends.program import target_hash

    other = custom_target(tmp_path, CUSTOM | {"gain": 0.8})
    out = tmp_path / "other.pbc"
    args = ("compile", RELEASED, "--arch", "prime-nmnist", "--target", other, "--emit", "bytecode")
    args = (*args, "-o", out)
    assert invoke(*args).exit_code == 0
    mine, theirs = read_artefact(compiled["pbc"]).meta, read_artefact(out).meta
    assert mine["target_parameters"] == theirs["target_parameters"]
    assert mine["target_hash"] != theirs["target_hash"]
    text = other.read_text()
    start, end = text.index("[drift]"), text.index("[adc]")
    other.write_text(text[:start] + text[end:])
    result = invoke(*args, "--force")
    assert result.exit_code == 0, result.output
    plain = read_artefact(out).meta
    assert "drift" not in plain
    assert plain["target_hash"] == target_hash(plain["target_parameters"])
