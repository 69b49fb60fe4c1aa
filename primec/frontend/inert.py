"""Read a TorchScript archive as data: module tree, class names and tensors, never its code.

`torch.jit.load` would run the archive's TorchScript (including `__setstate__` methods) to
rebuild the module. primec only needs what the archive holds, so it unpickles `data.pkl` with an
unpickler that turns every TorchScript object into an inert record, rebuilds tensors from the
raw storage files, and refuses every other global.
"""

from __future__ import annotations

import io
import pickle
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from primec.archive import UntrustedZip

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
_MANGLE = re.compile(r"___torch_mangle_\d+\.")


@dataclass
class Archive:
    """What a TorchScript archive holds: each module's class by path, each tensor by key."""

    classes: dict[str, str] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


class _Record:
    """An object of a TorchScript class, kept as its class name and attributes."""

    qualname = ""

    def __setstate__(self, state: Any) -> None:
        self.attrs = dict(state) if isinstance(state, dict) else {}


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, meta=None):
    return torch.as_strided(storage, size, stride, offset).clone()


def _rebuild_parameter(data, requires_grad=False, hooks=None):
    return data


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): dict,
}


class _InertUnpickler(pickle.Unpickler):
    def __init__(self, archive: UntrustedZip, prefix: str) -> None:
        super().__init__(io.BytesIO(archive.read(f"{prefix}data.pkl")))
        self.archive = archive
        self.prefix = prefix

    def find_class(self, module: str, name: str) -> Any:
        """TorchScript classes become records; tensors rebuild; anything else is refused."""
        if module.startswith("__torch__"):
            qualname = _MANGLE.sub("", f"{module}.{name}").removeprefix("__torch__.")
            return type(name, (_Record,), {"qualname": qualname})
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise pickle.UnpicklingError(
            f"the archive refers to {module}.{name}, which primec does not load"
        )

    def persistent_load(self, pid: Any) -> torch.Tensor:
        """A storage: the raw bytes of data/KEY as a 1-d tensor."""
        _, dtype, key, _, _ = pid
        raw = bytearray(self.archive.read(f"{self.prefix}data/{key}"))
        return torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)


def read_torchscript(path: str) -> Archive:
    """The module tree and tensors of a TorchScript archive, read without running its code."""
    with UntrustedZip(path, path) as archive:
        data = next(n for n in archive.names if n.endswith("data.pkl") and n.count("/") == 1)
        root = _InertUnpickler(archive, data[: -len("data.pkl")]).load()
    result = Archive()
    _collect(root, "", result)
    return result


def _collect(record: Any, path: str, into: Archive) -> None:
    into.classes[path] = record.qualname
    for name, value in getattr(record, "attrs", {}).items():
        key = f"{path}.{name}" if path else name
        if isinstance(value, _Record):
            _collect(value, key, into)
        elif isinstance(value, torch.Tensor):
            into.tensors[key] = value
