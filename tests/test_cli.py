"""The command line: help with examples, inspect, compile of IR files, errors without tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from primec import __version__
from primec.cli import main
from primec.pipeline import PASS_PIPELINE

GOLDEN = Path(__file__).parent / "golden" / "ir"


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and __version__ in result.output


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.output


def test_inspect_prints_the_canonical_form() -> None:
    result = invoke("inspect", str(GOLDEN / "small_conv_snn.pir"))
    assert result.exit_code == 0, result.output
    assert result.output == (GOLDEN / "small_conv_snn.expected.pir").read_text()


def test_inspect_use_before_def() -> None:
    result = invoke("inspect", str(GOLDEN / "errors" / "use_before_def.pir"))
    assert result.exit_code != 0
    assert "%b is used before it is defined" in result.output
    assert "use_before_def.pir:2" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("path", sorted((GOLDEN / "errors").glob("*.pir")), ids=lambda p: p.stem)
def test_malformed_ir_gives_one_message(path: Path) -> None:
    result = invoke("inspect", str(path))
    assert result.exit_code == 2
    assert result.output.startswith("error: ")
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_inspect_binary_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pir"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    result = invoke("inspect", str(bad))
    assert result.exit_code == 2 and "cannot read IR file" in result.output


def test_compile_ir_file_with_observability(tmp_path: Path) -> None:
    out = tmp_path / "out.pir"
    dump = tmp_path / "dump"
    report = tmp_path / "r.json"
    result = invoke(
        "compile",
        str(GOLDEN / "small_conv_snn.pir"),
        "--emit",
        "ir",
        "-o",
        str(out),
        "--dump-dir",
        str(dump),
        "--print-after",
        "dce",
        "--time-passes",
        "--report",
        str(report),
    )
    assert result.exit_code == 0, result.output
    assert "// ----- IR after dce -----" in result.output
    assert "pass dce:" in result.output
    assert out.exists() and out.with_suffix(".npz").exists()
    names = sorted(p.name for p in dump.glob("*.pir"))
    assert names[0] == "00-import.pir" and any(n.endswith("-dce.pir") for n in names)
    fields = json.loads(report.read_text())
    assert fields["input_kind"] == "primec IR text (.pir)" and fields["stopped_after"] is None
    assert fields["stages"] == ["load", "export", "import", *PASS_PIPELINE]
    assert set(fields["pass_seconds"]) == set(PASS_PIPELINE)
    # The written IR is the graph after the last pass, as dumped, and the report counts its nodes.
    assert out.read_text() == (dump / names[-1]).read_text()
    assert fields["nodes"] == sum(line.startswith("  %") for line in out.read_text().splitlines())


def test_backend_stages_run_under_the_pass_manager(tmp_path: Path) -> None:
    model, out, dump = str(GOLDEN / "small_conv_snn.pir"), tmp_path / "m.pmac", tmp_path / "dump"
    flags = ("--emit", "macro", "-o", str(out), "--stop-after", "lower", "--print-after", "lower")
    result = invoke("compile", model, *flags)
    assert result.exit_code == 0, result.output
    assert "// ----- IR after lower -----\nprogram " in result.output
    assert "read dst=%" in result.output and "(stopped after lower)" in result.output
    assert not out.exists()  # encode did not run
    flags = ("--emit", "bytecode", "-o", str(out), "--dump-dir", str(dump), "--time-passes")
    result = invoke("compile", model, *flags)
    assert result.exit_code == 0, result.output
    assert "pass lower:" in result.output and "pass encode:" in result.output
    names = sorted(p.name for p in dump.iterdir())
    assert [n.split("-", 1)[1] for n in names[-3:]] == ["lower.txt", "exit-table.txt", "encode.pbc"]
    assert (dump / names[-1]).read_bytes() == out.read_bytes()


def test_compile_stop_after_import(tmp_path: Path) -> None:
    result = invoke(
        "compile",
        str(GOLDEN / "small_conv_snn.pir"),
        "--stop-after",
        "import",
        "--dump-dir",
        str(tmp_path),
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("*.pir")) == ["00-import.pir"]
    assert "stopped after import" in result.output


def test_compile_unknown_pass(tmp_path: Path) -> None:
    out = tmp_path / "o.pir"
    result = invoke(
        "compile",
        str(GOLDEN / "small_conv_snn.pir"),
        "--stop-after",
        "nope",
        "--emit",
        "ir",
        "-o",
        str(out),
    )
    assert result.exit_code == 2 and "unknown pass nope" in result.output
    assert not out.exists()


def test_pass_errors_show_the_ir_and_declines_are_logged_with_v() -> None:
    model = str(GOLDEN.parent / "passes" / "choose-drive" / "conv_of_conv.in.pir")
    result = invoke("-v", "compile", model)
    assert result.exit_code == 2
    assert "debug: primec.passes.choose_drive: levels of %add unknown" in result.output
    assert "pass choose-drive failed" in result.output
    assert ">   %conv1.mvm = crossbar(" in result.output  # the IR around the node, marked
    quiet = invoke("compile", model)
    assert "debug:" not in quiet.output and ">   %conv1.mvm" in quiet.output
