"""sha256 of the artefacts a refactor must keep byte-identical: run before and after, diff.

    .venv/bin/python tools/artefact_hashes.py > before.txt   # on the old commit
    .venv/bin/python tools/artefact_hashes.py > after.txt    # on the new one
    diff before.txt after.txt

Covers the demo's two models compiled the demo's way (exit threshold calibrated on the first
300 calibration samples), the released classifier from `../shared/models` (default and 4-bit
drivers, hand-set exit table), the golden IR cases on both golden targets, and a model bound to
a synthesised device map. A case that fails to compile prints `error ...` instead of a hash.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

import torch
from primec.backends import BACKENDS

from primec.apps.demo import DEMO_MODELS, compile_demo_model
from primec.datasets.ndigits import load_split
from primec.hardware.choices import NO_CHOICES, Choices, resolve_target
from primec.hardware.devicemap import bind_device_map, synth
from primec.hardware.target import DEFAULT_TARGET, load_target
from primec.nn import prime_nmnist
from primec.pipeline import BackendOptions, ExitOptions, compile_model
from primec.runtime.simdata import SimData

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "models" / "prime_nmnist_classification.pt"
SMALL_TARGET = ROOT / "tests" / "golden" / "passes" / "small-target.toml"
GOLDEN_IR = ("ir/small_conv_snn.pir", "lower/small_conv_snn.in.pir", "lower/tiny_conv.in.pir")
HAND_SET = ExitOptions(threshold=0.8, temperature=2.0)


def hashes(tag: str, artefacts: dict[str, bytes]) -> dict[str, str]:
    """One line per artefact: its tag and sha256."""
    return {f"{tag}:{k}": hashlib.sha256(v).hexdigest() for k, v in sorted(artefacts.items())}


def compiled(tag: str, path: Path, arch: str | None, target, choices=NO_CHOICES) -> dict[str, str]:
    """The hashes of one compile to every backend, or its error."""
    try:
        result = compile_model(
            path,
            arch,
            target=target,
            log=lambda _: None,
            choices=choices,
            backend=BackendOptions(tuple(BACKENDS), HAND_SET),
        )
    except Exception as exc:  # a failing case is a result too: it must fail alike after
        return {tag: f"error {type(exc).__name__}: {exc}".splitlines()[0]}
    return hashes(tag, result.artefacts)


def main() -> None:
    """Print `sha256 tag` for every case."""
    found: dict[str, str] = {}
    calibration = SimData(*(a[:300] for a in load_split("calibration")))
    for model in DEMO_MODELS:
        found |= hashes(f"demo:{model.key}", compile_demo_model(model, calibration).artefacts)
    target = load_target(DEFAULT_TARGET)
    found |= compiled("shared-released", SHARED, "prime-nmnist", target)
    four_bit, choices = resolve_target(DEFAULT_TARGET, input_bits=4)
    found |= compiled("shared-released-4bit", SHARED, "prime-nmnist", four_bit, choices)
    for case in GOLDEN_IR:
        for name in (DEFAULT_TARGET, str(SMALL_TARGET)):
            tag = f"golden/{case}@{Path(name).stem}"
            found |= compiled(tag, ROOT / "tests" / "golden" / case, None, load_target(name))
    chip = synth(target, seed=7, macros=1)
    model = prime_nmnist(seed=3)
    bind_device_map(model, chip, target)
    with tempfile.TemporaryDirectory() as folder:
        weights = Path(folder) / "bound.pt"
        torch.save(model.state_dict(), weights)
        bound = Choices(device_map=chip)
        found |= compiled("bound-devicemap", weights, "prime-nmnist", target, bound)
    sys.stdout.write("".join(f"{digest} {tag}\n" for tag, digest in found.items()))


if __name__ == "__main__":
    main()
