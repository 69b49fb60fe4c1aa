"""Load: recognise what a model file is and read it without running code from it.

Accepted (docs/frontend.md):
- a `state_dict` (torch.save) + `--arch NAME` (built-in) or `--arch FILE.py:factory`;
- a `torch.export` archive (.pt2) of the step function (`primec.nn.save_step`);
- a TorchScript archive: its weights and module tree, with the architecture from `--arch` or
  the built-in whose tree matches (TorchScript code itself is not translated);
- an ONNX file in primec's convention (docs/onnx.md);
- a pickled whole `primec.nn.SNN`, only with `trust_pickle`.
Everything is read on the CPU, with `weights_only=True` unless `trust_pickle` is given.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import pickle
import re
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from google.protobuf.message import DecodeError
from torch import nn

from primec.archive import UntrustedZip
from primec.errors import PrimecError
from primec.frontend import frameworks
from primec.frontend.frameworks import sj_ops
from primec.frontend.inert import Archive, read_torchscript
from primec.frontend.nir_io import NirOptions, is_hdf5, read_nir
from primec.frontend.problems import first_line, pickle_refusal
from primec.frontend.pt2 import check_archive, load_step
from primec.frontend.to_onnx import StepFacts
from primec.nn import ARCHS, RELEASED_WEIGHTS, SNN
from primec.nn.network import STEP_FACTS_FILE

ACCEPTED = (
    "a state_dict .pt (with --arch), a torch.export .pt2 of the step, a TorchScript archive, "
    "an ONNX file in primec's convention, a NIR graph (with --dt), or a pickled primec.nn.SNN "
    "(with --trust-pickle)"
)
_CHECKPOINT_WRAPPERS = ("state_dict", "model_state_dict", "model")


@dataclass
class Source:
    """A loaded model: the kind of input it was (said to the user) and what it holds."""

    kind: str
    path: Path
    module: SNN | None = None
    program: torch.export.ExportedProgram | None = None
    facts: StepFacts | None = None
    onnx: onnx.ModelProto | None = None


def load(
    path: str | Path,
    arch: str | None = None,
    trust_pickle: bool = False,
    nir: NirOptions | None = None,
) -> Source:
    """Recognise and read a model file; raise one clear `PrimecError` on anything wrong.

    A NIR file needs `nir` (its dt, at least)."""
    path = Path(path)
    if not path.is_file():
        raise PrimecError("no such file", where=str(path))
    if is_hdf5(path):
        return Source("NIR graph (HDF5)", path, module=read_nir(path, nir))
    readers = {
        "onnx": _read_onnx,
        "pt2": _read_pt2,
        "torchscript": _read_torchscript,
        "torch": _read_torch,
    }
    return readers[_sniff(path)](path, arch, trust_pickle)


def _sniff(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(4)
    # An ONNX ModelProto starts with field 1 (ir_version) as a varint: byte 0x08.
    if path.suffix.lower() == ".onnx" or head[:1] == b"\x08":
        return "onnx"
    if _is_zip(path):
        return _zip_kind(path)
    if head.startswith(b"PK"):
        raise PrimecError(
            "the file is truncated or damaged (a zip archive without its central directory)",
            where=str(path),
        )
    if head[:1] == b"\x80":
        return "torch"  # a pickle: torch.save's legacy format
    raise PrimecError(f"not a model file; primec reads {ACCEPTED}", where=str(path))


def _is_zip(path: Path) -> bool:
    try:
        return zipfile.is_zipfile(path)
    except (zipfile.BadZipFile, ValueError, OverflowError) as exc:
        raise PrimecError(f"a damaged zip archive: {first_line(exc)}", where=str(path)) from exc


def _zip_kind(path: Path) -> str:
    with UntrustedZip(path, str(path)) as archive:
        names = archive.names
    if any(n.endswith("archive_format") for n in names):
        return "pt2"
    if any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names):
        return "torchscript"
    if any(n.endswith("data.pkl") for n in names):
        return "torch"
    raise PrimecError(
        f"a zip archive that is not a PyTorch file; primec reads {ACCEPTED}", where=str(path)
    )


# --- torch.save files ------------------------------------------------------------------------


def _read_torch(path: Path, arch: str | None, trust_pickle: bool) -> Source:
    content = _torch_load(path, trust_pickle)
    if isinstance(content, nn.Module):
        return _pickled_module(content, path)
    state_dict, wrapper = _state_dict_of(content, path)
    kind = "state_dict" + (f" (under key {wrapper!r})" if wrapper else "")
    return _with_arch(state_dict, arch, path, kind)


def _torch_load(path: Path, trust_pickle: bool) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as exc:
        refused = _refused_global(str(exc))
        if refused is None:
            raise PrimecError(
                f"the checkpoint is truncated or damaged: {first_line(exc)}", where=str(path)
            ) from exc
        raise pickle_refusal(path, refused) from exc
    except Exception as exc:  # noqa: BLE001 - torch.load raises many kinds on a damaged file
        raise PrimecError(
            f"the checkpoint is truncated or damaged: {first_line(exc)}", where=str(path)
        ) from exc


def _refused_global(message: str) -> str | None:
    if "Weights only load failed" not in message:
        return None
    found = re.search(r"GLOBAL ([\w.]+)", message)
    return found.group(1) if found else "a non-tensor object"


def _pickled_module(module: nn.Module, path: Path) -> Source:
    if not isinstance(module, SNN):
        raise PrimecError(
            f"the pickle holds a {type(module).__name__}, not a primec.nn.SNN",
            where=str(path),
            hint="build the network from primec.nn modules (docs/frontend.md)",
        )
    return Source(f"pickled module {type(module).__name__} (trusted)", path, module=module)


def _state_dict_of(content: object, path: Path) -> tuple[Mapping[str, torch.Tensor], str]:
    if _is_tensor_dict(content):
        return content, ""
    for key in _CHECKPOINT_WRAPPERS:
        if isinstance(content, Mapping) and _is_tensor_dict(content.get(key)):
            return content[key], key
    raise PrimecError(
        f"the file holds a {type(content).__name__}, not a state_dict of tensors",
        where=str(path),
        hint=f"primec reads {ACCEPTED}",
    )


def _is_tensor_dict(content: object) -> bool:
    return (
        isinstance(content, Mapping)
        and bool(content)
        and all(isinstance(v, torch.Tensor) for v in content.values())
    )


# --- architectures ---------------------------------------------------------------------------


def _with_arch(
    state_dict: Mapping[str, torch.Tensor], arch: str | None, path: Path, kind: str
) -> Source:
    if arch is None and _same_file(path, RELEASED_WEIGHTS):
        arch, kind = "prime-nmnist", "state_dict (the released PRIME N-MNIST classifier)"
    if arch is None:
        raise PrimecError(
            "a state_dict holds weights only: say which network they belong to with --arch",
            where=str(path),
            hint=f"built-in architectures: {', '.join(ARCHS)}; or --arch FILE.py:factory",
        )
    net = build_arch(arch, state_dict, path)
    if getattr(net, "framework", None):
        return Source(f"{kind} + --arch {arch} (a {net.framework} model)", path, module=net)
    problems = mismatches(net, state_dict)
    if problems:
        raise PrimecError(
            f"the state_dict does not fit --arch {arch}: {len(problems)} mismatches:\n"
            + "\n".join(f"  - {p}" for p in problems),
            where=str(path),
        )
    net.load_state_dict(state_dict)
    return Source(f"{kind} + --arch {arch}", path, module=net)


def _same_file(path: Path, other: Path) -> bool:
    if path.stat().st_size != other.stat().st_size:
        return False
    return hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(other.read_bytes()).digest()


def build_arch(
    arch: str, weights: Mapping[str, torch.Tensor] | None = None, path: Path | None = None
) -> SNN:
    """The network an --arch names: a built-in, or FILE.py:factory called without arguments.

    A factory may return an snnTorch, SpikingJelly or Norse model as it is; `weights` (read from
    `path`) are then loaded into it before it is translated (`frontend.frameworks`).
    """
    if arch in ARCHS:
        return ARCHS[arch]()
    file, _, factory = arch.rpartition(":")
    if not file.endswith(".py") or not factory:
        raise PrimecError(
            f"unknown architecture {arch!r}",
            hint=f"built-in architectures: {', '.join(ARCHS)}; or FILE.py:factory",
        )
    net = _call_factory(Path(file), factory)
    if isinstance(net, nn.Module) and not isinstance(net, SNN) and frameworks.uses_framework(net):
        problems = mismatches(net, weights) if weights is not None else []
        return frameworks.from_factory(net, Path(file), weights, problems, f"--arch {arch}", path)
    if not isinstance(net, SNN):
        raise PrimecError(
            f"{factory}() returned a {type(net).__name__}, not a primec.nn.SNN",
            where=file,
            hint="build the network with primec.nn.SNN (docs/frontend.md)",
        )
    return net


def _call_factory(file: Path, factory: str) -> object:
    if not file.is_file():
        raise PrimecError("no such architecture file", where=str(file))
    name = f"primec_arch_{file.stem}"
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so that classes and dataclasses in the file resolve
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise PrimecError(
            f"running it failed: {type(exc).__name__}: {exc}", where=str(file)
        ) from exc
    build = getattr(module, factory, None)
    if not callable(build):
        raise PrimecError(f"{file.name} has no factory {factory!r}", where=str(file))
    try:
        return build()
    except Exception as exc:
        raise PrimecError(
            f"{factory}() failed: {type(exc).__name__}: {exc}", where=str(file)
        ) from exc


def mismatches(net: nn.Module, tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Every key missing, unexpected or of the wrong shape, compared with the network's state."""
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    given = {k: tuple(v.shape) for k, v in tensors.items()}
    problems = [f"missing {k} {list(s)}" for k, s in expected.items() if k not in given]
    problems += [f"unexpected {k} {list(s)}" for k, s in given.items() if k not in expected]
    problems += [
        f"shape of {k}: the file has {list(given[k])}, the architecture expects {list(s)}"
        for k, s in expected.items()
        if k in given and given[k] != s
    ]
    return problems


# --- torch.export archives -------------------------------------------------------------------


def _read_pt2(path: Path, arch: str | None, trust_pickle: bool) -> Source:
    extra = {STEP_FACTS_FILE: ""}
    if not trust_pickle:
        check_archive(path)
    program = load_step(path, extra, trust_pickle)
    facts = sj_ops.step_facts(program, _json_object(extra[STEP_FACTS_FILE], path), str(path))
    facts = StepFacts.of(facts)
    return Source("torch.export archive (.pt2) of the step", path, program=program, facts=facts)


def _json_object(text: str, path: Path) -> dict:
    """The time-loop facts saved with a .pt2 ({} when there are none)."""
    try:
        facts = json.loads(text) if text else {}
    except (ValueError, RecursionError) as exc:
        raise PrimecError(f"{STEP_FACTS_FILE} in the archive is not JSON", where=str(path)) from exc
    if not isinstance(facts, dict):
        raise PrimecError(f"{STEP_FACTS_FILE} in the archive is not a JSON object", where=str(path))
    return facts


# --- TorchScript and ONNX --------------------------------------------------------------------


def _read_torchscript(path: Path, arch: str | None, trust_pickle: bool) -> Source:
    try:
        archive = read_torchscript(str(path))
    except pickle.UnpicklingError as exc:
        raise pickle_refusal(path, str(exc)) from exc
    except (
        KeyError,
        StopIteration,
        ValueError,
        TypeError,
        EOFError,
        AttributeError,
        IndexError,
        RuntimeError,
        RecursionError,
        MemoryError,
    ) as exc:
        raise PrimecError(
            f"cannot read the TorchScript archive: {first_line(exc)}", where=str(path)
        ) from exc
    candidates = [arch] if arch else list(ARCHS)
    report: list[str] = []
    for name in candidates:
        net = build_arch(name)
        problems = mismatches(net, archive.tensors) + _class_mismatches(net, archive)
        if not problems:
            net.load_state_dict(archive.tensors)
            return Source(
                f"TorchScript archive (weights and module tree) + --arch {name}", path, module=net
            )
        report += [f"  - --arch {name}: {p}" for p in problems]
    raise PrimecError(
        "TorchScript archive: primec reads its weights and module tree, not its TorchScript code, "
        "and no architecture matches them:\n" + "\n".join(report),
        where=str(path),
        hint="give --arch NAME or FILE.py:factory for the network it was made from, "
        "or save a state_dict or primec.nn.save_step(net, 'step.pt2') instead",
    )


def _class_mismatches(net: nn.Module, archive: Archive) -> list[str]:
    found = {path: qualname.rsplit(".", 1)[-1] for path, qualname in archive.classes.items()}
    return [
        f"module {path or '(root)'} is a {found[path]} in the archive, a {type(m).__name__} in the architecture"
        for path, m in net.named_modules()
        if path and path in found and found[path] != type(m).__name__
    ]


def _read_onnx(path: Path, arch: str | None, trust_pickle: bool) -> Source:
    try:
        # External data would be read from files beside the model that the user never named.
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError, RecursionError) as exc:
        raise PrimecError(f"not a readable ONNX file: {first_line(exc)}", where=str(path)) from exc
    external = _external_tensors(model)
    if external:
        raise PrimecError(
            f"the model keeps tensor {external[0]!r} in an external data file; "
            "primec reads self-contained ONNX files only",
            where=str(path),
            hint="save it with onnx.save(model, path, save_as_external_data=False)",
        )
    return Source("ONNX model", path, onnx=model)


def _external_tensors(model: onnx.ModelProto) -> list[str]:
    tensors = list(model.graph.initializer) + [
        attr.t for node in model.graph.node for attr in node.attribute if attr.HasField("t")
    ]
    return [t.name for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL]
