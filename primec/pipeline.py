"""The pipeline, read top to bottom: the frontend stages, the passes in order, the backend.

Nothing else decides the order in which primec's stages run. `compile_model` is the one way
from a model file to placed IR, instruction IR or artefact bytes: the CLI, the demo, the
benches and the tests all call it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from primec.backends import BACKENDS, Encoded
from primec.backends.lower import lower
from primec.backends.program import Program
from primec.backends.verify import verify_program
from primec.core.ir import Graph
from primec.core.passmanager import PassManager, PassOptions, PassRecord
from primec.core.text import read_graph_file
from primec.core.verify import verify
from primec.errors import PrimecError
from primec.frontend.nir_io import NirOptions
from primec.hardware.choices import NO_CHOICES, Choices
from primec.hardware.earlyexit import PRIME_RULE, Calibration, ExitTable
from primec.hardware.target import DEFAULT_TARGET, Target, load_target
from primec.passes import PASSES
from primec.runtime.calibration import calibrate_program
from primec.runtime.exitcalibration import GuaranteeOptions, certify_program
from primec.runtime.simdata import SimData, load_inputs

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
    "analog-input",  # signed analog step inputs: shifted onto the drivers' grid, result corrected
    "choose-drive",  # binary spikes: one read; multi-level inputs: bit-serial planes
    "map-pairs",  # signed weights -> differential conductance pairs
    "tile",  # split matrices to the array size, drop rows/cols a mask empties
    "place",  # tiles onto arrays and macros (device map: stuck cells, cell check)
    "schedule",  # reads, partial sums and neuron updates of one timestep
)

BACKEND_STAGES = (
    "lower",  # placed IR -> instruction IR (a Program: reads, adds, neuron updates, exit table)
    "exit-table",  # the early-exit control table: set by hand, or calibrated on data
    "encode",  # instruction IR -> the bytes of each --emit backend (.pbc, .pmac)
)


@dataclass(frozen=True)
class ExitOptions:
    """The early-exit options of `primec compile` (the demo calibrates from data in memory)."""

    rule: str | None = None
    threshold: float | None = None
    temperature: float = 1.0
    min_steps: int = 1
    max_steps: int = 0
    calibrate: str | Path | SimData | None = None
    budget_points: float = 0.5
    plot: str | None = None
    guarantee: GuaranteeOptions | None = None  # certified calibration (runtime.exitcalibration)
    progress: Callable[[int, int], None] | None = field(default=None, compare=False)

    def base_table(self) -> ExitTable | None:
        """The table set by hand, or the one calibration starts from (threshold swept)."""
        if self.plot and self.calibrate is None:
            raise PrimecError("--plot draws the calibration curve: it needs --calibrate data.npz")
        if self.guarantee is not None and self.calibrate is not None:
            self.guarantee.check(self.rule)
        if self.calibrate is not None and self.threshold is not None:
            raise PrimecError(
                "--exit-threshold and --calibrate both set the threshold", hint="give one of them"
            )
        if self.threshold is None and self.calibrate is None:
            if self.rule is not None:
                raise PrimecError(
                    f"--exit-rule {self.rule} needs --exit-threshold X or --calibrate data.npz"
                )
            return None
        threshold = self.threshold if self.threshold is not None else PRIME_RULE.threshold
        table = ExitTable(
            self.rule or "max-softmax", threshold, self.temperature, self.min_steps, self.max_steps
        )
        return table if self.calibrate is not None else table.check()


@dataclass(frozen=True)
class BackendOptions:
    """What the backend stages make: the artefacts to encode and the exit table to set."""

    emit: tuple[str, ...] = ()
    exits: ExitOptions = ExitOptions()


@dataclass
class CompileResult:
    """The values after the last stage that ran, and what ran."""

    graph: Graph
    input_kind: str
    stages: list[str] = field(default_factory=list)
    records: list[PassRecord] = field(default_factory=list)
    stopped_after: str | None = None
    seconds: float = 0.0
    program: Program | None = None
    artefacts: dict[str, bytes] = field(default_factory=dict)
    calibration: Calibration | dict[str, Any] | None = None  # a dict: certified (its report)


def read_ir(path: Path) -> Graph:
    """Read and verify a .pir file (with its weight side file if present)."""
    graph, lines, _ = read_graph_file(path)
    return verify(graph, lines, str(path))


def frontend(
    path: Path,
    arch: str | None,
    trust_pickle: bool,
    log: Callable[[str], None],
    nir: NirOptions | None = None,
) -> tuple[Graph, str]:
    """Run the frontend stages on a model file; return the imported graph and the input kind.

    `nir` (dt, discretisation) is what a NIR file needs."""
    if path.suffix == ".pir":
        return read_ir(path), "primec IR text (.pir)"
    from primec import frontend as fe

    source = fe.load(path, arch=arch, trust_pickle=trust_pickle, nir=nir)
    log(f"recognised {source.kind}")
    model = fe.export(source)
    return fe.import_onnx(model, source=str(path)), source.kind


@dataclass
class BackendRun:
    """What the backend stages leave beside the value they pass on (read by `compile_model`)."""

    graph: Graph | None = None
    program: Program | None = None
    artefacts: dict[str, bytes] = field(default_factory=dict)
    calibration: Calibration | dict[str, Any] | None = None


def backend_stages(backend: BackendOptions, run: BackendRun) -> dict[str, Callable[..., Any]]:
    """The backend stages as the pass manager runs them, bound to this compile's options."""

    def lower_stage(graph: Graph, target: Target, choices: Choices) -> Program:
        run.graph = graph
        run.program = lower(graph, target)
        return run.program

    def exit_stage(program: Program, target: Target, choices: Choices) -> Program:
        run.program, run.calibration = set_exit_table(program, backend.exits)
        return run.program

    def encode_stage(program: Program, target: Target, choices: Choices) -> Encoded:
        run.artefacts = {name: BACKENDS[name].encode(program) for name in backend.emit}
        return Encoded(run.artefacts)

    return {"lower": lower_stage, "exit-table": exit_stage, "encode": encode_stage}


def set_exit_table(
    program: Program, exits: ExitOptions
) -> tuple[Program, Calibration | dict[str, Any] | None]:
    """The program with the exit table set by hand, calibrated, or certified; what calibration
    measured (certified: its report, a dict)."""
    base = exits.base_table()
    if base is None:
        return program, None
    if exits.calibrate is None:
        return replace(program, exit_table=base.check(_classes(program)).check()), None
    data = exits.calibrate
    if not isinstance(data, SimData):
        data = load_inputs(
            data, program.input_shape, program.timesteps, _classes(program), program.input_drive
        )
    if exits.guarantee is not None:
        return certify_program(program, data, base, exits.guarantee, exits.progress)
    return calibrate_program(program, data, base, exits.budget_points)


def _classes(program: Program) -> int:
    shape = program.buffers[program.readout]
    return int(shape[0]) if len(shape) == 1 else 0


def compile_model(
    path: Path,
    arch: str | None = None,
    trust_pickle: bool = False,
    options: PassOptions | None = None,
    target: Target | None = None,
    log: Callable[[str], None] = print,
    choices: Choices = NO_CHOICES,
    backend: BackendOptions | None = None,
    nir: NirOptions | None = None,
) -> CompileResult:
    """Frontend, every pass of `PASS_PIPELINE`, then the backend stages when `backend` is
    given (or a flag names one of them), up to `options.stop_after`.

    `target` defaults to `DEFAULT_TARGET`; `choices` (device map, macro limit) travel beside it.
    """
    options = options or PassOptions()
    named = {*options.print_after, options.stop_after} & set(BACKEND_STAGES)
    wanted = backend is not None or bool(named)
    backend = backend or BackendOptions()
    target = load_target(DEFAULT_TARGET) if target is None else target
    started = time.perf_counter()
    done = BackendRun()
    stages = dict(PASSES) | backend_stages(backend, done)
    manager = PassManager(
        stages, options, log, user_facing=BACKEND_STAGES, verifiers={Program: verify_program}
    )
    manager.check_names(PASS_PIPELINE + BACKEND_STAGES, FRONTEND_STAGES)
    graph, kind = frontend(path, arch, trust_pickle, log, nir)
    manager.stage_done("import", graph)
    result = CompileResult(graph, kind, list(FRONTEND_STAGES))
    if options.stop_after not in FRONTEND_STAGES:
        names = PASS_PIPELINE + (BACKEND_STAGES if wanted else ())
        run = manager.run(graph, names, target, choices, before=FRONTEND_STAGES)
        if isinstance(run.value, Graph):
            result.graph = run.value
        result.graph = done.graph or result.graph
        result.program, result.artefacts = done.program, done.artefacts
        result.calibration = done.calibration
        result.records, result.stopped_after = run.records, run.stopped_after
        result.stages += [r.name for r in run.records]
    else:
        result.stopped_after = "import"
    result.seconds = time.perf_counter() - started
    return result
