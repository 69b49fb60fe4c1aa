"""Target descriptions: the hardware parameters of a memristor macro system, in one frozen `Target`.

A target is a TOML file with one table per section below (`[array]`, `[chip]`, ...). Every
parameter is required and checked (type, range); a `[provenance]` table says, per `section.key`,
whether a number is a published fact, our assumption or a placeholder, and where it comes from.
Built-in targets are registered in `BUILTIN_TARGETS`; any other target is given as a file
(`--target FILE.toml`), so users add targets without touching code. See docs/targets.md.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from primec.errors import PrimecError
from primec.hardware import costmodel
from primec.hardware.geometry import PAIR

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the `tomli` backport
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None

TARGET_DIR = Path(__file__).resolve().parent / "targets"
BUILTIN_TARGETS = {
    "prime-40nm-256k": "prime-40nm-256k.toml",
}
DEFAULT_TARGET = "prime-40nm-256k"
PROVENANCE_KINDS = ("fact", "assumption", "placeholder", "derived", "estimate")


def _p(unit: str, low: float | None = None, high: float | None = None, **extra: Any) -> Any:
    """A dataclass field with its unit and allowed range (checked when a file is loaded)."""
    return field(metadata={"unit": unit, "low": low, "high": high, **extra})


@dataclass(frozen=True)
class ArraySpec:
    """One crossbar array: rows (inputs) x columns (cells per row)."""

    rows: int = _p("rows", 1, 4096)
    cols: int = _p("columns", 2, 4096, even=True)


@dataclass(frozen=True)
class ChipSpec:
    """How arrays group into macros, and how many macros the system has."""

    arrays_per_macro: int = _p("arrays", 1, 1024)
    macros: int = _p("macros", 1, 1 << 16)


@dataclass(frozen=True)
class CellSpec:
    """Cell conductances, the weight encoding, noise and faults."""

    encoding: str = _p("", choices=("differential",))
    g_off_us: float = _p("uS", 0.0)
    g_max_us: float = _p("uS", 0.0, positive=True)
    formed_distribution: str = _p("", choices=("normal",))
    formed_mean_us: float = _p("uS", 0.0)
    formed_std_us: float = _p("uS", 0.0)
    read_noise: float = _p("relative std", 0.0, 1.0)
    stuck_low_rate: float = _p("fraction of cells", 0.0, 1.0)
    stuck_high_rate: float = _p("fraction of cells", 0.0, 1.0)
    write_verify_tolerance_us: float = _p("uS", 0.0, positive=True)
    map_tolerance_us: float = _p("uS", 0.0)


@dataclass(frozen=True)
class InputSpec:
    """The row drivers: bits of a multi-level input and how they are driven."""

    bits: int = _p("bits", 1, 32)
    driver: str = _p("", choices=("bit_serial",))


@dataclass(frozen=True)
class AdcSpec:
    """The column ADCs."""

    bits: int = _p("bits", 1, 32)
    full_scale_ua: float = _p("uA", 0.0, positive=True)


@dataclass(frozen=True)
class ReadSpec:
    """One crossbar read: voltage and latency."""

    voltage_v: float = _p("V", 0.0, positive=True)
    latency_ns: float = _p("ns", 0.0)


@dataclass(frozen=True)
class EnergySpec:
    """Energy per operation class."""

    cell_read_pj: float = _p("pJ per cell per read", 0.0)
    row_drive_pj: float = _p("pJ per row per read", 0.0)
    adc_conversion_pj: float = _p("pJ per conversion", 0.0)
    digital_add_pj: float = _p("pJ per add", 0.0)
    digital_multiply_pj: float = _p("pJ per multiply", 0.0)
    lif_update_pj: float = _p("pJ per neuron update", 0.0)
    controller_pj: float = _p("pJ per timestep", 0.0)
    macro_transfer_pj_per_bit: float = _p("pJ per bit moved between macros", 0.0)


@dataclass(frozen=True)
class BaselineSpec:
    """The GPU that energy-efficiency ratios are taken against."""

    name: str = _p("")
    energy_per_mac_pj: float = _p("pJ per multiply-accumulate", 0.0)
    peak_tflops: float = _p("TFLOP/s", 0.0, positive=True)
    memory_gbs: float = _p("GB/s", 0.0, positive=True)
    static_power_w: float = _p("W", 0.0)
    pj_per_flop: float = _p("pJ per FLOP", 0.0, positive=True)
    pj_per_byte: float = _p("pJ per byte of memory traffic", 0.0, positive=True)
    kernel_launch_us: float = _p("us per kernel", 0.0)
    kernels_per_layer: float = _p("kernels per layer and step", 0.0)
    large_batch: int = _p("samples", 1)


@dataclass(frozen=True)
class DriftSpec:  # optional: cell drift t >= 1 s after programming (simulator/drift.py)
    gain: float = _p("", 0.0, positive=True)
    mean_log_us: float = _p("uS per ln(t / 1 s)")
    std_log_us: float = _p("uS per ln(t / 1 s)", 0.0)
    std_us: float = _p("uS", 0.0)
    g_min_us: float = _p("uS", 0.0)


SECTIONS: dict[str, type] = {
    "array": ArraySpec,
    "chip": ChipSpec,
    "cells": CellSpec,
    "input": InputSpec,
    "adc": AdcSpec,
    "read": ReadSpec,
    "energy": EnergySpec,
    "baseline": BaselineSpec,
}
OPTIONAL_SECTIONS: dict[str, type] = {"drift": DriftSpec}  # None when left out; not in artefacts
ALL_SECTIONS = SECTIONS | OPTIONAL_SECTIONS


@dataclass(frozen=True)
class Target:
    """A memristor macro system: pure data (per-compile choices travel beside it, `Choices`)."""

    name: str
    description: str
    process_nm: int
    array: ArraySpec
    chip: ChipSpec
    cells: CellSpec
    input: InputSpec
    adc: AdcSpec
    read: ReadSpec
    energy: EnergySpec
    baseline: BaselineSpec
    provenance: tuple[tuple[str, str], ...] = ()
    estimates: tuple[tuple[str, float, float], ...] = ()  # (key, low, high) in the key's unit
    source: str = ""
    drift: DriftSpec | None = None

    @property
    def cells_per_array(self) -> int:
        """Cells in one array."""
        return self.array.rows * self.array.cols

    @property
    def pairs_per_row(self) -> int:
        """Differential pairs (signed weights) one array row holds."""
        return PAIR.pairs_in(self.array.cols)

    @property
    def arrays(self) -> int:
        """Arrays available in all (macros x arrays per macro)."""
        return self.chip.macros * self.chip.arrays_per_macro

    def parameters(self) -> list[tuple[str, Any, str]]:
        """Every parameter as (section.key, value, unit), in file order."""
        rows = []
        for section in SECTIONS:
            spec = getattr(self, section)
            for f in dataclasses.fields(spec):
                rows.append((f"{section}.{f.name}", getattr(spec, f.name), f.metadata["unit"]))
        return rows

    def optional_parameters(self) -> list[tuple[str, Any, str]]:
        """The drift table's parameters, if the target has one, as `parameters()` gives them."""
        fields = dataclasses.fields(DriftSpec) if self.drift else ()
        return [
            (f"drift.{f.name}", getattr(self.drift, f.name), f.metadata["unit"]) for f in fields
        ]


def target_names() -> list[str]:
    """The names of the built-in targets."""
    return sorted(BUILTIN_TARGETS)


def load_target(spec: str | Path) -> Target:
    """A built-in target by name, or a target file by path."""
    text = str(spec)
    if text in BUILTIN_TARGETS:
        return load_target_file(TARGET_DIR / BUILTIN_TARGETS[text])
    path = Path(text)
    if path.suffix == ".toml" or path.exists():
        return load_target_file(path)
    close = difflib.get_close_matches(text, target_names(), n=1)
    raise PrimecError(
        f"unknown target {text!r}" + (f" (did you mean {close[0]!r}?)" if close else ""),
        hint=f"known targets: {', '.join(target_names())}; or give a target file FILE.toml",
    )


def describe_target(target: Target) -> str:
    """Every parameter of a target with its unit and provenance, one per line."""
    notes = dict(target.provenance)
    lines = [f"{target.name}: {target.description}", f"  from {target.source}"]
    bounds = {key: (low, high) for key, low, high in target.estimates}
    rows = [("target.process_nm", target.process_nm, "nm"), *target.parameters()]
    rows += target.optional_parameters()
    for key, value, unit in rows:
        shown = f"  {key} = {value!r} {unit}".rstrip()
        if key in bounds:
            shown += f" (low {bounds[key][0]!r}, high {bounds[key][1]!r})"
        lines.append(shown + f"    [{notes.get(key, 'no provenance')}]")
    return "\n".join(lines)


def load_target_file(path: Path) -> Target:
    """Read and check a target TOML file."""
    if tomllib is None:  # pragma: no cover - Python 3.10 without tomli
        raise PrimecError("reading target files needs Python 3.11 or the `tomli` package")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PrimecError(f"cannot read target file: {exc.strerror}", where=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise PrimecError(f"target file is not UTF-8 text: {exc}", where=str(path)) from exc
    except (tomllib.TOMLDecodeError, RecursionError, ValueError) as exc:
        raise PrimecError(f"malformed TOML: {exc!s:.200}", where=str(path)) from exc
    return _Loader(path).target(data)


class _Loader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str, hint: str = "") -> None:
        raise PrimecError(f"{key}: {problem}", where=str(self.path), hint=hint)

    def target(self, data: dict[str, Any]) -> Target:
        self.no_unknown("", data, ["target", *ALL_SECTIONS, "provenance", "estimates"])
        head = self.table("target", data)
        self.no_unknown("target", head, ["name", "description", "process_nm"])
        sections = {name: self.section(name, spec, data) for name, spec in SECTIONS.items()}
        target = Target(
            name=self.typed("target.name", head, str),
            description=self.typed("target.description", head, str),
            process_nm=self.typed("target.process_nm", head, int),
            provenance=self.provenance(data.get("provenance", {})),
            estimates=costmodel.estimates(data.get("estimates", {}), sections, self.fail),
            source=str(self.path),
            drift=self.section("drift", DriftSpec, data) if "drift" in data else None,
            **sections,
        )
        self.cross_checks(target)
        costmodel.check_costs(target, self.fail)
        return target

    def table(self, name: str, data: dict[str, Any]) -> dict[str, Any]:
        value = data.get(name)
        if value is None:
            self.fail(f"[{name}]", "missing table", f"add a [{name}] table (see docs/targets.md)")
        if not isinstance(value, dict):
            self.fail(f"[{name}]", f"must be a table, got {type(value).__name__}")
        return value

    def no_unknown(self, where: str, data: dict[str, Any], known: list[str]) -> None:
        for key in data:
            if key in known:
                continue
            close = difflib.get_close_matches(key, known, n=1)
            name = f"{where}.{key}" if where else f"[{key}]"
            self.fail(
                name,
                "unknown key" + (f" (did you mean {close[0]!r}?)" if close else ""),
                f"known keys here: {', '.join(known)}",
            )

    def section(self, name: str, spec: type, data: dict[str, Any]) -> Any:
        table = self.table(name, data)
        fields = dataclasses.fields(spec)
        self.no_unknown(name, table, [f.name for f in fields])
        values = {f.name: self.checked(f"{name}.{f.name}", table, f) for f in fields}
        return spec(**values)

    def checked(self, key: str, table: dict[str, Any], spec_field: dataclasses.Field) -> Any:
        kind = {"int": int, "float": float, "str": str}[str(spec_field.type)]
        meta = spec_field.metadata
        raw = table.get(key.split(".")[-1])
        if kind is float and isinstance(raw, str):  # a value with its unit, e.g. "2 pJ"
            table = {key.split(".")[-1]: costmodel.quantity(key, raw, meta["unit"], self.fail)}
        value = self.typed(key, table, kind)
        problem = parameter_problem(spec_field, value)
        if problem:
            self.fail(key, problem)
        return value

    def typed(self, key: str, table: dict[str, Any], kind: type) -> Any:
        short = key.split(".")[-1]
        if short not in table:
            self.fail(key, f"missing key ({kind.__name__})")
        value = table[short]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            self.fail(key, f"must be {_KIND_WORDS[kind]}, got {type(value).__name__} {value!r}")
        return value

    def provenance(self, table: Any) -> tuple[tuple[str, str], ...]:
        if not isinstance(table, dict):
            self.fail("[provenance]", "must be a table of 'section.key' = 'kind: source'")
        known = ["target.process_nm"] + [
            f"{s}.{f.name}" for s, spec in ALL_SECTIONS.items() for f in dataclasses.fields(spec)
        ]
        self.no_unknown("provenance", table, known)
        for key, note in table.items():
            kind = str(note).split(":", 1)[0]
            if not isinstance(note, str) or kind not in PROVENANCE_KINDS:
                self.fail(
                    f"provenance.{key}",
                    f"must start with one of {', '.join(PROVENANCE_KINDS)} and a colon, got {note!r}",
                )
        return tuple(sorted(table.items()))

    def cross_checks(self, target: Target) -> None:
        cells = target.cells
        if cells.g_max_us <= cells.g_off_us:
            self.fail(
                "cells.g_max_us",
                f"must exceed cells.g_off_us ({cells.g_off_us} uS), got {cells.g_max_us}",
            )
        if not cells.g_off_us <= cells.formed_mean_us <= cells.g_max_us:
            self.fail(
                "cells.formed_mean_us",
                f"must lie between g_off_us and g_max_us, got {cells.formed_mean_us}",
            )
        if cells.stuck_low_rate + cells.stuck_high_rate >= 1.0:
            self.fail("cells.stuck_high_rate", "stuck-at rates must add up to less than 1")


_KIND_WORDS = {int: "an integer", float: "a number", str: "a string"}


def parameter_fields() -> dict[str, dataclasses.Field]:
    """Every target parameter's field (unit, range, choices) by its `section.key`."""
    return {
        f"{section}.{f.name}": f
        for section, spec in SECTIONS.items()
        for f in dataclasses.fields(spec)
    }


def parameter_problem(spec_field: dataclasses.Field, value: Any) -> str | None:
    """What is wrong with a parameter's value by its field's kind, choices and range, if anything."""
    kind = {"int": int, "float": float, "str": str}[str(spec_field.type)]
    meta = spec_field.metadata
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
        return f"must be {_KIND_WORDS[kind]}, got {type(value).__name__} {value!r}"
    choices = meta.get("choices")
    if choices and value not in choices:
        return f"must be one of {', '.join(choices)}, got {value!r}"
    if kind is str:
        return None
    low, high, unit = meta["low"], meta["high"], meta["unit"]
    if not math.isfinite(value):
        return f"must be a finite number{f' of {unit}' if unit else ''}, got {value}"
    if meta.get("positive") and value <= 0:
        return f"must be positive{f' ({unit})' if unit else ''}, got {value}"
    if low is not None and value < low:
        return f"must be at least {f'{low} {unit}'.strip()}, got {value}"
    if high is not None and (value >= high if kind is float else value > high):
        limit = f"{high} {unit}".strip()
        return f"must be {'below' if kind is float else 'at most'} {limit}, got {value}"
    if meta.get("even") and value % 2:
        return f"must be even ({unit} come in pairs), got {value}"
    return None
