"""Read a torch.export archive (.pt2) as untrusted data.

`torch.export.load` is not safe on a file from elsewhere: it unpickles some members with
`weights_only=False` (pickled weights and constants, custom and opaque objects, and any sample
input that fails the safe load), evaluates symbolic size expressions with `sympy.sympify`, and
loads AOTInductor shared libraries. primec therefore reads a .pt2 in two steps:

1. `check_archive` reads the archive itself, as data, and accepts only what `torch.export.save`
   writes for a step function with static shapes: a fixed set of member names under one root,
   each once; weights and constants as raw tensors; JSON without expressions or guards; sample
   inputs that load with `weights_only=True`. Anything else is refused and named.
2. `load_checked` calls `torch.export.load` inside `no_code_paths()`, where `torch.load` cannot
   unpickle beyond `weights_only=True` and `sympify`, `pickle.loads` and torch's object unpickler
   refuse. So a path through torch that step 1 missed still cannot run code from the file.

With `--trust-pickle` the user vouches for the file and neither step applies.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sympy
import torch

from primec.archive import Limits, UntrustedZip
from primec.errors import PrimecError
from primec.frontend.frameworks import sj_ops
from primec.frontend.problems import first_line, pickle_refusal
from primec.nn.network import STEP_FACTS_FILE

# Member paths below the archive's root folder that a static-shape step archive holds.
_MEMBERS = re.compile(
    r"archive_format|archive_version|byteorder|version|\.data/version|\.data/serialization_id"
    r"|models/model\.json|data/sample_inputs/model\.pt"
    r"|data/weights/model_weights_config\.json|data/weights/weight_\d+"
    r"|data/constants/model_constants_config\.json|data/constants/tensor_\d+"
    rf"|extra/{re.escape(STEP_FACTS_FILE)}"
)
_CONFIGS = {
    "data/weights/model_weights_config.json": ("data/weights/", "weight_"),
    "data/constants/model_constants_config.json": ("data/constants/", "tensor_"),
}
_MAX_JSON_DEPTH = 200
# One step's sample inputs and states: small, whatever the model.
SAMPLE_LIMITS = Limits(members=1024, member_bytes=64 << 20, total_bytes=128 << 20)
_HINT = (
    "save the step with primec.nn.save_step (static shapes, raw tensors), "
    "or pass --trust-pickle only if you trust the file"
)


class CodePathRefused(PrimecError):
    """Raised inside `no_code_paths()` when torch tries to evaluate or unpickle file content."""


def check_archive(path: Path) -> None:
    """Refuse a .pt2 holding anything that loading it could execute; raise `PrimecError`."""
    with UntrustedZip(path, str(path)) as archive:
        root = _root(archive, path)
        archive.only(
            lambda name: _MEMBERS.fullmatch(name[len(root) :]) is not None,
            "primec reads only what torch.export.save writes for a static-shape step "
            "(AOTInductor packages, legacy archives and custom objects are refused: "
            "loading them runs code from the file)",
        )
        members = {name[len(root) :]: name for name in archive.names}
        for required in ("archive_format", "models/model.json", "data/sample_inputs/model.pt"):
            if required not in members:
                raise _refusal(path, f"member {root}{required} is missing")
        _check_program(_json(archive, members["models/model.json"], path), path)
        for config, (folder, prefix) in _CONFIGS.items():
            if config in members:
                _check_config(_json(archive, members[config], path), members, folder, prefix, path)
        _check_sample_inputs(archive.read(members["data/sample_inputs/model.pt"]), path)


def load_step(path: Path, extra_files: dict[str, Any], trust_pickle: bool) -> Any:
    """Load a step archive (`check_archive` has accepted it unless trusted), with stand-ins for
    the SpikingJelly ops it calls."""
    sj_ops.prepare(path)
    try:
        if trust_pickle:
            return torch.export.load(path, extra_files=extra_files)
        return load_checked(path, extra_files)
    except PrimecError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch's own failures, named in one line
        raise PrimecError(
            f"cannot read the torch.export archive: {first_line(exc)}", where=str(path)
        ) from exc


def load_checked(path: Path, extra_files: dict[str, Any]) -> torch.export.ExportedProgram:
    """`torch.export.load` on an archive `check_archive` accepted, with every code path shut."""
    with no_code_paths():
        return torch.export.load(path, extra_files=extra_files)


@contextlib.contextmanager
def no_code_paths() -> Iterator[None]:
    """Within: torch.load is weights_only; sympify, pickle.loads and object unpickling refuse."""
    safe_load = torch.load

    def weights_only_load(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("weights_only") is False:
            raise CodePathRefused(
                "refused: loading the archive needs a full unpickle (weights_only=False), "
                "which could run code from the file; nothing was executed",
                hint=_HINT,
            )
        kwargs["weights_only"] = True
        return safe_load(*args, **kwargs)

    def refuse(what: str):
        def refused(*args: Any, **kwargs: Any) -> Any:
            raise CodePathRefused(
                f"refused: loading the archive would {what}; nothing was executed", hint=_HINT
            )

        return refused

    patches = [
        (torch, "load", weights_only_load),
        (sympy, "sympify", refuse("evaluate a symbolic expression from it")),
        (pickle, "loads", refuse("unpickle an object from it")),
        (torch._C, "_pickle_load_obj", refuse("unpickle a custom object from it")),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    try:
        for owner, name, replacement in patches:
            setattr(owner, name, replacement)
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def _root(archive: UntrustedZip, path: Path) -> str:
    roots = {name.split("/", 1)[0] for name in archive.names}
    if len(roots) != 1 or not all("/" in name for name in archive.names):
        raise _refusal(path, "the archive's members do not share one root folder")
    return f"{roots.pop()}/"


def _json(archive: UntrustedZip, name: str, path: Path) -> Any:
    try:
        return json.loads(archive.read(name))
    except (ValueError, RecursionError) as exc:
        raise _refusal(path, f"member {name} is not valid JSON: {first_line(exc)}") from exc


def _check_program(program: Any, path: Path) -> None:
    if not isinstance(program, dict):
        raise _refusal(path, "models/model.json is not a JSON object")
    if program.get("guards_code"):
        raise _refusal(path, "the program carries guard code, which loading would evaluate")
    if program.get("range_constraints"):
        raise _refusal(
            path,
            "the program has symbolic (dynamic) sizes; primec reads static-shape steps and "
            "does not evaluate size expressions from a file",
        )
    found = _find_key(program, {"as_expr", "expr_str"}, 0)
    if found:
        raise _refusal(
            path,
            f"models/model.json holds a symbolic size expression ({found!r}); loading it would "
            "evaluate that string; export the step with static shapes",
        )


def _find_key(node: Any, keys: set[str], depth: int) -> str | None:
    if depth > _MAX_JSON_DEPTH:
        return "nesting deeper than primec reads"
    if isinstance(node, dict):
        hit = next((k for k in node if k in keys), None)
        if hit is not None:
            return hit
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        found = _find_key(child, keys, depth + 1)
        if found:
            return found
    return None


def _check_config(
    config: Any, members: dict[str, str], folder: str, prefix: str, path: Path
) -> None:
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise _refusal(path, f"{folder}: the payload config is not a JSON object")
    for key, entry in entries.items():
        name = entry.get("path_name") if isinstance(entry, dict) else None
        if entry.get("use_pickle") if isinstance(entry, dict) else True:
            raise pickle_refusal(path, f"pickled object {key!r} in {folder}")
        if not (isinstance(name, str) and re.fullmatch(rf"{prefix}\d+", name)):
            raise pickle_refusal(path, f"{key!r} in {folder}, not stored as a raw tensor")
        if f"{folder}{name}" not in members:
            raise _refusal(path, f"{key!r} refers to {folder}{name}, which is missing")


def _check_sample_inputs(data: bytes, path: Path) -> None:
    # torch retries a sample-input file that fails the safe load with a full unpickle, so
    # anything but a clean weights_only load is refused here. The member is itself a zip:
    # its sizes are checked before torch inflates it.
    if data[:2] == b"PK":
        UntrustedZip(data, f"{path}: data/sample_inputs/model.pt", SAMPLE_LIMITS).close()
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise pickle_refusal(path, f"data/sample_inputs/model.pt: {first_line(exc)}") from exc
    except Exception as exc:  # noqa: BLE001 - any failure here would make torch unpickle fully
        raise _refusal(
            path, f"data/sample_inputs/model.pt does not load as data: {first_line(exc)}"
        ) from exc


def _refusal(path: Path, message: str) -> PrimecError:
    return PrimecError(f"refused .pt2: {message}", where=str(path), hint=_HINT)
