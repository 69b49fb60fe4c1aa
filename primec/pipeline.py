"""The pipeline, read top to bottom: the frontend stages, the passes in order, the backend.

Nothing else decides the order in which primec's stages run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from primec.core.ir import Graph
from primec.core.passmanager import PassManager, PassOptions, PassRecord
from primec.core.text import read_graph_file
from primec.core.verify import verify
from primec.errors import PrimecError
from primec.hardware.target import DEFAULT_TARGET, Target, load_target
from primec.passes import PASSES

FRONTEND_STAGES = (
    "load",  # read the model file (state_dict + arch, .pt2, TorchScript, ONNX, trusted pickle)
    "export",  # trace one timestep to ONNX, neurons as primec-domain ops
    "import",  # ONNX -> primec IR, every node with its source location
)

PASS_PIPELINE = (
    "fold-masks",  # supermask -> masked_weight {formed, mask, gain}
    "fold-affine",  # BatchNorm and biases -> per-channel post-ADC affine
    "lower-crossbar",  # conv, transposed conv, linear (+ flatten, pools) -> im2col + crossbar
    "dce",  # drop nodes whose results nothing reads (the folded weights)
    "choose-drive",  # binary spikes: one read; multi-level inputs: bit-serial planes
    "map-pairs",  # signed weights -> differential conductance pairs
    "tile",  # split matrices to the array size, drop rows/cols a mask empties
    "place",  # tiles onto arrays and macros (device map: stuck cells, cell check)
    "schedule",  # reads, partial sums and neuron updates of one timestep
)


@dataclass
class CompileResult:
    """The graph after the last stage that ran, and what ran."""

    graph: Graph
    input_kind: str
    stages: list[str] = field(default_factory=list)
    records: list[PassRecord] = field(default_factory=list)
    stopped_after: str | None = None
    seconds: float = 0.0
    extras: dict[str, Any] = field(default_factory=dict)


def read_ir(path: Path) -> Graph:
    """Read and verify a .pir file (with its weight side file if present)."""
    graph, lines, _ = read_graph_file(path)
    return verify(graph, lines, str(path))


def frontend(
    path: Path, arch: str | None, trust_pickle: bool, log: Callable[[str], None]
) -> tuple[Graph, str]:
    """Run the frontend stages on a model file; return the imported graph and the input kind."""
    if path.suffix == ".pir":
        return read_ir(path), "primec IR text (.pir)"
    try:
        from primec import frontend as fe
    except ImportError as exc:  # pragma: no cover - only before the frontend exists
        raise PrimecError(
            "loading PyTorch and ONNX models is not built yet (the frontend issue)",
            where=str(path),
            hint="give a .pir IR file instead",
        ) from exc
    source = fe.load(path, arch=arch, trust_pickle=trust_pickle)
    log(f"recognised {source.kind}")
    model = fe.export(source)
    return fe.import_onnx(model, source=str(path)), source.kind


def compile_model(
    path: Path,
    arch: str | None = None,
    trust_pickle: bool = False,
    options: PassOptions | None = None,
    target: Target | None = None,
    log: Callable[[str], None] = print,
) -> CompileResult:
    """Frontend, then every pass of `PASS_PIPELINE` (up to `options.stop_after`).

    `target` defaults to `DEFAULT_TARGET`; the mapping passes read it (and its device map).
    """
    options = options or PassOptions()
    target = load_target(DEFAULT_TARGET) if target is None else target
    started = time.perf_counter()
    manager = PassManager(PASSES, options, log)
    manager.check_names(PASS_PIPELINE, FRONTEND_STAGES)
    graph, kind = frontend(path, arch, trust_pickle, log)
    manager.stage_done("import", graph)
    result = CompileResult(graph, kind, list(FRONTEND_STAGES))
    if options.stop_after in FRONTEND_STAGES:
        result.stopped_after = "import"
        result.seconds = time.perf_counter() - started
        return result
    run = manager.run(graph, PASS_PIPELINE, target, before=FRONTEND_STAGES)
    result.graph, result.records, result.stopped_after = run.graph, run.records, run.stopped_after
    result.stages += [r.name for r in run.records]
    result.seconds = time.perf_counter() - started
    return result
