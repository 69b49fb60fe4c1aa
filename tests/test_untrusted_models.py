"""Model files from elsewhere stay data: no payload runs without --trust-pickle.

Each payload is first shown to run under plain `torch.export.load` (a positive control, so the
test cannot pass with a payload that does nothing), then handed to primec, which must refuse it
with one clear message and leave the marker file absent.
"""

from __future__ import annotations

import importlib
import io
import json
import pickle
import re
import sys
import zipfile
from pathlib import Path

import onnx
import pytest
import sympy
import torch
from click.testing import CliRunner

import primec.nn as pnn
from primec.cli import main
from primec.errors import PrimecError
from primec.frontend.pt2 import no_code_paths

sys.path.insert(0, str(Path(__file__).parent))
import snn_models as zoo  # noqa: E402

load_module = importlib.import_module("primec.frontend.load")

ROOT = Path(__file__).resolve().parents[1]


class _CreatesFile:
    """Unpickling this object opens (creates) a file: the canary of code execution."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def _rewrite(good: Path, out: Path, change) -> Path:
    """Copy a zip member by member; `change(name, data)` returns the members to write instead."""
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            for new_name, data in change(name, source.read(name)):
                target.writestr(new_name, data)
    return out


def _expression_payload(tmp: Path, marker: Path) -> Path:
    """A size in models/model.json becomes a symbolic expression that creates the marker."""
    code = f"__import__('pathlib').Path({str(marker)!r}).touch() or 1"

    def change(name: str, data: bytes):
        if name.endswith("models/model.json"):
            text = data.decode()
            size = re.search(r"(?<=\"sizes\": \[)\{\"as_int\": (\d+)\}", text)
            expr = json.dumps({"as_expr": {"expr_str": code, "hint": {"as_int": int(size[1])}}})
            data = (text[: size.start()] + expr + text[size.end() :]).encode()
        return [(name, data)]

    return _rewrite(tmp / "good.pt2", tmp / "expr.pt2", change)


def _duplicate_payload(tmp: Path, marker: Path) -> Path:
    """Two data/sample_inputs/model.pt: a pickle that creates the marker first, the real one last."""
    evil = io.BytesIO()
    torch.save(_CreatesFile(marker), evil)

    def change(name: str, data: bytes):
        if name.endswith("data/sample_inputs/model.pt"):
            return [(name, evil.getvalue()), (name, data)]
        return [(name, data)]

    return _rewrite(tmp / "good.pt2", tmp / "dup.pt2", change)


PAYLOADS = {"expression": _expression_payload, "duplicate-member": _duplicate_payload}


@pytest.fixture
def good_pt2(tmp_path: Path) -> Path:
    pnn.save_step(zoo.mlp_leaky(), tmp_path / "good.pt2")
    return tmp_path / "good.pt2"


@pytest.mark.parametrize("kind", PAYLOADS)
def test_payload_runs_under_plain_torch(kind, good_pt2, tmp_path):
    """The positive control: torch.export.load alone runs the payload."""
    marker = tmp_path / "marker"
    evil = PAYLOADS[kind](tmp_path, marker)
    with pytest.raises(Exception):  # noqa: B017 - torch fails after the payload ran
        torch.export.load(evil)
    assert marker.exists()


EXPECTED = {
    "expression": "holds a symbolic size expression ('as_expr')",
    "duplicate-member": "appears twice; the archive is ambiguous",
}


@pytest.mark.parametrize("command", ["check", "compile", "export"])
@pytest.mark.parametrize("kind", PAYLOADS)
def test_payload_refused_and_never_runs(kind, command, good_pt2, tmp_path):
    marker = tmp_path / "marker"
    evil = PAYLOADS[kind](tmp_path, marker)
    out = tmp_path / "out"
    flags = {"compile": ["--emit", "ir", "-o", out], "export": ["-o", out]}.get(command, [])
    result = _cli(command, evil, *flags)
    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1
    assert EXPECTED[kind] in result.output
    assert "Traceback" not in result.output
    assert not marker.exists()
    assert not out.exists()


@pytest.mark.parametrize("kind", PAYLOADS)
def test_guard_alone_stops_the_payload(kind, good_pt2, tmp_path, monkeypatch):
    """With the archive check switched off, loading under no_code_paths still runs nothing."""
    marker = tmp_path / "marker"
    evil = PAYLOADS[kind](tmp_path, marker)
    monkeypatch.setattr(load_module, "check_archive", lambda path: None)
    if kind == "duplicate-member":
        # The zip-level check refuses duplicates before sniffing; go around it too.
        monkeypatch.setattr(load_module, "_sniff", lambda path: "pt2")
    with pytest.raises(PrimecError, match="refused: loading the archive would|weights_only=False"):
        load_module.load(evil)
    assert not marker.exists()


def test_guard_restores_what_it_patched():
    before = (torch.load, sympy.sympify, pickle.loads, torch._C._pickle_load_obj)
    with pytest.raises(PrimecError):
        with no_code_paths():
            sympy.sympify("1")
    assert (torch.load, sympy.sympify, pickle.loads, torch._C._pickle_load_obj) == before


@pytest.mark.parametrize(
    "member",
    [
        "data/aotinductor/model/model.so",
        "data/constants/custom_obj_0",
        "data/constants/opaque_obj_0",
        "data/weights/model.pt",
    ],
)
def test_members_that_would_load_code_are_refused(member, good_pt2, tmp_path):
    def change(name: str, data: bytes):
        extra = (
            [(name.split("/")[0] + "/" + member, b"x")] if name.endswith("archive_format") else []
        )
        return [(name, data), *extra]

    evil = _rewrite(good_pt2, tmp_path / "extra.pt2", change)
    result = _cli("check", evil)
    assert result.exit_code == 2, result.output
    assert f"unexpected member '{good_pt2.stem}/{member}'" in result.output


def test_pickled_weight_entry_is_refused(good_pt2, tmp_path):
    def change(name: str, data: bytes):
        if name.endswith("model_weights_config.json"):
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            data = json.dumps(config).encode()
        return [(name, data)]

    evil = _rewrite(good_pt2, tmp_path / "pickled.pt2", change)
    result = _cli("check", evil)
    assert result.exit_code == 2
    assert "refused: the file is a pickle that would run code (pickled object" in result.output


def test_onnx_external_data_is_not_read(tmp_path):
    """An ONNX file that points at a data file beside it is refused; the file is never opened."""
    weights = onnx.numpy_helper.from_array(torch.ones(4, 4).numpy(), name="w")
    node = onnx.helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = onnx.helper.make_graph(
        [node],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])],
        [weights],
    )
    model = onnx.helper.make_model(graph)
    onnx.save(
        model,
        tmp_path / "m.onnx",
        save_as_external_data=True,
        location="secret.bin",
        size_threshold=0,
    )
    result = _cli("check", tmp_path / "m.onnx")
    assert result.exit_code == 2, result.output
    assert "keeps tensor 'w' in an external data file" in result.output


# --- no code path reaches an evaluating loader ---------------------------------------------


def _user_files(tmp: Path, good: Path) -> list[Path]:
    marker = tmp / "marker"
    torch.save(zoo.mlp_leaky().state_dict(), tmp / "sd.pt")
    torch.save(_CreatesFile(marker), tmp / "evil.pt")
    return [
        good,
        _expression_payload(tmp, marker),
        _duplicate_payload(tmp, marker),
        tmp / "sd.pt",
        tmp / "evil.pt",
        ROOT / "primec/models/prime_nmnist_classification.pt",
    ]


def test_no_code_path_reaches_an_evaluating_loader(good_pt2, tmp_path, monkeypatch):
    """Spies on every loader that can run code: none is reached with a user file."""
    reached: list[str] = []
    real_load, real_sympify = torch.load, sympy.sympify
    real_loads, real_obj = pickle.loads, torch._C._pickle_load_obj

    def load_spy(*args, **kwargs):
        if kwargs.get("weights_only") is not True:
            reached.append(f"torch.load(weights_only={kwargs.get('weights_only')!r})")
        return real_load(*args, **kwargs)

    def spy(name, real):
        def called(*args, **kwargs):
            reached.append(name)
            return real(*args, **kwargs)

        return called

    monkeypatch.setattr(torch, "load", load_spy)
    monkeypatch.setattr(sympy, "sympify", spy("sympify", real_sympify))
    monkeypatch.setattr(pickle, "loads", spy("pickle.loads", real_loads))
    monkeypatch.setattr(torch._C, "_pickle_load_obj", spy("_pickle_load_obj", real_obj))
    for path in _user_files(tmp_path, good_pt2):
        for command in (["check"], ["compile", "--emit", "ir", "-o", tmp_path / "o.pir"]):
            _cli(command[0], path, *command[1:])
    assert reached == []
    assert not (tmp_path / "marker").exists()


_FORBIDDEN = re.compile(
    r"weights_only\s*=\s*False|sympify|pickle\.loads?\(|(?<![.\w])eval\(|(?<![.\w])exec\("
)
# Where a forbidden name may appear, and why.
_ALLOWED = {
    "primec/frontend/pt2.py": "the guard that replaces these loaders while torch reads a .pt2",
}


def test_source_never_calls_an_evaluating_loader():
    """No module of primec calls a loader that evaluates strings or unpickles fully."""
    found = []
    for folder in ("primec", "passes", "backends"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if _FORBIDDEN.search(line) and relative not in _ALLOWED:
                    found.append(f"{relative}:{number}: {line.strip()}")
    assert found == []
