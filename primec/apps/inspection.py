"""`primec inspect`: a readable view of every file primec reads or writes, chosen by content."""

from __future__ import annotations

from pathlib import Path

from primec.errors import PrimecError


def describe(path: Path) -> str:
    """The text `primec inspect` prints for one file."""
    from primec.backends import artefact_kind

    suffix = path.suffix
    if path.is_file() and artefact_kind(path) is not None:  # by its magic, whatever its name
        return _artefact(path)
    if suffix == ".pir":
        from primec.core.text import print_graph
        from primec.pipeline import read_ir

        return print_graph(read_ir(path))
    if suffix in (".pbc", ".pmac"):
        return _artefact(path)
    if suffix == ".onnx":
        return _onnx(path)
    raise PrimecError(
        f"cannot inspect {suffix or 'this kind of'} file",
        where=str(path),
        hint="primec inspect reads .pir, .pbc, .pmac and .onnx files",
    )


def _artefact(path: Path) -> str:
    from primec.backends import macrofile, magic_kind, read_artefact

    program = read_artefact(path)
    if magic_kind(path) == "pmac":  # the format read_artefact decoded
        return macrofile.summary(path) + "\n"
    table = program.exit_table
    header = [
        f"bytecode {path}: model {program.name}, target {program.meta['target']} (#{program.meta['target_hash']}), T={program.timesteps}",
        f"  input {list(program.input_shape)}, readout {list(program.buffers[program.readout])}, {len(program.buffers)} buffers, {len(program.states)} states, {len(program.arrays)} arrays",
        f"  early exit: {macrofile.describe_table(table)}",
        "",
    ]
    return "\n".join(header) + program.disassembly() + "\n"


def _onnx(path: Path) -> str:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises several unrelated types for a bad file
        raise PrimecError(f"cannot read ONNX file: {exc}", where=str(path)) from exc
    graph = model.graph
    ops: dict[str, int] = {}
    for node in graph.node:
        name = f"{node.domain}::{node.op_type}" if node.domain else node.op_type
        ops[name] = ops.get(name, 0) + 1
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    lines = [
        f"ONNX {path}: graph {graph.name}, opsets {opsets}",
        "  inputs: " + ", ".join(str(i.name) for i in graph.input),
        "  outputs: " + ", ".join(str(o.name) for o in graph.output),
        "  ops: " + ", ".join(f"{k} x{v}" for k, v in sorted(ops.items())),
        "  functions: " + (", ".join(f"{f.domain}::{f.name}" for f in model.functions) or "none"),
        "  metadata: " + ", ".join(f"{p.key}={p.value!s}" for p in model.metadata_props),
    ]
    return "\n".join(lines) + "\n"
