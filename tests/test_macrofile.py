"""The macro programming file (.pmac) of the released PRIME classifier: round trip and
determinism, standard tools, `inspect` and `check`, pair operations and maps against the
released weights, identical simulation to the bytecode, and one clear error per corruption."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import prime_reference
import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from isa_strategies import instruction_of
from primec.backends import bytecode, macrofile
from primec.backends.isa import INSTRUCTIONS, Read
from primec.backends.macrofile import codec

from primec.cli import main
from primec.datasets import save_npz
from primec.fileio import npy_bytes, zip_bytes

MODEL = Path(__file__).resolve().parents[1] / "primec" / "models" / "prime_nmnist_classification.pt"
PROGRAMMED_MODEL = Path(__file__).parent / "golden" / "ir" / "small_conv_snn.pir"
PRIME_RULE_FLAGS = (
    "--exit-rule",
    "max-softmax",
    "--exit-threshold",
    "0.8",
    "--exit-temperature",
    "2",
)
KEPT = {"features.conv0": 300, "features.conv1": 9600, "classifier.linear0": 11520}
NOISE = "program=0.05,read=0.02,stuck=0.001,adc=8,input=8"
TIMING_KEYS = ("seconds", "throughput_samples_per_s")


def invoke(*args: object) -> Result:
    """Run the CLI in-process."""
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The released classifier compiled twice to .pmac and once to .pbc, with PRIME's rule."""
    folder = tmp_path_factory.mktemp("artefacts")
    paths = {"pmac": folder / "m.pmac", "again": folder / "again.pmac", "pbc": folder / "m.pbc"}
    for name, emit in (("pmac", "macro"), ("again", "macro"), ("pbc", "bytecode")):
        result = invoke("compile", MODEL, "--emit", emit, "-o", paths[name], *PRIME_RULE_FLAGS)
        assert result.exit_code == 0, result.output
    return paths


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few samples of sparse event counts with labels (any valid input serves here)."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "data.npz"
    save_npz(path, rng.poisson(0.3, (6, 10, 2, 34, 34)), rng.integers(0, 10, 6))
    return path


@pytest.mark.parametrize("cls", sorted(INSTRUCTIONS.values(), key=lambda c: c.OPCODE))
def test_every_instruction_round_trips_through_json(cls) -> None:
    @settings(max_examples=60, deadline=None)
    @given(instruction_of(cls))
    def round_trip(instr) -> None:
        record = json.loads(json.dumps(codec.instruction_json(instr)))
        assert codec.instruction(0, record, "<test>") == instr

    round_trip()


def test_round_trip_is_byte_identical(files: dict[str, Path], tmp_path: Path) -> None:
    original = files["pmac"].read_bytes()
    program = macrofile.read(files["pmac"])
    macrofile.validate(program, "round trip")
    macrofile.write(program, tmp_path / "rewritten.pmac")
    assert (tmp_path / "rewritten.pmac").read_bytes() == original
    assert macrofile.decode(original).content_equal(program)


def test_same_inputs_same_bytes(files: dict[str, Path]) -> None:
    assert files["pmac"].read_bytes() == files["again"].read_bytes()


def test_readable_with_zipfile_and_numpy(files: dict[str, Path]) -> None:
    with zipfile.ZipFile(files["pmac"]) as archive:
        assert archive.testzip() is None
        members = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(members.pop("manifest.json"))
    assert (manifest["format"], manifest["version"]) == ("primec-macro", 1)
    assert sorted(manifest["checksums"]) == sorted(members)
    for name, content in members.items():
        assert hashlib.sha256(content).hexdigest() == manifest["checksums"][name]
        np.load(io.BytesIO(content), allow_pickle=False)
    (array,) = manifest["arrays"]
    cells = np.load(io.BytesIO(members[f"{array['prefix']}.conductance_us.npy"]))
    pairs = np.load(io.BytesIO(members[f"{array['prefix']}.pairs.npy"]))
    assert cells.shape == (512, 512) and cells.dtype == np.float64
    assert pairs.shape == (512, 256) and pairs.dtype == np.uint8
    assert manifest["early_exit"]["rule"] == "max-softmax"
    assert manifest["adc"] == {"bits": 8, "full_scale_ua": 100.0, "read_voltage_v": 0.2}


def test_inspect_summarises_arrays_pairs_layers_and_exit_table(files: dict[str, Path]) -> None:
    result = invoke("inspect", files["pmac"])
    assert result.exit_code == 0, result.output
    for text in (
        "macro 0 array 0: keep 21,420, reset 21,420, program 0",
        "layer features.conv0: conv2d as_formed, drive bit_serial x8",
        "pairs keep 300, reset 300, program 0",
        "pairs keep 9,600, reset 9,600, program 0",
        "pairs keep 11,520, reset 11,520, program 0",
        "ADC 8 bits",
        "early exit: max-softmax, threshold 0.8, temperature 2, min steps 1, max steps T",
        "tile reads",
    ):
        assert text in result.output


def test_check_says_ok(files: dict[str, Path]) -> None:
    result = invoke("check", files["pmac"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: pmac artefact")


def matrix_weights(layer: str) -> tuple[np.ndarray, np.ndarray]:
    """A layer's released weight and keep mask as its crossbar matrix [rows, outputs] (im2col order)."""
    released = prime_reference.load_released()
    weight = released[f"{layer}.weight"].double()
    mask = prime_reference.keep_mask(released[f"{layer}.scores"])
    return (
        weight.reshape(weight.shape[0], -1).T.numpy(),
        mask.reshape(mask.shape[0], -1).T.numpy(),
    )


def test_pairs_and_maps_match_the_released_weights(files: dict[str, Path]) -> None:
    """As formed: exactly the kept synapses are kept pairs holding their weight, every pruned one
    is reset (both cells at g_off), nothing is programmed and no pulse is planned."""
    program = macrofile.read(files["pmac"])
    off = program.meta["target_parameters"]["cells.g_off_us"]
    operations = macrofile.pair_operations(program)
    assert set(np.unique(operations[(0, 0)])) == {
        macrofile.PAIR_UNUSED,
        macrofile.PAIR_KEEP,
        macrofile.PAIR_RESET,
    }
    layer_of = {layer["value"]: layer["layer"] for layer in program.meta["layers"]}
    counts = {layer_of[value]: pairs for value, pairs in macrofile.layer_pairs(program).items()}
    assert counts == {
        name: {"unused": 0, "keep": n, "reset": n, "program": 0} for name, n in KEPT.items()
    }
    matrices = {name: matrix_weights(name) for name in KEPT}
    for index, read in enumerate(program.instrs):
        if not isinstance(read, Read):
            continue
        weight, mask = matrices[layer_of[program.debug[index].value]]
        rows, cols = program.tensors[read.rows], program.tensors[read.cols]
        tile = np.ix_(rows, cols)
        cells = program.arrays[(read.macro, read.array)][read.row0 : read.row0 + len(rows)]
        g_pos = cells[:, read.col0 : read.col0 + 2 * len(cols) : 2]
        g_neg = cells[:, read.col0 + 1 : read.col0 + 2 * len(cols) : 2]
        codes = operations[(read.macro, read.array)][
            read.row0 : read.row0 + len(rows), read.col0 // 2 : read.col0 // 2 + len(cols)
        ]
        assert np.array_equal(
            codes, np.where(mask[tile], macrofile.PAIR_KEEP, macrofile.PAIR_RESET)
        )
        np.testing.assert_allclose(
            (g_pos - g_neg)[mask[tile]], weight[tile][mask[tile]], rtol=0, atol=1e-12
        )
        assert np.all(g_pos[~mask[tile]] == off) and np.all(g_neg[~mask[tile]] == off)
    params = program.meta["target_parameters"]
    assert not macrofile.estimated_pulses(program.arrays[(0, 0)], operations[(0, 0)], params).any()


def test_programmed_pairs_get_targets_and_pulses(tmp_path: Path) -> None:
    path = tmp_path / "programmed.pmac"
    result = invoke("compile", PROGRAMMED_MODEL, "--emit", "macro", "-o", path)
    assert result.exit_code == 0, result.output
    program = macrofile.read(path)
    params = program.meta["target_parameters"]
    (key,) = program.arrays
    operations, cells = macrofile.pair_operations(program)[key], program.arrays[key]
    assert {layer["mode"] for layer in program.meta["layers"]} == {"programmed"}
    assert (operations == macrofile.PAIR_PROGRAM).sum() > 0 and not (
        operations == macrofile.PAIR_KEEP
    ).any()
    programmed = np.repeat(operations == macrofile.PAIR_PROGRAM, 2, axis=1)
    steps = (
        np.abs(cells - params["cells.formed_mean_us"]) / params["cells.write_verify_tolerance_us"]
    )
    pulses = macrofile.estimated_pulses(cells, operations, params)
    assert (
        np.array_equal(pulses[programmed], np.ceil(steps[programmed]))
        and not pulses[~programmed].any()
    )
    assert macrofile.encode(program) == path.read_bytes()


def simulate_both(
    files: dict[str, Path], data: Path, folder: Path, *flags: str
) -> list[tuple[dict, dict]]:
    """Per artefact: the per-sample outputs and the report (minus timing) of one simulation."""
    results = []
    for kind in ("pbc", "pmac"):
        out, report = folder / f"{kind}.npz", folder / f"{kind}.json"
        result = invoke(
            "simulate", files[kind], "--input", data, "--output", out, "--report", report, *flags
        )
        assert result.exit_code == 0, result.output
        summary = json.loads(report.read_text())
        for key in TIMING_KEYS:
            summary.pop(key)
        with np.load(out) as arrays:
            results.append(({k: arrays[k] for k in arrays.files}, summary))
    return results


@pytest.mark.parametrize("noise", ["", NOISE], ids=["ideal", "noisy"])
def test_pbc_and_pmac_simulate_identically(
    files: dict[str, Path], data: Path, tmp_path: Path, noise: str
) -> None:
    assert bytecode.read(files["pbc"]).content_equal(macrofile.read(files["pmac"]))
    (pbc, pbc_report), (pmac, pmac_report) = simulate_both(
        files, data, tmp_path, "--noise", noise, "--seed", "3"
    )
    assert pbc.keys() == pmac.keys() == {"pred", "exit_step", "readouts"}
    for key in pbc:
        np.testing.assert_array_equal(pbc[key], pmac[key])
    assert pbc_report == pmac_report
    assert pmac_report["noise"]["seed"] == 3 and bool(noise) == bool(pmac_report["noise"]["read"])


# ---- bad files: each gets one clear error, exit 2, and nothing written -----------------------


def members_of(data: bytes) -> dict[str, bytes]:
    """Every member of a zip, by name."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def flip_in_member(name: str) -> Callable[[bytes], bytes]:
    """Flip one byte in the middle of a member's stored (compressed) data."""

    def corrupt(data: bytes) -> bytes:
        info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
        name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
        start = info.header_offset + 30 + name_length + extra_length
        flipped = bytearray(data)
        flipped[start + info.compress_size // 2] ^= 0x10
        return bytes(flipped)

    return corrupt


def rezip(edit: Callable[[dict[str, bytes], dict], None]) -> Callable[[bytes], bytes]:
    """Edit the members and the manifest, then write a well-formed zip (its CRCs fixed up)."""

    def corrupt(data: bytes) -> bytes:
        members = members_of(data)
        manifest = json.loads(members["manifest.json"])
        edit(members, manifest)
        members["manifest.json"] = json.dumps(manifest, indent=1, sort_keys=True).encode()
        return zip_bytes(members)

    return corrupt


def first_read(manifest: dict) -> dict:
    """The schedule's first tile read."""
    return next(i for i in manifest["schedule"] if i["op"] == "read")


def replace_member(
    members: dict[str, bytes], manifest: dict, name: str, array: np.ndarray, fix_checksum: bool
) -> None:
    """Put a new array into a member; with fix_checksum, also its sha256 into the manifest."""
    members[name] = npy_bytes(array)
    if fix_checksum:
        manifest["checksums"][name] = hashlib.sha256(members[name]).hexdigest()


def drop_array(members: dict[str, bytes], manifest: dict) -> None:
    """Remove the array entirely: its members, checksums and manifest entry."""
    for name in [n for n in members if n.startswith("arrays/")]:
        del members[name]
        del manifest["checksums"][name]
    manifest["arrays"] = []


def shifted_rows(members: dict[str, bytes], manifest: dict) -> None:
    """Point the first read's row map past the end of its input rows, checksum fixed up."""
    name = f"tensors/{first_read(manifest)['rows']}.npy"
    rows = np.load(io.BytesIO(members[name]))
    replace_member(members, manifest, name, rows + 1000, fix_checksum=True)


def edited_pairs(members: dict[str, bytes], manifest: dict, fix_checksum: bool) -> None:
    """Mark every pair of the array "keep" (reset pairs included)."""
    name = "arrays/m0.a0.pairs.npy"
    pairs = np.load(io.BytesIO(members[name]))
    replace_member(
        members, manifest, name, np.where(pairs > 0, 1, 0).astype(np.uint8), fix_checksum
    )


def edit_table(**fields: object) -> Callable[[dict[str, bytes], dict], None]:
    return lambda members, manifest: manifest["early_exit"].update(fields)


def edit_read(**fields: object) -> Callable[[dict[str, bytes], dict], None]:
    return lambda members, manifest: first_read(manifest).update(fields)


BAD_FILES = {
    "flipped byte in an array": (
        flip_in_member("arrays/m0.a0.conductance_us.npy"),
        "not a readable macro file (corrupted",
    ),
    "flipped byte in the manifest": (
        flip_in_member("manifest.json"),
        "not a readable macro file (corrupted",
    ),
    "changed member, manifest not updated": (
        rezip(
            lambda m, mf: replace_member(
                m, mf, "arrays/m0.a0.conductance_us.npy", np.zeros((512, 512)), False
            )
        ),
        "checksum mismatch in arrays/m0.a0.conductance_us.npy",
    ),
    "truncated": (lambda data: data[: len(data) // 2], "not a readable macro file (corrupted"),
    "missing array member": (
        rezip(lambda m, mf: m.pop("arrays/m0.a0.conductance_us.npy")),
        "member arrays/m0.a0.conductance_us.npy listed in the manifest is missing",
    ),
    "missing array": (rezip(drop_array), "reads macro 0 array 0, which the file does not contain"),
    "unlisted member": (
        rezip(lambda m, mf: m.update({"extra.npy": b"x"})),
        "member extra.npy is not listed in the manifest's checksums",
    ),
    "tile outside its array": (rezip(edit_read(row0=500)), "fall outside the 512 x 512 array"),
    "tile off the pair grid": (rezip(edit_read(col0=81)), "off the pair grid"),
    "row map outside the layer's rows": (rezip(shifted_rows), "row map points outside the layer's"),
    "read of a buffer that does not exist": (rezip(edit_read(src=999)), "src names buffer 999"),
    "read field of the wrong type": (rezip(edit_read(row0="0")), "field row0 must be int"),
    "pair operations edited": (
        rezip(lambda m, mf: edited_pairs(m, mf, fix_checksum=True)),
        "pairs.npy disagrees with the conductances and the schedule",
    ),
    "unknown exit rule": (
        rezip(edit_table(rule="vibes")),
        "early-exit table: unknown early-exit rule 'vibes'",
    ),
    "exit threshold out of range": (
        rezip(edit_table(threshold=1.5)),
        "threshold 1.5 is out of range for max-softmax",
    ),
    "entropy threshold above log K": (
        rezip(edit_table(rule="entropy", threshold=5.0)),
        "threshold 5.0 is out of range for entropy",
    ),
    "neuron record without its threshold": (
        rezip(lambda m, mf: mf["neurons"][0].pop("threshold")),
        "neuron record 0 lacks threshold",
    ),
    "not a macro file": (
        rezip(lambda m, mf: mf.update(format="zip of holiday photos")),
        "not a primec macro file",
    ),
    "newer version": (
        rezip(lambda m, mf: mf.update(version=2)),
        "macro file version 2 is not supported",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_gets_one_clear_error(
    files: dict[str, Path], data: Path, tmp_path: Path, case: str
) -> None:
    corrupt, message = BAD_FILES[case]
    bad = tmp_path / "bad.pmac"
    bad.write_bytes(corrupt(files["pmac"].read_bytes()))
    outputs = (tmp_path / "out.npz", tmp_path / "report.json")
    for command in (
        ("check", bad),
        ("inspect", bad),
        ("simulate", bad, "--input", data, "--output", outputs[0], "--report", outputs[1]),
    ):
        result = invoke(*command)
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert result.output.count("error:") == 1 and "Traceback" not in result.output
    assert not any(path.exists() for path in outputs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pmac"]


def test_any_flipped_byte_is_refused_or_changes_nothing_read(files: dict[str, Path]) -> None:
    original = files["pmac"].read_bytes()
    program = macrofile.decode(original)
    for position in np.random.default_rng(0).choice(len(original), 60, replace=False):
        flipped = bytearray(original)
        flipped[position] ^= 0xFF
        try:
            decoded = macrofile.decode(bytes(flipped))
        except macrofile.MacroFileError:
            continue
        # Only zip bookkeeping that nothing reads (e.g. file attributes) may change unnoticed.
        assert decoded.content_equal(program), f"byte {position} changed the program unnoticed"


def test_a_program_off_the_pair_grid_is_never_written(
    files: dict[str, Path], tmp_path: Path
) -> None:
    program = macrofile.read(files["pmac"])
    index, read = next((i, r) for i, r in enumerate(program.instrs) if isinstance(r, Read))
    moved = list(program.instrs)
    moved[index] = replace(read, col0=read.col0 + 1)
    with pytest.raises(macrofile.MacroFileError, match="off the pair grid"):
        macrofile.write(replace(program, instrs=tuple(moved)), tmp_path / "m.pmac")
    assert not list(tmp_path.iterdir())
