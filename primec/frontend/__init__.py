"""The frontend: load a model file, export its step function to ONNX, import ONNX into the IR.

    source = load(path, arch=..., trust_pickle=...)   # what the file is, read safely
    model = export(source)                             # onnx.ModelProto in primec's convention
    graph = import_onnx(model, source=str(path))       # primec IR, every node with its loc

What each input kind supports is in docs/frontend.md; the ONNX convention in docs/onnx.md.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import torch

from primec.errors import PrimecError
from primec.fileio import atomic_write_bytes
from primec.frontend.from_onnx import import_onnx
from primec.frontend.load import Source, build_arch, load
from primec.frontend.problems import first_line
from primec.frontend.to_onnx import StepFacts, program_to_onnx
from primec.nn import export_step
from primec.nn.neurons import NeuronShapeError

__all__ = ["Source", "StepFacts", "build_arch", "export", "import_onnx", "load", "save_onnx"]


def export(source: Source) -> onnx.ModelProto:
    """The ONNX step graph of a loaded model (an ONNX input is returned as it is)."""
    if source.onnx is not None:
        return source.onnx
    if source.program is not None:
        return _archived_program(source)
    return program_to_onnx(_capture(source), StepFacts.of(source.module.step_facts()))


def _archived_program(source: Source) -> onnx.ModelProto:
    """The step of a .pt2: a program from a file may break what torch itself would write."""
    try:
        return program_to_onnx(source.program, source.facts or StepFacts(None, None))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError) as exc:
        raise PrimecError(
            f"the step program in the archive is malformed: {type(exc).__name__}: {exc}",
            where=str(source.path),
            hint="save the step again with primec.nn.save_step",
        ) from exc


def _capture(source: Source) -> torch.export.ExportedProgram:
    try:
        return export_step(source.module)
    except NeuronShapeError as exc:
        raise PrimecError(
            str(exc),
            where=str(source.path),
            hint="give the parameter one value per channel or per neuron of the layer it follows",
        ) from exc
    except Exception as exc:
        raise PrimecError(
            f"torch.export could not capture the step function: {first_line(exc)}",
            where=str(source.path),
            hint="step() must run on tensors, without Python control flow on their values",
        ) from exc


def save_onnx(model: onnx.ModelProto, path: str | Path) -> None:
    """Write an ONNX model atomically (no partial file on failure)."""
    atomic_write_bytes(path, model.SerializeToString())
