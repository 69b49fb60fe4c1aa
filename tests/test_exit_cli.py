"""Early exit end to end on the released PRIME classifier and N-Digits, through the CLI: PRIME's
hand-set rule in the simulator equals plain PyTorch sample by sample, calibration saves steps
within its budget on held-out data, and every bad early-exit option gets one clear error.

Subsets keep this quick: the first CALIBRATION samples of the calibration split, the first TEST
of the test split. `pytest -s` prints the numbers (`docs/early-exit.md` has the full splits).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import prime_reference
import pytest
import torch
from click.testing import CliRunner, Result

from primec.cli import main
from primec.datasets import make_ndigits, save_npz, split_indices
from primec.fileio import write_npz
from primec.hardware.earlyexit import ExitTable, apply_table, oracle_steps, predictions

MODEL = Path(__file__).resolve().parents[1] / "primec" / "models" / "prime_nmnist_classification.pt"
CALIBRATION, TEST = 120, 100
BUDGET_POINTS = 0.5
PRIME_RULE_FLAGS = (
    "--exit-rule",
    "max-softmax",
    "--exit-threshold",
    "0.8",
    "--exit-temperature",
    "2",
)


def invoke(*args: object) -> Result:
    """Run the CLI in-process."""
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Data and artefacts shared by this file's tests."""
    return tmp_path_factory.mktemp("exit")


@pytest.fixture(scope="module")
def ndigits(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The calibration and test subsets, also written as calibration.npz and test.npz."""
    x, y = make_ndigits(seed=0)
    splits = split_indices(y, seed=0)
    subsets = {
        "calibration": splits["calibration"][:CALIBRATION],
        "test": splits["test"][:TEST],
    }
    for name, indices in subsets.items():
        save_npz(folder / f"{name}.npz", x[indices], y[indices])
    return {name: (x[indices], y[indices]) for name, indices in subsets.items()}


@pytest.fixture(scope="module")
def reference(ndigits: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Plain PyTorch readouts [N, T, 10] of the test subset, in float64 throughout."""
    released = {key: value.double() for key, value in prime_reference.load_released().items()}
    weights = prime_reference.effective_weights(released)
    x = torch.from_numpy(ndigits["test"][0])
    return prime_reference.run_prime(weights, x, torch.float64)["readout"].numpy()


@pytest.fixture(scope="module")
def prime_run(folder: Path, ndigits: dict) -> tuple[dict[str, np.ndarray], dict]:
    """The released classifier with PRIME's rule set by hand, simulated on the test subset."""
    artefact = folder / "prime.pmac"
    result = invoke("compile", MODEL, "--emit", "macro", "-o", artefact, *PRIME_RULE_FLAGS)
    assert result.exit_code == 0, result.output
    return simulate(artefact, folder / "test.npz", folder / "prime")


def simulate(artefact: Path, data: Path, stem: Path, *flags: str) -> tuple[dict, dict]:
    """`primec simulate` with --output and --report, ideal (the target's non-idealities are the
    default; these tests compare with the model exactly): (per-sample arrays, report)."""
    out, report = stem.with_suffix(".npz"), stem.with_suffix(".json")
    result = invoke(
        "simulate", artefact, "--input", data, "--output", out, "--report", report,
        "--noise", "ideal", *flags,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with np.load(out) as arrays:
        return {k: arrays[k] for k in arrays.files}, json.loads(report.read_text())


def test_prime_rule_matches_plain_pytorch_per_sample(
    prime_run: tuple[dict, dict], reference: np.ndarray
) -> None:
    (outputs, report), readout = prime_run, torch.from_numpy(reference)
    steps, pred = (v.numpy() for v in prime_reference.early_exit(readout, 0.8, 2.0))
    disagree = np.flatnonzero((outputs["exit_step"] != steps) | (outputs["pred"] != pred))
    confidence = torch.softmax(readout / 2.0, dim=-1).amax(dim=-1).numpy()
    print(
        f"\nPRIME rule on {TEST} test samples: {len(disagree)} disagreements, "
        f"{outputs['exit_step'].mean():.2f} steps on average, "
        f"closest max-softmax to 0.8: {np.abs(confidence - 0.8).min():.2e}"
    )
    assert disagree.size == 0, f"samples {disagree.tolist()} differ from plain PyTorch"
    # The readouts the controller saw are the model's (exact partial sums, float64 scales).
    ran = ~np.isnan(outputs["readouts"])
    np.testing.assert_allclose(outputs["readouts"][ran], reference[ran], rtol=1e-12, atol=1e-12)
    assert np.all(ran.sum(axis=(1, 2)) == 10 * steps)
    # Exited samples run no further steps: energy and latency count only executed steps.
    assert report["operations_per_inference"]["steps"] == pytest.approx(steps.mean())
    assert report["avg_timesteps"] == pytest.approx(steps.mean())
    assert report["early_exit"]["threshold"] == 0.8


def test_no_early_exit_runs_all_steps(
    folder: Path, ndigits: dict, prime_run: tuple, reference: np.ndarray
) -> None:
    x, y = ndigits["test"]
    save_npz(folder / "four.npz", x[:4], y[:4])
    outputs, report = simulate(
        folder / "prime.pmac", folder / "four.npz", folder / "all", "--no-early-exit"
    )
    assert outputs["exit_step"].tolist() == [10] * 4 and report["early_exit"] is None
    np.testing.assert_allclose(outputs["readouts"], reference[:4], rtol=1e-12, atol=1e-12)


def test_calibration_saves_steps_within_budget_on_held_out_data(
    folder: Path, ndigits: dict, reference: np.ndarray, prime_run: tuple
) -> None:
    artefact, report, plot = folder / "cal.pmac", folder / "cal.json", folder / "cal.png"
    result = invoke(
        "compile", MODEL, "--emit", "macro", "-o", artefact, "--calibrate", folder / "calibration.npz",
        "--exit-temperature", "2", "--accuracy-budget", BUDGET_POINTS, "--report", report, "--plot", plot,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "early exit calibrated: max-softmax threshold" in result.output
    assert plot.read_bytes().startswith(b"\x89PNG")
    compiled = json.loads(report.read_text())
    calibration, table = compiled["calibration"], ExitTable.from_dict(compiled["early_exit"])
    assert len(calibration["curve"]) == 200 and table.temperature == 2.0
    assert calibration["accuracy"] >= calibration["accuracy_all_steps"] - BUDGET_POINTS / 100
    assert calibration["avg_timesteps"] < 10

    outputs, simulated = simulate(artefact, folder / "test.npz", folder / "cal-test")
    labels = ndigits["test"][1]
    # What the simulator did is the controller applied to the model's readouts.
    steps, at_exit = apply_table(table, reference)
    assert np.array_equal(outputs["exit_step"], steps)
    assert np.array_equal(outputs["pred"], predictions(at_exit))
    all_steps = float((predictions(reference[:, -1]) == labels).mean())
    hand_set = prime_run[1]
    print(
        f"\ncalibration ({CALIBRATION} samples): threshold {table.threshold:.4f}, "
        f"{calibration['avg_timesteps']:.2f} steps, accuracy {calibration['accuracy']:.2%} "
        f"(all T {calibration['accuracy_all_steps']:.2%}), oracle {calibration['oracle_avg_timesteps']:.2f} steps"
        f"\ntest ({TEST} samples): calibrated {simulated['avg_timesteps']:.2f} steps, "
        f"accuracy {simulated['accuracy']:.2%}; all T {all_steps:.2%}; "
        f"PRIME hand-set {hand_set['avg_timesteps']:.2f} steps, {hand_set['accuracy']:.2%}; "
        f"oracle {oracle_steps(reference).mean():.2f} steps"
    )
    assert simulated["accuracy"] >= all_steps - BUDGET_POINTS / 100
    assert simulated["avg_timesteps"] < hand_set["avg_timesteps"] < 10
    assert simulated["energy_per_inference_j"] < hand_set["energy_per_inference_j"]


def without_labels(folder: Path) -> Path:
    """Calibration data with x only."""
    path = folder / "unlabelled.npz"
    write_npz(path, {"x": np.load(folder / "calibration.npz")["x"][:8]})
    return path


BAD_OPTIONS = {
    "unknown rule": (("--exit-rule", "vibes", "--exit-threshold", "0.5"), "Invalid value for '--exit-rule'"),
    "threshold above 1": (("--exit-rule", "max-softmax", "--exit-threshold", "1.5"), "threshold 1.5 is out of range for max-softmax"),
    "negative margin": (("--exit-rule", "margin", "--exit-threshold", "-0.1"), "threshold -0.1 is out of range for margin"),
    "entropy above log K": (("--exit-rule", "entropy", "--exit-threshold", "5"), "threshold 5.0 is out of range for entropy"),
    "threshold not a number": (("--exit-threshold", "high"), "Invalid value for '--exit-threshold'"),
    "zero temperature": (("--exit-threshold", "0.5", "--exit-temperature", "0"), "Invalid value for '--exit-temperature'"),
    "min steps after max steps": (("--exit-threshold", "0.5", "--exit-min-steps", "5", "--exit-max-steps", "3"), "1 <= min_steps <= max_steps"),
    "rule without threshold": (("--exit-rule", "margin",), "--exit-rule margin needs --exit-threshold X or --calibrate data.npz"),
    "threshold and calibration": (("--exit-threshold", "0.5", "--calibrate", "{calibration}"), "--exit-threshold and --calibrate both set the threshold"),
    "calibration data without labels": (("--calibrate", "{unlabelled}", "--accuracy-budget", "0.5"), "calibration data needs labels"),
    "risk of zero": (("--calibrate", "{calibration}", "--exit-risk", "0"), "--exit-risk must lie strictly between 0 and 1, got 0.0"),
    "risk above one": (("--calibrate", "{calibration}", "--exit-risk", "1.5"), "--exit-risk must lie strictly between 0 and 1, got 1.5"),
    "delta of one": (("--calibrate", "{calibration}", "--exit-delta", "1"), "--exit-delta must lie strictly between 0 and 1, got 1.0"),
    "too few calibration samples": (("--calibrate", "{unlabelled}"), "calibration data has 8 samples: certifying risk <= 0.01 at delta 0.05 needs at least 299 samples"),
    "per-step too few to fit and certify": (("--calibrate", "{calibration}", "--exit-policy", "per-step", "--exit-risk", "0.02", "--exit-delta", "0.1"), "needs at least 114 there, so at least 163 in all"),
    "accuracy risk without labels": (("--calibrate", "{unlabelled}", "--exit-guarantee", "accuracy"), "--exit-guarantee accuracy needs labels `y`"),
    "risk without calibration": (("--exit-threshold", "0.5", "--exit-risk", "0.02"), "--exit-risk calibrate the exit table: give --calibrate data.npz"),
    "budget and risk": (("--calibrate", "{calibration}", "--accuracy-budget", "0.5", "--exit-delta", "0.1"), "--accuracy-budget (calibration without a guarantee) and --exit-delta"),
    "lead policy with another rule": (("--calibrate", "{calibration}", "--exit-policy", "lead", "--exit-rule", "margin"), "--exit-policy lead uses its own statistic: drop --exit-rule margin"),
    "plot without calibration": (("--exit-threshold", "0.5", "--plot", "{plot}"), "--plot draws the calibration curve"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
def test_bad_early_exit_option_gets_one_clear_error(
    folder: Path, ndigits: dict, tmp_path: Path, case: str
) -> None:
    flags, message = BAD_OPTIONS[case]
    files = {
        "calibration": folder / "calibration.npz",
        "unlabelled": without_labels(folder),
        "plot": tmp_path / "c.png",
    }
    flags = tuple(flag.format(**files) for flag in flags)
    outputs: dict[str, Path] = {"-o": tmp_path / "m.pmac", "--report": tmp_path / "r.json"}
    if "--calibrate" in flags:
        outputs["--plot"] = tmp_path / "c.png"
    result = invoke(
        "compile", MODEL, "--emit", "macro", *(v for pair in outputs.items() for v in pair), *flags
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert result.output.lower().count("error:") == 1 and "Traceback" not in result.output
    assert not list(tmp_path.iterdir())


def test_certified_calibration_on_unlabelled_data_holds_in_the_simulator(
    folder: Path, ndigits: dict, reference: np.ndarray
) -> None:
    """--calibrate with unlabelled data certifies the consistency risk; the artefact carries the
    version-2 table and the simulator applies it exactly as the controller does."""
    unlabelled, artefact, report = folder / "cal-x.npz", folder / "cert.pmac", folder / "cert.json"
    write_npz(unlabelled, {"x": ndigits["calibration"][0]})
    result = invoke(
        "compile", MODEL, "--emit", "macro", "-o", artefact, "--calibrate", unlabelled,
        "--exit-risk", "0.02", "--exit-delta", "0.1", "--exit-policy", "lead", "--report", report,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "early exit certified (lead policy" in result.output
    assert f"with probability >= 0.9 over the {CALIBRATION} calibration samples" in result.output
    compiled = json.loads(report.read_text())
    calibration, table = compiled["calibration"], ExitTable.from_dict(compiled["early_exit"])
    assert compiled["early_exit"]["version"] == 2 and table.rule == "lead" and table.stable == 2
    certificate = calibration["certificate"]
    assert certificate["samples"] == CALIBRATION and certificate["pvalue_chosen"] <= 0.1
    assert calibration["avg_timesteps"] < 10 and "accuracy" not in calibration
    outputs, _ = simulate(artefact, folder / "test.npz", folder / "cert-test")
    steps, at_exit = apply_table(table, reference)
    assert np.array_equal(outputs["exit_step"], steps)
    assert np.array_equal(outputs["pred"], predictions(at_exit))
    print(
        f"\ncertified lead (eps 0.02, delta 0.1, {CALIBRATION} unlabelled samples): threshold "
        f"{table.threshold:.3f}, calibration {calibration['avg_timesteps']:.2f} steps; test "
        f"{steps.mean():.2f} steps, {(predictions(at_exit) != predictions(reference[:, -1])).mean():.2%} changed"
    )


def test_per_step_list_of_the_wrong_length_in_a_macro_file(
    folder: Path, prime_run: tuple, tmp_path: Path
) -> None:
    import zipfile

    artefact = folder / "prime.pmac"
    with zipfile.ZipFile(artefact) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(members["manifest.json"])
    manifest["early_exit"] |= {"version": 2, "thresholds": [0.5, 0.6, 0.7], "stable": 1}
    members["manifest.json"] = json.dumps(manifest, indent=1, sort_keys=True).encode()
    bad = tmp_path / "bad.pmac"
    with zipfile.ZipFile(bad, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    out = tmp_path / "out.npz"
    result = invoke("simulate", bad, "--input", folder / "test.npz", "--output", out)
    assert result.exit_code == 2, result.output
    assert "3 per-step thresholds for 10 timesteps" in result.output
    assert result.output.lower().count("error:") == 1 and not out.exists()
