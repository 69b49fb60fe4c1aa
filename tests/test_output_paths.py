"""Output paths: no command overwrites an input, another output or (without --force) a file.

Every refusal happens before any work, so nothing is written and every file keeps its bytes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from primec.cli import main
from primec.fileio import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "primec/models/prime_nmnist_classification.pt"


def _cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def artefact(tmp_path_factory) -> tuple[Path, Path]:
    """A compiled .pbc and a 4-sample input file, made once."""
    folder = tmp_path_factory.mktemp("made")
    result = _cli("compile", MODEL, "--emit", "bytecode", "-o", folder / "m.pbc")
    assert result.exit_code == 0, result.output
    result = _cli("datasets", "ndigits", "--split", "test", "-o", folder / "all.npz")
    assert result.exit_code == 0, result.output
    import numpy as np

    with np.load(folder / "all.npz") as data:
        np.savez(folder / "data.npz", x=data["x"][:4], y=data["y"][:4])
    return folder / "m.pbc", folder / "data.npz"


@pytest.fixture
def work(artefact, tmp_path) -> tuple[Path, Path]:
    pbc, data = (tmp_path / "m.pbc", tmp_path / "data.npz")
    pbc.write_bytes(artefact[0].read_bytes())
    data.write_bytes(artefact[1].read_bytes())
    return pbc, data


def _refused(tmp_path: Path, args: list, expected: str) -> None:
    before = _snapshot(tmp_path)
    result = _cli(*args)
    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1
    assert expected in result.output
    assert "Traceback" not in result.output
    assert _snapshot(tmp_path) == before  # nothing written, nothing changed
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_simulate_output_over_the_artefact_is_refused(work, tmp_path):
    pbc, data = work
    _refused(
        tmp_path,
        ["simulate", pbc, "--input", data, "--output", pbc],
        f"--output {pbc} is also an input of this command",
    )


def test_report_over_the_input_data_is_refused(work, tmp_path):
    pbc, data = work
    _refused(
        tmp_path,
        ["simulate", pbc, "--input", data, "--report", data],
        f"--report {data} is also an input of this command",
    )


def test_output_and_report_on_one_file_are_refused(work, tmp_path):
    _refused(
        tmp_path,
        ["compile", MODEL, "--emit", "macro", "-o", tmp_path / "x", "--report", tmp_path / "x"],
        "-o and --report name the same file",
    )


def test_report_in_a_folder_that_is_a_file_is_refused_before_work(work, tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    _refused(
        tmp_path,
        [
            "compile",
            MODEL,
            "--emit",
            "bytecode",
            "-o",
            tmp_path / "new.pbc",
            "--report",
            tmp_path / "afile/r.json",
        ],
        "the folder",
    )
    assert not (tmp_path / "new.pbc").exists()


def test_output_in_a_missing_folder_is_refused(tmp_path):
    _refused(
        tmp_path,
        ["datasets", "ndigits", "--split", "test", "-o", tmp_path / "no/such/d.npz"],
        "does not exist",
    )


def test_existing_output_needs_force(work, tmp_path):
    pbc, data = work
    report = tmp_path / "r.json"
    report.write_text("keep me")
    _refused(
        tmp_path,
        ["simulate", pbc, "--input", data, "--report", report],
        f"--report {report} already exists",
    )
    result = _cli("simulate", pbc, "--input", data, "--report", report, "--force")
    assert result.exit_code == 0, result.output
    assert report.read_text().startswith("{")


def test_ir_weights_file_is_an_output_too(tmp_path):
    (tmp_path / "m.npz").write_bytes(b"precious")
    _refused(
        tmp_path,
        ["compile", MODEL, "--emit", "ir", "-o", tmp_path / "m.pir"],
        "-o's weights file",
    )


def test_dump_dir_holding_the_input_is_refused(tmp_path):
    result = _cli("compile", MODEL, "--stop-after", "import", "--dump-dir", tmp_path)
    assert result.exit_code == 0, result.output
    ir = tmp_path / "00-import.pir"
    _refused(tmp_path, ["compile", ir, "--dump-dir", tmp_path], "holds the input")


def test_a_write_interrupted_by_sigterm_leaves_no_temp_file(tmp_path):
    """A terminated command unwinds: the temp file of the write under way is removed."""
    script = textwrap.dedent(
        f"""
        import os, signal
        from primec import cli, fileio
        cli._exit_cleanly_on_sigterm()
        real = os.replace
        def replace(src, dst):
            os.kill(os.getpid(), signal.SIGTERM)  # terminated between write and rename
            real(src, dst)
        os.replace = replace
        fileio.atomic_write_bytes({str(tmp_path / "out.pbc")!r}, b"x" * 1000)
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, cwd=ROOT)
    assert run.returncode == 128 + signal.SIGTERM, run.stderr.decode()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]
