"""The commands of the applications: `demo`, `datasets`, `targets`, `devicemap`, `train`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from primec.cli.common import checked_outputs, target_option, user_errors
from primec.errors import PrimecError


@click.command()
@click.option(
    "--out",
    "out_dir",
    default="demo-out",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the demo's outputs.",
)
@click.option(
    "--samples",
    type=click.IntRange(min=10),
    help="Use only the first N samples of each split (a quick look).",
)
@user_errors
def demo(out_dir: str, samples: int | None) -> None:
    """Run primec's main job end to end on the embedded default (the released PRIME classifier).

    \b
    Example:
      primec demo --out demo-out
    """
    from primec.apps.demo import run_demo

    run_demo(Path(out_dir), log=click.echo, samples=samples)


@click.group()
def datasets() -> None:
    """Make the embedded datasets (no download needed).

    \b
    Example:
      primec datasets ndigits --split test -o test.npz
    """


SPLIT_OPTION = click.option(
    "--split",
    type=click.Choice(["train", "calibration", "test", "all"]),
    default="test",
    show_default=True,
)


def npz_output(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The required `-o/--output` option of a command that writes one .npz."""
    return click.option(
        "-o", "--output", required=True, type=click.Path(dir_okay=False), help=help_text
    )


@datasets.command("ndigits")
@SPLIT_OPTION
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the event sensor model."
)
@click.option(
    "--timesteps", type=click.IntRange(1, 1000), default=10, show_default=True, help="Time bins T."
)
@npz_output("The .npz to write (x, y).")
@user_errors
@checked_outputs({"output": "-o"}, ())
def ndigits(split: str, seed: int, timesteps: int, output: str) -> None:
    """N-MNIST-like events from scikit-learn's digits, in the simulator's input format.

    \b
    Writes x: float32 [N, T, 2, 34, 34] event counts and y: int64 [N] labels.
    Example:
      primec datasets ndigits --split calibration -o calibration.npz
    """
    from primec.datasets import load_split, make_ndigits, save_npz

    x, y = make_ndigits(seed, timesteps) if split == "all" else load_split(split, seed, timesteps)
    save_npz(output, x, y)
    click.echo(f"wrote {output}: {len(y)} samples, x {list(x.shape)}")


@datasets.command("digits-inpaint")
@SPLIT_OPTION
@click.option(
    "--timesteps", type=click.IntRange(1, 1000), default=16, show_default=True, help="Steps T."
)
@npz_output("The .npz to write (x, clean, mask, y).")
@user_errors
@checked_outputs({"output": "-o"}, ())
def digits_inpaint(split: str, timesteps: int, output: str) -> None:
    """32x32 digits in [-1, 1] with PRIME's 8x8 central hole, from scikit-learn's digits.

    \b
    Writes x: float32 [N, T, 1, 32, 32] holed images (repeated every step), clean: float32
    [N, 1, 32, 32], mask: uint8 [1, 32, 32] (1 in the hole) and y: int64 [N] digit labels.
    Example:
      primec datasets digits-inpaint --split test -o inpaint-test.npz
    """
    from primec.datasets.inpaint import make_split, save_inpaint

    data = make_split(split, timesteps)
    save_inpaint(output, data)
    click.echo(f"wrote {output}: {len(data.y)} samples, x {list(data.x.shape)}")


FSVAE_EPOCHS, FSVAE_LR = 2, 1e-2  # prime-fsvae's defaults (Adam), in place of the classifier's


def _train_fsvae(
    recipe: tuple[int, int, float, int, float, float],
    threads: int,
    samples: int | None,
    target: str,
    output: str,
) -> None:
    """`primec train --arch prime-fsvae`: PRIME's MSE + MMD on digits-inpaint (primec.apps.inpaint)."""
    from primec.apps.inpaint import train_fsvae
    from primec.apps.train import save_model

    epochs, batch_size, lr, seed, hole_weight, mmd_weight = recipe
    # The classifier's defaults (20 epochs, SGD 0.1) are not the FSVAE's: its own, unless given.
    given = click.get_current_context().get_parameter_source
    epochs = epochs if given("epochs") != ParameterSource.DEFAULT else FSVAE_EPOCHS
    lr = lr if given("lr") != ParameterSource.DEFAULT else FSVAE_LR
    model, history = train_fsvae(
        epochs,
        batch_size,
        lr,
        seed,
        target,
        click.echo,
        threads=threads,
        samples=samples,
        hole_weight=hole_weight,
        mmd_weight=mmd_weight,
    )
    save_model(model, output)
    click.echo(
        f"wrote {output}: calibration hole MSE {history[-1].hole_mse:.4f} "
        f"({history[-1].hole_psnr_db:.2f} dB)"
    )


@click.command()
@click.option("--show", metavar="NAME|FILE", help="Print every parameter of one target.")
@user_errors
def targets(show: str | None) -> None:
    """List the built-in targets, or show one target's parameters and their provenance.

    \b
    Examples:
      primec targets
      primec targets --show prime-40nm-256k
    """
    from primec.hardware.target import describe_target, load_target, target_names

    if show:
        click.echo(describe_target(load_target(show)))
        return
    for name in target_names():
        t = load_target(name)
        click.echo(
            f"{name}: {t.chip.macros} macros x {t.chip.arrays_per_macro} arrays of "
            f"{t.array.rows} x {t.array.cols} cells - {t.description}"
        )


@click.group()
def devicemap() -> None:
    """Device maps: per-cell conductances and faults of a chip (format in docs/mapping.md).

    \b
    Example:
      primec devicemap synth --target prime-40nm-256k --seed 7 --macros 1 -o chip.npz
    """


@devicemap.command("synth")
@target_option("Target whose distribution to draw from.")
@click.option(
    "--seed", type=int, required=True, help="Random seed (the same seed gives the same map)."
)
@click.option(
    "--macros",
    type=click.IntRange(min=1),
    help="Macros to synthesise (default: all of the target's).",
)
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False), help="The .npz to write."
)
@user_errors
@checked_outputs({"output": "-o"}, ("target_spec",))
def devicemap_synth(target_spec: str, seed: int, macros: int | None, output: str) -> None:
    """Synthesise a device map from the target's as-formed distribution and stuck-at rates.

    \b
    Example:
      primec devicemap synth --target prime-40nm-256k --seed 7 --macros 1 -o chip.npz
    """
    from primec.hardware.devicemap import STUCK_HIGH, STUCK_LOW, save, synth
    from primec.hardware.target import load_target

    target = load_target(target_spec)
    if macros is not None and macros > target.chip.macros:
        raise PrimecError(f"--macros {macros} exceeds the target's {target.chip.macros} macros")
    chip = synth(target, seed, macros)
    save(chip, output)
    low, high = int((chip.fault == STUCK_LOW).sum()), int((chip.fault == STUCK_HIGH).sum())
    click.echo(
        f"wrote {output}: {chip.macros} macro(s) of {target.name}, seed {seed}, "
        f"{low} cells stuck low, {high} stuck high"
    )


@click.command()
@click.option(
    "--arch",
    required=True,
    metavar="NAME",
    help="Built-in supermask architecture, e.g. ndigits-small.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Passes over the N-Digits train split.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Samples per step.",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=0.1,
    show_default=True,
    help="Learning rate of the scores (SGD, momentum 0.9, cosine).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the weights, scores and batch order.",
)
@click.option(
    "--loss",
    type=click.Choice(["all_steps", "final"]),
    default="all_steps",
    show_default=True,
    help="Cross-entropy after every step (earlier exits) or after the last only.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="CPU threads; the result depends on it, bit for bit.",
)
@click.option(
    "--device-map",
    type=click.Path(exists=True, dir_okay=False),
    help="Chip (.npz) whose cells are the weights; the model compiles back onto them.",
)
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    help="prime-fsvae only: train on the first N samples of the train split (default: all).",
)
@click.option(
    "--hole-weight",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="prime-fsvae only: the hole's squared errors count this many times (1: PRIME's MSE).",
)
@click.option(
    "--mmd-weight",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="prime-fsvae only: weight of the MMD term (1: PRIME's loss; 0: reconstruction only).",
)
@target_option("Target: as-formed distribution and chip layout.")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="The state_dict (.pt) to write.",
)
@user_errors
@checked_outputs({"output": "-o"}, ("device_map", "target_spec", "arch"))
def train(
    arch: str,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    loss: str,
    threads: int,
    samples: int | None,
    hole_weight: float,
    mmd_weight: float,
    device_map: str | None,
    target_spec: str,
    output: str,
) -> None:
    """Train a supermask SNN on N-Digits: only the masks learn, the weights stay as-formed.

    \b
    Writes a state_dict that `primec compile --arch NAME` reads; same seed, same bytes.
    Examples:
      primec train --arch ndigits-small --epochs 20 --seed 0 -o model.pt
      primec devicemap synth --seed 7 --macros 1 -o chip.npz
      primec train --arch ndigits-small --device-map chip.npz -o model.pt
    """
    from primec.apps.train import save_model
    from primec.apps.train import train as train_scores

    if arch == "prime-fsvae":
        if device_map is not None or loss != "all_steps":
            raise PrimecError(
                "prime-fsvae trains with PRIME's loss (MSE + MMD) on drawn weights",
                hint="drop --device-map and --loss for --arch prime-fsvae",
            )
        recipe = (epochs, batch_size, lr, seed, hole_weight, mmd_weight)
        _train_fsvae(recipe, threads, samples, target_spec, output)
        return
    if samples is not None:
        raise PrimecError("--samples is for --arch prime-fsvae", hint="drop --samples")
    if (hole_weight, mmd_weight) != (1.0, 1.0):
        raise PrimecError(
            "--hole-weight and --mmd-weight are for --arch prime-fsvae",
            hint="drop --hole-weight and --mmd-weight",
        )
    model, history = train_scores(
        arch,
        epochs,
        batch_size,
        lr,
        seed,
        device_map,
        target_spec,
        log=click.echo,
        loss=loss,
        threads=threads,
    )
    save_model(model, output)
    click.echo(
        f"wrote {output}: calibration accuracy {100 * history[-1].calibration_accuracy:.1f}%"
    )
