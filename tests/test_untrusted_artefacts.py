"""Artefacts from elsewhere: semantic checks on well-formed files (checksums fixed up), the same
for .pbc and .pmac, each with one clear error, before anything runs or is allocated."""

from __future__ import annotations

import hashlib
import io
import json
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from primec.backends import bytecode, macrofile
from primec.backends.container import json_bytes, pack, read_tensors, tensors_bytes, unpack

from primec.cli import main
from primec.datasets import save_npz
from primec.fileio import npy_bytes, zip_bytes

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "primec/models/prime_nmnist_classification.pt"
RULE = ("--exit-rule", "max-softmax", "--exit-threshold", "0.8", "--exit-temperature", "2")


def invoke(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("artefacts")
    paths = {"pmac": folder / "m.pmac", "pbc": folder / "m.pbc"}
    for kind, emit in (("pmac", "macro"), ("pbc", "bytecode")):
        result = invoke("compile", MODEL, "--emit", emit, "-o", paths[kind], *RULE)
        assert result.exit_code == 0, result.output
    rng = np.random.default_rng(0)
    save_npz(folder / "data.npz", rng.poisson(0.3, (3, 10, 2, 34, 34)), rng.integers(0, 10, 3))
    paths["data"] = folder / "data.npz"
    return paths


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def pmac_edit(edit: Callable[[dict[str, bytes], dict], None]) -> Callable[[bytes], bytes]:
    """Edit members and manifest; every checksum is fixed up, so only semantics can catch it."""

    def corrupt(data: bytes) -> bytes:
        members = _members(data)
        manifest = json.loads(members.pop("manifest.json"))
        edit(members, manifest)
        manifest["checksums"] = {n: hashlib.sha256(d).hexdigest() for n, d in members.items()}
        members["manifest.json"] = json.dumps(manifest, indent=1, sort_keys=True).encode()
        return zip_bytes(members)

    return corrupt


def cells(change: Callable[[np.ndarray], None]) -> Callable[[dict, dict], None]:
    def edit(members: dict, manifest: dict) -> None:
        name = "arrays/m0.a0.conductance_us.npy"
        array = np.load(io.BytesIO(members[name])).copy()
        change(array)
        members[name] = npy_bytes(array)

    return edit


def _kept_pair(array: np.ndarray) -> tuple[int, int]:
    row, col = np.argwhere(array[:, 0::2] != array[:, 1::2])[0]
    return int(row), int(2 * col)


def nan_in_kept_pair(array: np.ndarray) -> None:
    array[_kept_pair(array)] = np.nan


def negative_in_kept_pair(array: np.ndarray) -> None:
    array[_kept_pair(array)] = -1.0


def first(manifest: dict, op: str) -> dict:
    return next(i for i in manifest["schedule"] if i["op"] == op)


SEMANTIC = {
    "NaN conductance in a kept pair": (
        cells(nan_in_kept_pair),
        "conductances must be finite and non-negative",
    ),
    "negative conductance": (cells(negative_in_kept_pair), "must be finite and non-negative"),
    "conductance above the target's g_max (100 uS)": (
        cells(lambda array: array.__setitem__(_kept_pair(array), 150.0)),
        "a conductance of 150 uS is above the target's cells.g_max_us (100 uS)",
    ),
    "conductance of 1e300 uS": (
        cells(lambda array: array.__setitem__(_kept_pair(array), 1e300)),
        "a conductance of 1e+300 uS is above the target's cells.g_max_us",
    ),
    "unknown reset mode": (
        lambda m, mf: mf["neurons"][0].update(reset="explode"),
        "neuron record 0 field 'reset' must be one of",
    ),
    "keep = NaN": (
        lambda m, mf: mf["neurons"][0].update(keep=float("nan")),
        "neuron record 0 field 'keep' must be finite",
    ),
    "threshold = true": (
        lambda m, mf: mf["neurons"][0].update(threshold=True),
        "neuron record 0 field 'threshold' must be float, got True",
    ),
    "exit temperature = inf": (
        lambda m, mf: mf["early_exit"].update(temperature=float("inf")),
        "early-exit table field temperature must be a finite float, got inf",
    ),
    "exit threshold = true": (
        lambda m, mf: mf["early_exit"].update(threshold=True),
        "early-exit table field threshold must be a finite float, got True",
    ),
    "per-step exit thresholds, 3 for 10 steps": (
        lambda m, mf: mf["early_exit"].update(thresholds=[0.5] * 3, version=2),
        "early-exit table: early-exit table has 3 per-step thresholds for 10 timesteps",
    ),
    "per-step exit threshold = inf": (
        lambda m, mf: mf["early_exit"].update(rule="lead", thresholds=[1e9] * 9 + [float("inf")]),
        "early-exit table field thresholds must be a list of finite floats",
    ),
    "exit stable = true": (
        lambda m, mf: mf["early_exit"].update(stable=True, version=2),
        "early-exit table field stable must be an int, got True",
    ),
    "exit table version 3": (
        lambda m, mf: mf["early_exit"].update(version=3),
        "early-exit table version 3 is not one this primec reads",
    ),
    "manifest ADC bits not the target's": (
        lambda m, mf: mf["adc"].update(bits=4),
        "manifest adc is",
    ),
    "write-verify tolerance not the target's": (
        lambda m, mf: mf.update(write_verify_tolerance_us=9.0),
        "manifest write_verify_tolerance_us is 9.0",
    ),
    "10^9 bit planes": (
        lambda m, mf: first(mf, "read").update(planes=10**9),
        "needs 1..32 bit planes",
    ),
    "pool stride 0": (
        lambda m, mf: first(mf, "pool").update(stride=[0, 0]),
        "stride must be 2 integers in 1..",
    ),
    "target ADC bits of 0": (
        lambda m, mf: mf["program"]["meta"]["target_parameters"].update({"adc.bits": 0}),
        "target parameter adc.bits must be at least 1",
    ),
    "layer table without the read's layer": (
        lambda m, mf: mf["program"]["meta"].update(layers=[]),
        "belongs to no layer",
    ),
    "a LIF pointed at the integrator's record": (
        lambda m, mf: first(mf, "lif").update(params=first(mf, "integrate")["params"]),
        "lacks threshold",
    ),
    "a second step input": (
        lambda m, mf: mf["program"].update(inputs=[*mf["program"]["inputs"], 1]),
        "the program has 2 step inputs",
    ),
}


@pytest.mark.parametrize("case", sorted(SEMANTIC))
def test_semantically_bad_pmac_is_refused(files, tmp_path, case):
    edit, message = SEMANTIC[case]
    bad = tmp_path / "bad.pmac"
    bad.write_bytes(pmac_edit(edit)(files["pmac"].read_bytes()))
    for command in (("check", bad), ("simulate", bad, "--input", files["data"])):
        result = invoke(*command)
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert result.output.count("error:") == 1 and "Traceback" not in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["bad.pmac"]


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def test_two_manifests_are_refused(files):
    members = _members(files["pmac"].read_bytes())
    evil = json.loads(members["manifest.json"])
    evil["adc"]["bits"] = 4
    with pytest.warns(UserWarning):
        data = _zip([("manifest.json", json.dumps(evil).encode()), *members.items()])
    with pytest.raises(macrofile.MacroFileError, match="'manifest.json' appears twice"):
        macrofile.decode(data)


def test_member_outside_the_archive_is_refused(files):
    members = _members(files["pmac"].read_bytes())
    data = _zip([*members.items(), ("../../etc/evil.npy", b"x")])
    with pytest.raises(macrofile.MacroFileError, match="not a plain relative path"):
        macrofile.decode(data)


def test_unlisted_member_is_refused_before_it_is_inflated(files):
    members = _members(files["pmac"].read_bytes())
    data = _zip([*members.items(), ("bomb.npy", b"\0" * (64 << 20))])
    assert len(data) < 1 << 20  # 64 MiB of zeros deflate to a few hundred KiB
    tracemalloc.start()
    with pytest.raises(macrofile.MacroFileError, match="member bomb.npy is not listed"):
        macrofile.decode(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 32 << 20


# ---- the same validator for .pbc -----------------------------------------------------------


def pbc_edit(tag: bytes, edit: Callable[[object], object]) -> Callable[[bytes], bytes]:
    """Decode one JSON section, edit it, re-pack (the container checksum is recomputed)."""

    def corrupt(data: bytes) -> bytes:
        sections = unpack(data, bytecode.MAGIC, bytecode.VERSION, "test")
        sections[tag] = json_bytes(edit(json.loads(sections[tag])))
        return pack(bytecode.MAGIC, bytecode.VERSION, list(sections.items()))

    return corrupt


def _set(record: dict, **fields) -> dict:
    record.update(fields)
    return record


def _neuron(records: list, **fields) -> list:
    records[0].update(fields)
    return records


def _debug_value(entries: list) -> list:
    entries[0][0] = 256
    return entries


def pbc_cells(value: float) -> Callable[[bytes], bytes]:
    """One cell of the first array set to value (the container checksum is recomputed)."""

    def corrupt(data: bytes) -> bytes:
        sections = unpack(data, bytecode.MAGIC, bytecode.VERSION, "test")
        arrays = read_tensors(sections[b"COND"], "test")
        first_array = next(iter(arrays))
        arrays[first_array] = arrays[first_array].copy()
        arrays[first_array][0, 0] = value
        sections[b"COND"] = tensors_bytes(arrays)
        return pack(bytecode.MAGIC, bytecode.VERSION, list(sections.items()))

    return corrupt


def _graph_meta(header: dict, **fields) -> dict:
    header["meta"]["graph_meta"].update(fields)
    return header


PBC = {
    "conductance of 1e300 uS": (
        pbc_cells(1e300),
        "a conductance of 1e+300 uS is above the target's cells.g_max_us (100 uS)",
    ),
    "negative read cycles per step": (
        pbc_edit(b"META", lambda h: _graph_meta(h, read_cycles_per_timestep=-5)),
        "graph_meta.read_cycles_per_timestep must be an integer >= 0, got -5",
    ),
    "reserved header bytes not 0 (outside the checksum)": (
        lambda data: data[:10] + b"\x01\x00" + data[12:],
        "header bytes 10-11 (reserved) hold 1, not 0",
    ),
    "exit temperature = inf": (
        pbc_edit(b"EXIT", lambda t: _set(t, temperature=float("inf"))),
        "early-exit table field temperature must be a finite float",
    ),
    "per-step exit thresholds, 3 for 10 steps": (
        pbc_edit(b"EXIT", lambda t: _set(t, thresholds=[0.5] * 3, version=2)),
        "early-exit table: early-exit table has 3 per-step thresholds for 10 timesteps",
    ),
    "per-step exit threshold = true": (
        pbc_edit(b"EXIT", lambda t: _set(t, thresholds=[True] * 10, version=2)),
        "early-exit table field thresholds must be a list of finite floats",
    ),
    "exit stable = 2.0": (
        pbc_edit(b"EXIT", lambda t: _set(t, stable=2.0, version=2)),
        "early-exit stable must be an integer >= 1, got 2.0",
    ),
    "keep = NaN": (
        pbc_edit(b"NEUR", lambda n: _neuron(n, keep=float("nan"))),
        "field 'keep' must be finite",
    ),
    "debug value not a string": (
        pbc_edit(b"DBUG", _debug_value),
        "debug entry 0 must be three strings",
    ),
    "header that is not an object": (pbc_edit(b"META", lambda h: [h]), "malformed bytecode"),
    "exit table that is a list": (pbc_edit(b"EXIT", lambda t: [t]), "malformed bytecode"),
    "timesteps 10.5": (
        pbc_edit(b"META", lambda h: _set(h, timesteps=10.5)),
        "timesteps must be an integer",
    ),
}


@pytest.mark.parametrize("case", sorted(PBC))
def test_semantically_bad_pbc_is_refused(files, tmp_path, case):
    corrupt, message = PBC[case]
    bad = tmp_path / "bad.pbc"
    bad.write_bytes(corrupt(files["pbc"].read_bytes()))
    for command in (("check", bad), ("inspect", bad), ("simulate", bad, "--input", files["data"])):
        result = invoke(*command)
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert result.output.count("error:") == 1 and "Traceback" not in result.output


def test_duplicate_sections_are_refused(files):
    sections = unpack(files["pbc"].read_bytes(), bytecode.MAGIC, bytecode.VERSION, "test")
    items = list(sections.items())
    data = pack(bytecode.MAGIC, bytecode.VERSION, [*items, (b"EXIT", b"null")])
    with pytest.raises(Exception, match="section b'EXIT' appears twice"):
        bytecode.decode(data)


def test_pir_with_a_state_line_deleted_does_not_compile(files, tmp_path):
    result = invoke("compile", MODEL, "--stop-after", "import", "--dump-dir", tmp_path / "ir")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "ir/00-import.pir").read_text()
    lines = text.splitlines()
    state = next(n for n, line in enumerate(lines) if line.strip().startswith("state "))
    (tmp_path / "cut.pir").write_text("\n".join(lines[:state] + lines[state + 1 :]) + "\n")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "ir/00-import.npz").read_bytes())
    out = tmp_path / "cut.pbc"
    result = invoke("compile", tmp_path / "cut.pir", "--emit", "bytecode", "-o", out)
    assert result.exit_code == 2, result.output
    assert "step inputs; the macro takes exactly one (is a state missing?)" in result.output
    assert not out.exists()


def test_check_and_inspect_go_by_the_magic_as_simulate_does(files, tmp_path):
    """A bytecode file under another name is what `simulate` runs: `check` and `inspect` say
    what it is, whatever its suffix."""
    for name in ("model.txt", "model.pmac"):
        renamed = tmp_path / name
        renamed.write_bytes(files["pbc"].read_bytes())
        result = invoke("check", renamed)
        assert result.exit_code == 0 and result.output.startswith("ok: pbc artefact"), result.output
        described = invoke("inspect", renamed)
        assert described.exit_code == 0 and described.output.startswith("bytecode "), described
        assert invoke("simulate", renamed, "--input", files["data"]).exit_code == 0


def test_calibrate_adc_refuses_an_output_of_the_other_format_or_a_folder(files, tmp_path):
    for output, message in (
        (tmp_path / "cal.pmac", "names a .pmac file, and the calibrated artefact is a .pbc"),
        (f"{tmp_path / 'folder'}/", "names a folder"),
    ):
        result = invoke("calibrate-adc", files["pbc"], "--input", files["data"], "-o", output)
        assert result.exit_code == 2 and message in result.output, result.output
        assert result.output.count("error:") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []
