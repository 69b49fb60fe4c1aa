"""The mapping side of the command line: targets, device maps, placed IR, reports, and every bad
input failing with one clear message, a non-zero exit and no artefact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from ir_zoo import prime_classifier, vgg

from primec.cli import main
from primec.core.text import parse_graph, print_graph, read_graph_file, save_graph
from primec.hardware.target import TARGET_DIR


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    paths = {"prime": folder / "prime.pir", "vgg": folder / "vgg.pir"}
    save_graph(prime_classifier(), paths["prime"])
    save_graph(vgg(width=0.5), paths["vgg"])
    return paths


def test_targets_lists_and_shows() -> None:
    listed = invoke("targets")
    assert listed.exit_code == 0 and listed.output.startswith("prime-40nm-256k: 64 macros")
    shown = invoke("targets", "--show", "prime-40nm-256k")
    assert "array.rows = 512 rows    [assumption:" in shown.output
    assert (
        "energy.adc_conversion_pj = 2.0 pJ per conversion (low 0.5, high 5.0)    [estimate:"
        in shown.output
    )


def test_compile_writes_placed_ir_and_report(models, tmp_path: Path) -> None:
    out, report = tmp_path / "placed.pir", tmp_path / "r.json"
    result = invoke("compile", models["prime"], "--emit", "ir", "-o", out, "--report", report)
    assert result.exit_code == 0, result.output
    assert "1 array(s) used (lower bound 1)" in result.output
    assert "classifier.linear0  2304 x 10     5      bit_serial x3  15" in result.output
    graph, _, text = read_graph_file(out)
    assert print_graph(parse_graph(text)) == text and graph.meta_value("macros_used") == 1
    fields = json.loads(report.read_text())
    assert {k: fields[k] for k in ("arrays_used", "arrays_lower_bound", "macros_used")} == {
        "arrays_used": 1,
        "arrays_lower_bound": 1,
        "macros_used": 1,
    }
    assert (fields["pairs_reset"], fields["cells_programmed"]) == (21420, 42840)
    assert set(fields["pass_seconds"]) >= {"fold-masks", "tile", "place", "schedule"}
    assert fields["compile_seconds"] > 0
    conv1 = fields["layers"][1]
    assert conv1 == conv1 | {
        "name": "features.conv1",
        "matrix": [300, 64],
        "tiles": 1,
        "reads_per_timestep": 144 * 3,
        "weights_kept": 9600,
        "weights_total": 19200,
    }


def test_larger_model_spreads_over_macros_and_max_macros_fails(models, tmp_path: Path) -> None:
    spread = invoke("compile", models["vgg"], "--report", tmp_path / "ok.json")
    assert spread.exit_code == 0, spread.output
    assert json.loads((tmp_path / "ok.json").read_text())["macros_used"] == 12
    out, report = tmp_path / "one.pir", tmp_path / "one.json"
    result = invoke(
        "compile", models["vgg"], "--max-macros", 1, "--emit", "ir", "-o", out, "--report", report
    )
    assert result.exit_code == 2
    assert "layer features.conv" in result.output and "does not fit" in result.output
    assert "Limit: 1 macro(s) (--max-macros 1) = 1 array(s) of 512 x 512 cells" in result.output
    assert "the model needs 12 macros (12 arrays for" in result.output
    assert result.output.count("error:") == 1
    assert not out.exists() and not report.exists()


def small_target(tmp_path: Path, macros: int) -> Path:
    text = (TARGET_DIR / "prime-40nm-256k.toml").read_text()
    path = tmp_path / "small.toml"
    path.write_text(text.replace("macros = 64 ", f"macros = {macros} "))
    return path


def bad_map(tmp_path: Path, rows: int = 512, units: str = "uS") -> Path:
    path = tmp_path / "bad.npz"
    header = {
        "format": "primec-devicemap",
        "version": 1,
        "target": "prime-40nm-256k",
        "units": units,
        "seed": 0,
    }
    cells = np.full((1, 1, rows, 512), 25.0, np.float32)
    np.savez(
        path,
        g=cells,
        fault=np.zeros(cells.shape, np.int8),
        **{k: np.array(v) for k, v in header.items()},
    )
    return path


@pytest.mark.parametrize(
    "extra,message",
    [
        (lambda tmp: ["--target", "prime-80nm"], "unknown target 'prime-80nm'"),
        (lambda tmp: ["--target", tmp / "none.toml"], "cannot read target file"),
        (
            lambda tmp: ["--device-map", bad_map(tmp, rows=256)],
            "device map g has shape [1, 1, 256, 512]",
        ),
        (lambda tmp: ["--device-map", bad_map(tmp, units="S")], "conductances are in 'S'"),
        (
            lambda tmp: ["--target", small_target(tmp, 1)],
            "cannot fit the target prime-40nm-256k even when split",
        ),
    ],
)
def test_bad_inputs_fail_cleanly_without_artefacts(models, tmp_path: Path, extra, message) -> None:
    out, report = tmp_path / "out.pir", tmp_path / "r.json"
    args = [
        "compile",
        models["vgg"],
        *extra(tmp_path),
        "--emit",
        "ir",
        "-o",
        out,
        "--report",
        report,
    ]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.count("error:") == 1
    assert not out.exists() and not report.exists()


def test_devicemap_synth_is_reproducible(tmp_path: Path) -> None:
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    first = invoke("devicemap", "synth", "--seed", 3, "--macros", 1, "-o", a)
    assert first.exit_code == 0 and "1 macro(s) of prime-40nm-256k, seed 3" in first.output
    assert invoke("devicemap", "synth", "--seed", 3, "--macros", 1, "-o", b).exit_code == 0
    assert a.read_bytes() == b.read_bytes()


def test_devicemap_synth_bad_inputs(tmp_path: Path) -> None:
    out = tmp_path / "chip.npz"
    too_many = invoke("devicemap", "synth", "--seed", 1, "--macros", 65, "-o", out)
    assert too_many.exit_code == 2 and "exceeds the target's 64 macros" in too_many.output
    unknown = invoke("devicemap", "synth", "--seed", 1, "--target", "nope", "-o", out)
    assert unknown.exit_code == 2 and "unknown target 'nope'" in unknown.output
    assert not out.exists()
