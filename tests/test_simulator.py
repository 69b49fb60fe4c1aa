"""The simulator against independent references: the IR interpreter, a float64 plain-PyTorch
PRIME written here in the simulator's operation order, the float32 PyTorch reference, hand
counts; then noise (seeded, replayable, independent of batch), energy, and bad input via the CLI.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import prime_reference
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from ir_zoo import ZOO, Net, tiny_conv, vgg
from primec.backends import bytecode
from primec.backends.isa import Lif, Read, Scale
from primec.backends.program import Program
from primec.backends.simulator import Noise, SimResult, Simulator
from snn_models import ZOO as SNN_ZOO
from snn_models import example_input, onnx_of

from primec import frontend as fe
from primec.cli import main
from primec.core.interpret import run
from primec.core.ir import Graph
from primec.core.passmanager import PassOptions
from primec.core.text import save_graph
from primec.datasets import load_split
from primec.hardware.earlyexit import PRIME_RULE
from primec.hardware.energy import energy_per_sample
from primec.hardware.target import DEFAULT_TARGET, load_target
from primec.pipeline import BackendOptions, compile_model

RELEASED = (
    Path(__file__).resolve().parents[1] / "primec" / "models" / "prime_nmnist_classification.pt"
)
LAYERS = prime_reference.LAYER_KEYS
NOISE_LEVELS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.4)
# Accuracy may rise by this much from one read-noise level to the next (sampling noise of 128
# samples), never more: the curve degrades smoothly.
CURVE_SLACK = 0.03


def quiet(_: str) -> None:
    """Swallow the compiler's log lines."""


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Run single-threaded: on a small shared machine torch's thread pool stalls on small ops."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def target():
    """The default target (prime-40nm-256k)."""
    return load_target(DEFAULT_TARGET)


def compile_graph(graph: Graph, folder: Path, target) -> Program:
    """Save a graph as .pir, compile it through every pass, lower it to a program."""
    path = folder / f"{graph.name}.pir"
    save_graph(graph, path)
    return compile_model(path, target=target, log=quiet, backend=BackendOptions()).program


@pytest.fixture(scope="module")
def prime_graph() -> Graph:
    """The released classifier as the frontend imports it (before any pass)."""
    options = PassOptions(stop_after="import")
    return compile_model(RELEASED, arch="prime-nmnist", options=options, log=quiet).graph


@pytest.fixture(scope="module")
def prime_program(target) -> Program:
    """The released classifier compiled through every pass and lowered."""
    backend = BackendOptions()
    return compile_model(
        RELEASED, arch="prime-nmnist", target=target, log=quiet, backend=backend
    ).program


@pytest.fixture(scope="module")
def ndigits() -> tuple[np.ndarray, np.ndarray]:
    """The N-Digits test split: x [359, 10, 2, 34, 34] event counts, y [359]."""
    return load_split("test")


@pytest.fixture(scope="module")
def released() -> dict[str, torch.Tensor]:
    """The released state_dict (weights and scores), read without primec."""
    return prime_reference.load_released(RELEASED)


def spike_buffers(program: Program) -> dict[int, str]:
    """Every LIF's spike buffer, with the IR value it holds."""
    return {
        ins.spike_out: program.debug[i].value
        for i, ins in enumerate(program.instrs)
        if isinstance(ins, Lif)
    }


def simulate(
    program: Program, x: np.ndarray, noise: Noise | None = None, batch: int = 64, trace=()
) -> SimResult:
    """Run every step of every sample (no early exit)."""
    return Simulator(program, noise, trace=tuple(trace)).run(x, batch, early_exit=False)


def poisson_events(seed: int, samples: int = 16, steps: int = 10) -> np.ndarray:
    """Random event frames [N, T, 2, 34, 34]: Poisson counts, denser than N-Digits."""
    rng = np.random.default_rng(seed)
    return rng.poisson(0.4, (samples, steps, 2, 34, 34)).astype(np.float32)


def assert_matches_interpreter(program: Program, graph: Graph, x: np.ndarray) -> None:
    """Spikes of every LIF identical at every step; readouts within 1e-9; same predictions."""
    buffers = spike_buffers(program)
    result = simulate(program, x, trace=buffers)
    expected = run(graph, {graph.step_inputs[0].name: x}, trace=True)
    for buffer, name in buffers.items():
        reference = expected[name].reshape(result.spikes[buffer].shape)
        flips = int((result.spikes[buffer] != reference).sum())
        assert flips == 0, f"{flips} spikes of {name} differ from the interpreter"
    readout = expected[graph.step_outputs[0].name].reshape(result.readouts.shape)
    np.testing.assert_allclose(result.readouts, readout, rtol=0, atol=1e-9)
    if program.buffers[program.readout] == (10,):
        assert np.array_equal(result.pred, readout[:, -1].argmax(axis=-1))


# ---- ideal mode: the PRIME classifier ----------------------------------------------------------


def test_prime_matches_the_interpreter_on_random_events(prime_program, prime_graph) -> None:
    assert_matches_interpreter(prime_program, prime_graph, poisson_events(0))


def test_prime_matches_the_interpreter_on_ndigits(prime_program, prime_graph, ndigits) -> None:
    assert_matches_interpreter(prime_program, prime_graph, ndigits[0][:48])


def reference_float64(released: dict[str, torch.Tensor], x: np.ndarray) -> dict[str, torch.Tensor]:
    """PRIME in float64, in the simulator's operation order: current = conv(x, W * mask) * gain,
    average pools of spikes, the PRIME cell, the integrator, the running mean."""
    weights = {
        key: released[f"{key}.weight"].double()
        * prime_reference.keep_mask(released[f"{key}.scores"])
        for key in LAYERS
    }
    w0, w1, w2 = (weights[key] for key in LAYERS)
    x = torch.from_numpy(np.asarray(x, dtype=np.float64))
    gain, batch, steps = prime_reference.GAIN, x.shape[0], x.shape[1]
    u0 = s0 = torch.zeros(batch, 12, 32, 32, dtype=torch.float64)
    u1 = s1 = torch.zeros(batch, 64, 12, 12, dtype=torch.float64)
    out = total = torch.zeros(batch, 10, dtype=torch.float64)
    history: dict[str, list[torch.Tensor]] = {"spikes0": [], "spikes1": [], "readout": []}
    for t in range(steps):
        u0, s0 = prime_reference.prime_cell(u0, s0, F.conv2d(x[:, t], w0, padding=1) * gain)
        u1, s1 = prime_reference.prime_cell(u1, s1, F.conv2d(F.avg_pool2d(s0, 2), w1) * gain)
        current = F.linear(F.avg_pool2d(s1, 2).flatten(1), w2) * gain
        out = F.leaky_relu(out + current, prime_reference.NEGATIVE_SLOPE)
        total = total + out
        history["spikes0"].append(s0)
        history["spikes1"].append(s1)
        history["readout"].append(total / (t + 1))
    return {name: torch.stack(values, dim=1) for name, values in history.items()}


def prime_spike_buffers(program: Program) -> tuple[int, int]:
    """The spike buffers of the classifier's two LIF layers."""
    names = {name: buffer for buffer, name in spike_buffers(program).items()}
    return names["features.lif0.spike_out"], names["features.lif1.spike_out"]


@pytest.mark.slow
@pytest.mark.parametrize("data", ["random", "ndigits"])
def test_prime_is_bit_identical_to_a_float64_reference(
    prime_program, released, ndigits, data: str
) -> None:
    x = poisson_events(1) if data == "random" else ndigits[0]
    lif0, lif1 = prime_spike_buffers(prime_program)
    for start in range(0, len(x), 64):
        chunk = x[start : start + 64]
        result = simulate(prime_program, chunk, trace=(lif0, lif1))
        expected = reference_float64(released, chunk)
        assert np.array_equal(result.spikes[lif0], expected["spikes0"].numpy())
        assert np.array_equal(result.spikes[lif1], expected["spikes1"].numpy())
        assert np.array_equal(result.readouts, expected["readout"].numpy())
        assert np.array_equal(result.pred, expected["readout"][:, -1].argmax(-1).numpy())


@pytest.mark.slow
def test_prime_against_the_float32_reference_counts_flips(prime_program, released, ndigits) -> None:
    """float32 sums round differently: count the spikes that flip; predictions must not."""
    x, _ = ndigits
    weights = prime_reference.effective_weights(released)
    lif0, lif1 = prime_spike_buffers(prime_program)
    flips = {"spikes0": 0, "spikes1": 0}
    total = {"spikes0": 0, "spikes1": 0}
    for start in range(0, len(x), 64):
        chunk = x[start : start + 64]
        result = simulate(prime_program, chunk, trace=(lif0, lif1))
        expected = prime_reference.run_prime(weights, torch.from_numpy(chunk), torch.float32)
        for name, buffer in (("spikes0", lif0), ("spikes1", lif1)):
            flips[name] += int((result.spikes[buffer] != expected[name].numpy()).sum())
            total[name] += result.spikes[buffer].size
        assert np.array_equal(result.pred, expected["readout"][:, -1].argmax(-1).numpy())
    print(
        f"\nfloat32 reference vs simulator on {len(x)} N-Digits test samples: "
        f"spike flips {flips} of {total}"
    )
    assert all(flips[name] <= 1e-5 * total[name] for name in flips), flips


def test_conv_reads_equal_gathered_row_reads(prime_program) -> None:
    """On the CPU a tile that drives every row of a gather runs as a float64 conv of the source
    map; the matrix product of the gathered rows it stands for gives the same bits."""
    x = poisson_events(2, samples=8)
    buffers = prime_spike_buffers(prime_program)
    fused, rows = Simulator(prime_program, trace=buffers), Simulator(prime_program, trace=buffers)
    assert any(tile.conv is not None for tile in fused.reads.values())
    for tile in rows.reads.values():
        tile.conv = None
    a, b = (sim.run(x, 8, early_exit=False) for sim in (fused, rows))
    assert same_results(a, b)
    assert all(np.array_equal(a.spikes[buffer], b.spikes[buffer]) for buffer in buffers)


# ---- ideal mode: every test model ----------------------------------------------------------------

IR_MODELS = {name: model.build for name, model in ZOO.items() if name != "vgg"} | {
    "vgg": lambda: vgg(width=0.125)  # the full width (5.7 M weights) is a placement benchmark
}


@pytest.mark.parametrize("name", sorted(IR_MODELS))
def test_every_zoo_model_matches_the_interpreter(name: str, tmp_path: Path, target) -> None:
    graph = IR_MODELS[name]()
    steps = graph.meta_value("timesteps", 4)
    x = ZOO[name].inputs(np.random.default_rng(7), 6, steps)["x"]
    assert_matches_interpreter(compile_graph(graph, tmp_path, target), graph, x)


@pytest.mark.parametrize("name", sorted(SNN_ZOO))
def test_every_pytorch_model_matches_the_interpreter(name: str, tmp_path: Path, target) -> None:
    net = SNN_ZOO[name]()
    graph = fe.import_onnx(onnx_of(net))
    x = example_input(net, batch=6).numpy().astype(np.float64)
    assert_matches_interpreter(compile_graph(graph, tmp_path, target), graph, x)


# ---- noise ---------------------------------------------------------------------------------------


def accuracy(result: SimResult, labels: np.ndarray) -> float:
    """Fraction of predictions equal to the labels."""
    return float((result.pred == labels).mean())


@pytest.mark.slow
def test_accuracy_degrades_smoothly_with_read_noise(prime_program, ndigits) -> None:
    x, y = ndigits[0][:128], ndigits[1][:128]
    curve = [
        accuracy(simulate(prime_program, x, Noise(read=level, seed=1)), y) for level in NOISE_LEVELS
    ]
    print(f"\naccuracy vs read noise {dict(zip(NOISE_LEVELS, curve, strict=True))}")
    assert curve[0] == accuracy(simulate(prime_program, x), y)
    assert all(b <= a + CURVE_SLACK for a, b in zip(curve, curve[1:], strict=False)), curve
    assert curve[0] - curve[-1] > 0.1, "strong read noise should cost accuracy"


@pytest.mark.slow
def test_adc_with_many_bits_is_nearly_ideal(prime_program, ndigits) -> None:
    x = ndigits[0][:32]
    buffers = prime_spike_buffers(prime_program)
    ideal = simulate(prime_program, x, trace=buffers)
    runs = {
        bits: simulate(prime_program, x, Noise(adc=bits), trace=buffers)
        for bits in (6, 10, 14, 18, 24, 30)
    }
    errors = [np.abs(r.readouts - ideal.readouts).mean() for r in runs.values()]
    assert all(b < a for a, b in zip(errors, errors[1:], strict=False)), errors
    assert all(np.array_equal(runs[bits].pred, ideal.pred) for bits in (14, 18, 24, 30))
    assert errors[-1] < 1e-6
    assert all(np.array_equal(runs[30].spikes[b], ideal.spikes[b]) for b in buffers)


NON_IDEALITIES = {
    "program": Noise(program=0.05, seed=3),
    "read": Noise(read=0.05, seed=3),
    "stuck": Noise(stuck=0.01, seed=3),
    "adc": Noise(adc=6, seed=3),
    "input": Noise(input=2, seed=3),
}


@pytest.mark.parametrize("name", sorted(NON_IDEALITIES))
def test_each_non_ideality_alone_changes_results_reproducibly(
    prime_program, ndigits, name: str
) -> None:
    x = ndigits[0][:16]
    ideal = simulate(prime_program, x)
    first, again = (simulate(prime_program, x, NON_IDEALITIES[name]) for _ in range(2))
    assert np.array_equal(first.readouts, again.readouts)
    assert not np.array_equal(first.readouts, ideal.readouts)


def linear_readout() -> Graph:
    """One linear layer 6 -> 3 read straight out (integrator without leak or LeakyReLU)."""
    net = Net("linear_readout")
    net.b.meta.update(timesteps=1, readout="mean", input_encoding="spikes")
    x = net.b.input("x", (6,))
    weights = np.array(
        [[1, 2, 3, 4, 5, 6], [-6, 5, -4, 3, -2, 1], [2, -2, 2, -2, 2, -2]], np.float32
    )
    h = net.b.op("linear", x, net.b.weight(weights, loc="fc", name="fc.weight"), loc="fc")
    net.readout_mean(net.integrator("out", h, keep=1.0, slope=1.0))
    return net.b.build()


def test_read_noise_has_the_variance_of_independent_cell_noise(tmp_path: Path, target) -> None:
    """Output-referred read noise: per output, std = S sqrt(sum_r x_r (G+_r^2 + G-_r^2)) (uS),
    what independent relative noise S on every conducting cell gives; scaled like the current."""
    program = compile_graph(linear_readout(), tmp_path, target)
    (read,) = [ins for ins in program.instrs if isinstance(ins, Read)]
    (scale,) = [ins for ins in program.instrs if isinstance(ins, Scale)]
    rows, cols = program.tensors[read.rows], program.tensors[read.cols]
    cells = program.arrays[(read.macro, read.array)]
    block = cells[read.row0 : read.row0 + len(rows), read.col0 : read.col0 + 2 * len(cols)]
    drive = np.array([1, 0, 1, 1, 0, 1], np.float64)
    level = 0.05
    expected_std = level * np.sqrt(drive[rows] @ (block[:, 0::2] ** 2 + block[:, 1::2] ** 2))
    expected_std *= np.prod(scale.factors)
    x = np.broadcast_to(drive.astype(np.float32), (4000, 1, 6))
    readouts = simulate(program, x, Noise(read=level, seed=2), batch=1000).readouts[:, 0]
    ideal = simulate(program, x[:1]).readouts[0, 0]
    error = np.abs(readouts.mean(axis=0) - ideal)[cols]
    assert np.all(error <= 4 * expected_std / np.sqrt(len(x))), (error, expected_std)
    np.testing.assert_allclose(readouts.std(axis=0)[cols], expected_std, rtol=0.06)


ALL_NOISE = Noise(program=0.05, read=0.05, stuck=0.002, adc=7, input=3, seed=11)


def test_same_seed_same_numbers_other_seed_other_numbers(prime_program, ndigits) -> None:
    x = ndigits[0][:16]
    first, again = (simulate(prime_program, x, ALL_NOISE) for _ in range(2))
    other = simulate(prime_program, x, replace(ALL_NOISE, seed=12))
    assert np.array_equal(first.readouts, again.readouts)
    assert all(np.array_equal(first.counts[k], again.counts[k]) for k in first.counts)
    assert not np.array_equal(first.readouts, other.readouts)


def same_results(a: SimResult, b: SimResult) -> bool:
    """Identical readouts, predictions, exit steps and operation counts."""
    return (
        np.array_equal(a.readouts, b.readouts, equal_nan=True)
        and np.array_equal(a.pred, b.pred)
        and np.array_equal(a.exit_step, b.exit_step)
        and all(np.array_equal(a.counts[k], b.counts[k]) for k in a.counts)
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "noise", [Noise(read=0.05, adc=7, seed=5), ALL_NOISE], ids=["read+adc", "all"]
)
def test_batch_size_and_order_do_not_change_results(prime_program, ndigits, noise: Noise) -> None:
    x = ndigits[0][:40]
    program = replace(
        prime_program, exit_table=PRIME_RULE
    )  # samples leave batches at different steps
    whole = Simulator(program, noise).run(x, 64)
    assert same_results(whole, Simulator(program, noise).run(x, 7))
    order = np.random.default_rng(0).permutation(len(x))
    # Noise streams are keyed by sample id (default: position in x); ids travel with samples.
    permuted = Simulator(program, noise).run(x[order], 16, sample_ids=order)
    assert np.array_equal(permuted.readouts, whole.readouts[order], equal_nan=True)
    assert np.array_equal(permuted.exit_step, whole.exit_step[order])
    assert all(np.array_equal(permuted.counts[k], whole.counts[k][order]) for k in whole.counts)


# ---- energy --------------------------------------------------------------------------------------

PER_STEP_FIXED = ("adc_conversions", "neuron_updates", "steps")


def test_early_exit_saves_energy_step_for_step(prime_program, ndigits, target) -> None:
    x = ndigits[0][:48]
    program = replace(prime_program, exit_table=PRIME_RULE)
    early = Simulator(program).run(x, 64)
    full = simulate(prime_program, x)
    assert early.exit_step.min() < 10, "the exit table should stop some samples early"
    # Each sample costs exactly what its first exit_step steps cost when run alone.
    for steps in np.unique(early.exit_step):
        chosen = early.exit_step == steps
        truncated = simulate(prime_program, x[chosen, :steps])
        assert all(
            np.array_equal(early.counts[k][chosen], truncated.counts[k]) for k in early.counts
        )
    # Work that does not depend on the data is exactly proportional to the steps executed.
    for name in PER_STEP_FIXED:
        assert np.array_equal(early.counts[name] * 10, full.counts[name] * early.exit_step)
    params = program.meta["target_parameters"]
    spent = sum(energy_per_sample(early.counts, params).values())
    assert np.all(spent <= sum(energy_per_sample(full.counts, params).values()))


def test_sparser_input_drives_fewer_rows(prime_program, ndigits) -> None:
    x = ndigits[0][:16]
    sparse = x.copy()
    sparse[:, :, :, :17] = 0.0  # the left half of every frame sees no events
    dense, thin, silent = (simulate(prime_program, v) for v in (x, sparse, np.zeros_like(x)))
    assert np.all(thin.counts["row_drives"] < dense.counts["row_drives"])
    assert np.all(thin.counts["cell_reads"] < dense.counts["cell_reads"])
    assert np.all(silent.counts["row_drives"] == 0) and np.all(silent.counts["cell_reads"] == 0)
    assert np.array_equal(silent.counts["adc_conversions"], dense.counts["adc_conversions"])


def hand_model() -> Graph:
    """One linear layer 4 -> 3 (no weight zero) of LIF neurons, over 3 steps of binary spikes."""
    net = Net("hand")
    net.b.meta.update(timesteps=3, readout="mean", input_encoding="spikes")
    x = net.b.input("x", (4,))
    weights = np.array([[1, 2, 3, 4], [-1, -2, -3, -4], [0.5, -0.5, 0.5, -0.5]], np.float32)
    h = net.b.op("linear", x, net.b.weight(weights, loc="fc", name="fc.weight"), loc="fc")
    net.readout_mean(net.lif("lif", h, keep=0.5, threshold=1.0))
    return net.b.build()


def test_counts_and_energy_by_hand(tmp_path: Path, target) -> None:
    program = compile_graph(hand_model(), tmp_path, target)
    x = np.array([[[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1]]], np.float32)
    counts = simulate(program, x).counts
    # 3 + 0 + 4 driven rows; each drives both cells of 3 pairs; 3 conversions and 3 neurons a step.
    expected = {
        "row_drives": 7,
        "cell_reads": 7 * 2 * 3,
        "adc_conversions": 9,
        "neuron_updates": 9,
        "steps": 3,
    }
    assert {k: int(counts[k][0]) for k in expected} == expected
    params = program.meta["target_parameters"]
    energy = energy_per_sample(counts, params)
    assert energy["array_reads"][0] == pytest.approx(42 * params["energy.cell_read_pj"] * 1e-12)
    assert energy["row_drives"][0] == pytest.approx(7 * params["energy.row_drive_pj"] * 1e-12)
    assert energy["adc_conversions"][0] == pytest.approx(
        9 * params["energy.adc_conversion_pj"] * 1e-12
    )
    assert energy["control"][0] == pytest.approx(3 * params["energy.controller_pj"] * 1e-12)


# ---- bad input via the CLI -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def artefact(tmp_path_factory, target) -> Path:
    """A small model's .pbc (tiny_conv: x [N, 4, 1, 6, 6], 5 classes)."""
    folder = tmp_path_factory.mktemp("artefact")
    path = folder / "tiny.pbc"
    bytecode.write(compile_graph(tiny_conv(), folder, target), path)
    return path


def simulate_cli(tmp_path: Path, artefact: Path, **arrays: np.ndarray):
    """`primec simulate` on the arrays as data.npz; the result and where report and output go."""
    data = tmp_path / "data.npz"
    np.savez(data, **arrays)
    report, output = tmp_path / "report.json", tmp_path / "out.npz"
    args = [
        "simulate",
        str(artefact),
        "--input",
        str(data),
        "--report",
        str(report),
        "--output",
        str(output),
        "--noise",
        "ideal",
    ]
    return CliRunner().invoke(main, args), report, output


def test_the_cli_simulates_good_input(tmp_path: Path, artefact: Path) -> None:
    x = np.random.default_rng(0).integers(0, 3, (5, 4, 1, 6, 6)).astype(np.float32)
    result, report, output = simulate_cli(tmp_path, artefact, x=x, y=np.arange(5) % 5)
    assert result.exit_code == 0, result.output
    assert report.exists() and output.exists()


def test_default_noise_is_the_targets_and_the_report_says_which(
    tmp_path: Path, artefact: Path
) -> None:
    data, report = tmp_path / "data.npz", tmp_path / "report.json"
    np.savez(data, x=np.ones((2, 4, 1, 6, 6), np.float32))
    cells = load_target(DEFAULT_TARGET).cells
    target_noise = {
        "read": cells.read_noise,
        "stuck": cells.stuck_low_rate + cells.stuck_high_rate,
        "adc": load_target(DEFAULT_TARGET).adc.bits,
    }
    cases = [
        ((), "the artefact's target", target_noise),
        (("--noise", "ideal"), "ideal (--noise ideal)", {}),
        (("--noise", "read=0.02"), "--noise", {"read": 0.02}),
    ]
    for flags, source, active in cases:
        args = ["simulate", str(artefact), "--input", str(data), "--report", str(report), "--force"]
        args += list(flags)
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        summary = json.loads(report.read_text())
        assert summary["noise_source"] == source and f"(from {source})" in result.output
        noise = summary["noise"]
        assert {k: v for k, v in noise.items() if v and k not in ("seed", "adc_cal")} == active


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (
            np.zeros((5, 4, 1, 6, 7), np.float32),
            r"x has shape \[5, 4, 1, 6, 7\]; expected \[N, 4, 1, 6, 6\]",
        ),
        (np.zeros((5, 4, 1, 6, 6), bool), "x has dtype bool; expected float32"),
        (np.zeros((5, 9, 1, 6, 6), np.float32), "x has T=9 timesteps; the model runs T=4"),
        (np.full((5, 4, 1, 6, 6), np.nan, np.float32), "NaN or infinite values in 5 samples"),
    ],
    ids=["shape", "dtype", "timesteps", "nan"],
)
def test_bad_data_is_one_clear_error(
    tmp_path: Path, artefact: Path, x: np.ndarray, message: str
) -> None:
    result, report, output = simulate_cli(tmp_path, artefact, x=x)
    assert result.exit_code == 2
    assert result.output.count("error:") == 1
    assert re.search(message, result.output), result.output
    assert not report.exists() and not output.exists()


def damaged(data: bytes, how: str) -> bytes:
    """The artefact's bytes truncated, with a flipped bit, another version or another magic."""
    if how == "truncated":
        return data[: len(data) // 2]
    if how == "flipped":
        return data[:200] + bytes([data[200] ^ 0x10]) + data[201:]
    if how == "version":
        return data[:8] + struct.pack("<H", 2) + data[10:]
    return b"NOTPRIME" + data[8:]


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("truncated", "checksum mismatch"),
        ("flipped", "checksum mismatch"),
        ("version", "format version 2 is not supported"),
        ("magic", "not a primec artefact"),
    ],
)
def test_damaged_artefact_is_one_clear_error(
    tmp_path: Path, artefact: Path, how: str, message: str
) -> None:
    bad = tmp_path / "bad.pbc"
    bad.write_bytes(damaged(artefact.read_bytes(), how))
    x = np.zeros((2, 4, 1, 6, 6), np.float32)
    result, report, output = simulate_cli(tmp_path, bad, x=x)
    assert result.exit_code == 2
    assert result.output.count("error:") == 1 and message in result.output, result.output
    assert not report.exists() and not output.exists()


def test_threads_are_reported_and_the_statistical_pass_is_optional(
    tmp_path: Path, artefact: Path
) -> None:
    data, report = tmp_path / "data.npz", tmp_path / "report.json"
    np.savez(data, x=np.ones((3, 4, 1, 6, 6), np.float32))
    base = ["simulate", str(artefact), "--input", str(data), "--report", str(report), "--force"]
    full = CliRunner().invoke(main, [*base, "--threads", "1"])
    assert full.exit_code == 0, full.output
    summary = json.loads(report.read_text())
    assert summary["torch_threads"] == 1 and "on 1 threads" in full.output
    assert "energy_statistical_j" in summary
    lean = CliRunner().invoke(main, [*base, "--no-statistical-energy"])
    assert lean.exit_code == 0, lean.output
    lean_summary = json.loads(report.read_text())
    assert "energy_statistical_j" not in lean_summary
    assert lean_summary["energy_per_inference_j"] == summary["energy_per_inference_j"]


def test_the_main_run_traces_the_statistics_a_separate_run_would(prime_program, ndigits) -> None:
    """Without early exit the main run runs every step: its trace gives the same statistics."""
    from primec.runtime.activity import activity_report
    from primec.runtime.simdata import SimData
    from primec.runtime.simulation import simulate as run_simulation

    x, y = ndigits[0][:12], ndigits[1][:12]
    noise = Noise(read=0.02, seed=2)
    result, summary = run_simulation(prime_program, SimData(x=x, y=y), noise, early_exit=False)
    separate = activity_report(
        prime_program, x, result.exit_step, result.counts, summary["energy_per_inference_j"], noise
    )
    assert summary["energy_statistical_j"] == separate["energy_statistical_j"]
    assert summary["neurobench"] == separate["neurobench"]
    assert summary["activity_samples"] == 12
