"""`primec calibrate-adc`: each tile's ADC full scale from the currents calibration data produce."""

from __future__ import annotations

import click

from primec.cli.common import checked_outputs, user_errors, write_report
from primec.cli.simulate import input_option
from primec.errors import PrimecError


@click.command("calibrate-adc")
@click.argument("artefact", type=click.Path(exists=True, dir_okay=False))
@input_option("Calibration data.npz with x [N,T,...] (use data other than the test set).")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="The calibrated artefact (the input's format: .pbc or .pmac).",
)
@click.option(
    "--percentile",
    type=float,
    default=99.9,
    show_default=True,
    help="A tile's full scale is this percentile of its nonzero read currents.",
)
@click.option(
    "--per",
    type=click.Choice(["tile", "column"]),
    default="tile",
    show_default=True,
    help="One full scale per tile, or also one per column pair (each output's ADC).",
)
@click.option("--report", type=click.Path(dir_okay=False), help="JSON: each tile's range.")
@user_errors
@checked_outputs({"output": "-o", "report": "--report"}, ("artefact", "input_path"))
def calibrate_adc(
    artefact: str, input_path: str, output: str, percentile: float, per: str, report: str | None
) -> None:
    """Calibrate each tile's ADC full scale on data and write it into the artefact.

    \b
    The simulator then converts each read on its tile's range (`--noise adc_cal=0`: the
    target's one range again), and the macro file tells the chip each read's range. With
    `--per column` each output's ADC (its column pair's) also gets its own range, which the
    simulator uses by default (`--noise adc_cal=1`: the tiles' ranges).
    Example:
      primec datasets ndigits --split train -o train.npz
      primec calibrate-adc model.pbc --input train.npz -o model-cal.pbc
      primec calibrate-adc model.pbc --input train.npz --per column -o model-col.pbc
      primec simulate model-cal.pbc --input test.npz --noise adc=4
    """
    from pathlib import Path

    from primec.backends import BACKENDS, backend_of, read_artefact
    from primec.fileio import atomic_write_bytes
    from primec.runtime.adccalibration import calibrate_adc as calibrate
    from primec.runtime.simulation import artefact_inputs

    program = read_artefact(artefact)
    backend = backend_of(Path(artefact).read_bytes()[:8]) or BACKENDS["bytecode"]
    named = {b.suffix: b for b in BACKENDS.values()}.get(Path(output).suffix)
    if named is not None and named is not backend:
        raise PrimecError(
            f"-o {output} names a {named.suffix} file, and the calibrated artefact is a "
            f"{backend.suffix} like {artefact}",
            hint=f"give -o a {backend.suffix} name, e.g. {Path(artefact).stem}-cal{backend.suffix}",
        )
    data = artefact_inputs(program, input_path)
    calibrated, summary = calibrate(program, data.x, percentile, per)
    atomic_write_bytes(output, backend.encode(calibrated))
    write_report(report, summary)
    unread = [summary["tiles"][k]["tile"] for k in summary["unread_tiles"]]
    if unread:
        click.echo(
            f"warning: {len(unread)} of {len(summary['tiles'])} tiles read no current on these "
            f"samples ({', '.join(unread[:3])}{', ...' if len(unread) > 3 else ''}) and keep the "
            f"target's range ({summary['target_full_scale_ua']:g} uA); calibrate on data that "
            "drives them (e.g. the train split)",
            err=True,
        )
    ranges = ", ".join(f"{t['full_scale_ua']:.3g}" for t in summary["tiles"])
    columns = [t["column_full_scale_ua"] for t in summary["tiles"] if "column_full_scale_ua" in t]
    if columns:
        low, high = min(map(min, columns)), max(map(max, columns))
        click.echo(f"ADC full scale per column: {low:.3g}-{high:.3g} uA")
    click.echo(
        f"ADC full scale per tile (uA, {percentile:g}th percentile of {summary['samples']} "
        f"samples' reads; target: {summary['target_full_scale_ua']:g}): {ranges}\nwrote {output}"
    )
