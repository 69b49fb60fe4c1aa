"""`primec inspect`, `check` and `export`: look at, validate and convert files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from primec.cli.common import checked_outputs, user_errors
from primec.cli.nircli import nir_flags, nir_options


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@user_errors
def inspect(file: str) -> None:
    """Show a file: IR text (.pir) verified and canonical, bytecode (.pbc) disassembled,
    a macro file (.pmac) summarised, an ONNX step graph (.onnx) summarised.

    \b
    Examples:
      primec inspect ir/00-import.pir
      primec inspect model.pbc
      primec inspect model.pmac
    """
    from primec.apps.inspection import describe

    click.echo(describe(Path(file)), nl=False)


@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--arch", help="Architecture for a state_dict: a built-in name or FILE.py:factory.")
@click.option(
    "--trust-pickle", is_flag=True, help="Allow a pickled whole module (runs code from the file!)."
)
@nir_flags
@user_errors
def check(model: str, arch: str | None, trust_pickle: bool, **nir: Any) -> None:
    """Check that MODEL goes through the frontend, listing every problem at once; or validate a
    compiled artefact (.pbc, .pmac: structure, checksums, cross-references).

    \b
    Examples:
      primec check model.pt --arch prime-nmnist
      primec check model.pmac
    """
    from primec.backends import artefact_kind, magic_kind, read_artefact
    from primec.core.verify import verify
    from primec.pipeline import frontend

    # An artefact by its magic, as `simulate` reads it (whatever its name), or by its suffix.
    kind = artefact_kind(model)
    if kind is not None or Path(model).suffix in (".pbc", ".pmac"):
        program = read_artefact(model)  # reading validates structure, checksums, cross-references
        click.echo(
            f"ok: {magic_kind(model)} artefact {program.name} for {program.meta['target']}: {len(program.instrs)} instructions, {len(program.arrays)} arrays"
        )
        return
    # Loading, export and import each report all of their problems in one error.
    graph, kind = frontend(Path(model), arch, trust_pickle, click.echo, nir_options(nir))
    verify(graph, source=model)
    click.echo(
        f"ok: {kind}; {len(graph.nodes)} nodes, {len(graph.states)} states, "
        f"T={graph.meta_value('timesteps')}, readout {graph.meta_value('readout')}"
    )


@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--arch", help="Architecture for a state_dict: a built-in name or FILE.py:factory.")
@click.option(
    "--trust-pickle", is_flag=True, help="Allow a pickled whole module (runs code from the file!)."
)
@click.option(
    "--to",
    "fmt",
    type=click.Choice(["onnx", "nir"]),
    default="onnx",
    show_default=True,
    help="ONNX in primec's convention, or NIR (needs --dt).",
)
@nir_flags
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="The .onnx or .nir file to write.",
)
@user_errors
@checked_outputs({"output": "-o"}, ("model", "arch"))
def export(
    model: str, arch: str | None, trust_pickle: bool, fmt: str, output: str, **nir: Any
) -> None:
    """Export MODEL's step graph to ONNX (neurons as primec-domain ops; opens in Netron) or NIR.

    \b
    Examples:
      primec export model.pt --arch prime-nmnist -o step.onnx
      primec export model.pt2 --to nir --dt 1e-4 -o model.nir
    """
    from primec import frontend as fe

    options = nir_options(nir)
    source = fe.load(Path(model), arch=arch, trust_pickle=trust_pickle, nir=options)
    click.echo(f"recognised {source.kind}")
    onnx_model = fe.export(source)
    # Never write a file that primec itself could not import back.
    graph = fe.import_onnx(onnx_model, source=model)
    if fmt == "nir":
        _write_nir(graph, options, output)
        return
    fe.save_onnx(onnx_model, output)
    click.echo(f"wrote {output} ({len(onnx_model.graph.node)} nodes, primec ONNX convention)")


def _write_nir(graph: Any, options: Any, output: str) -> None:
    """Write the step graph as NIR, saying what NIR states differently."""
    from primec.frontend.nir_export import write_nir

    warnings = write_nir(graph, options, Path(output))
    for warning in warnings:
        click.echo(f"warning: {warning}")
    click.echo(f"wrote {output} (NIR, dt {options.dt} s, {options.discretisation})")
