"""The sourced energy model against hand-computed references: bad cost tables, units, ADC bits,
inter-macro transfers, estimate ranges, the GPU roofline, counted vs statistical energy on the
demo models, and NeuroBench's metrics."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from primec.backends.isa import Gather, Read, Scale
from primec.backends.lower import lower
from primec.backends.program import Program
from primec.backends.simulator import Noise, Simulator
from primec.backends.transfers import transfer_bits_per_step
from test_simulator import hand_model, one_thread  # noqa: F401 (autouse: one torch thread)
from test_target import edited

from primec.apps.demo import DEMO_MODELS, INPUT_BITS
from primec.cli import main
from primec.core.passmanager import PassOptions
from primec.core.text import save_graph
from primec.datasets import load_split
from primec.errors import PrimecError
from primec.hardware import gpumodel
from primec.hardware.choices import resolve_target
from primec.hardware.costmodel import adc_energy_pj
from primec.hardware.earlyexit import PRIME_RULE
from primec.hardware.energy import energy_report
from primec.hardware.target import DEFAULT_TARGET, TARGET_DIR, load_target
from primec.pipeline import compile_model
from primec.runtime.activity import (
    activity_report,
    measure,
    neurobench_metrics,
    static_ops_per_step,
)
from primec.runtime.simdata import SimData
from primec.runtime.simulation import simulate

DEFAULT_FILE = TARGET_DIR / "prime-40nm-256k.toml"
PJ = 1e-12


# ---- bad cost tables: one clear error naming the key, non-zero exit -----------------------------

BAD_COSTS = [
    ("adc_conversion_pj = 2.0 ", "", "energy.adc_conversion_pj: missing key \\(float\\)"),
    ("row_drive_pj = 0.1 ", "row_drive_pj = -0.1 ", "energy.row_drive_pj: must be at least 0.0"),
    (
        "lif_update_pj = 1.8 ",
        'lif_update_pj = "1.8 mW" ',
        "energy.lif_update_pj: wrong unit 'mW': expects pJ \\(J\\)",
    ),
    ("latency_ns = 15.0 ", 'latency_ns = "15 nJ" ', "read.latency_ns: wrong unit 'nJ'"),
    (
        '"energy.controller_pj" = "estimate:',
        '# "energy.controller_pj" = "estimate:',
        "energy.controller_pj: no provenance",
    ),
    (
        '"energy.digital_add_pj" = [0.03, 0.11]',
        "",
        "energy.digital_add_pj: an estimate needs its bounds",
    ),
    (
        '"energy.adc_conversion_pj" = [0.5, 5.0]',
        '"energy.adc_conversion_pj" = [2.5, 5.0]',
        "estimates.energy.adc_conversion_pj: needs 0 <= low <= value <= high",
    ),
    (
        '"energy.adc_conversion_pj" = [0.5, 5.0]',
        '"energy.adc_conversion_pj" = [0.5]',
        "estimates.energy.adc_conversion_pj: must be \\[low, high\\]",
    ),
]


@pytest.mark.parametrize("old,new,message", BAD_COSTS)
def test_bad_cost_entries_name_the_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = edited(tmp_path, old, new)
    with pytest.raises(PrimecError, match=message):
        load_target(path)
    shown = CliRunner().invoke(main, ["targets", "--show", str(path)])
    assert shown.exit_code != 0
    errors = [line for line in shown.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(path) in errors[0]


def test_bounds_on_a_published_fact_are_refused(tmp_path: Path) -> None:
    path = edited(
        tmp_path, "[estimates]\n", '[estimates]\n"baseline.memory_gbs" = [1000.0, 2000.0]\n'
    )
    with pytest.raises(
        PrimecError, match="estimates.baseline.memory_gbs: bounds given for a value"
    ):
        load_target(path)


def test_values_may_carry_their_unit(tmp_path: Path) -> None:
    path = edited(tmp_path, "adc_conversion_pj = 2.0 ", 'adc_conversion_pj = "2000 fJ" ')
    path.write_text(path.read_text().replace("latency_ns = 15.0 ", 'latency_ns = "0.015 us" '))
    target = load_target(path)
    assert target.energy.adc_conversion_pj == pytest.approx(2.0)
    assert target.read.latency_ns == pytest.approx(15.0)


# ---- test_simulator's hand model: linear 4 -> 3 of LIF neurons over 3 steps of binary spikes -----


HAND_X = np.array([[[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1]]], np.float32)


@pytest.fixture(scope="module")
def hand_program(tmp_path_factory) -> Program:
    folder = tmp_path_factory.mktemp("hand")
    save_graph(hand_model(), folder / "hand.pir")
    target = load_target(DEFAULT_TARGET)
    graph = compile_model(folder / "hand.pir", options=PassOptions(), target=target).graph
    return lower(graph, target)


def test_adc_energy_scales_with_its_bits(hand_program: Program) -> None:
    params = {"adc.bits": 8, "energy.adc_conversion_pj": 2.0}
    assert [adc_energy_pj(params, b) for b in (4, 6, 8, None)] == [1.0, 1.5, 2.0, 2.0]
    data = SimData(HAND_X, None)
    reports = {b: simulate(hand_program, data, Noise(adc=b))[1] for b in (4, 6, 8)}
    # 3 pairs read once a step for 3 steps: 9 conversions at 2 pJ x bits / 8.
    for bits, report in reports.items():
        assert report["adc_bits"] == bits
        assert report["energy_breakdown_j"]["adc_conversions"] == pytest.approx(9 * bits / 4 * PJ)
    assert reports[4]["energy_per_inference_j"] < reports[8]["energy_per_inference_j"]


def test_report_gives_the_range_of_the_estimates(hand_program: Program) -> None:
    report = simulate(hand_program, SimData(HAND_X, None))[1]
    low, high = report["energy_per_inference_range_j"]
    # Hand count (test_simulator): 7 row drives, 42 cell reads, 9 conversions, 9 neuron updates,
    # 3 steps; shift-adds, scale multiplies and readout adds from the operation counts.
    ops = report["operations_per_inference"]
    assert (ops["row_drives"], ops["cell_reads"], ops["adc_conversions"]) == (7, 42, 9)
    bounds = load_target(DEFAULT_TARGET).estimates
    at = {key: (lo, hi) for key, lo, hi in bounds}

    def total(side: int) -> float:
        price = {k: v[side] for k, v in at.items()}
        return PJ * (
            ops["cell_reads"] * price["energy.cell_read_pj"]
            + ops["row_drives"] * price["energy.row_drive_pj"]
            + ops["adc_conversions"] * price["energy.adc_conversion_pj"]
            + ops["digital_adds"] * price["energy.digital_add_pj"]
            + ops["digital_multiplies"] * price["energy.digital_multiply_pj"]
            + ops["neuron_updates"] * price["energy.lif_update_pj"]
            + ops["steps"] * price["energy.controller_pj"]
        )

    assert low == pytest.approx(total(0)) and high == pytest.approx(total(1))
    assert low < report["energy_per_inference_j"] < high
    ratio_low, ratio_high = report["energy_efficiency_vs_gpu_range"]
    assert ratio_low < report["energy_efficiency_vs_gpu"] < ratio_high


def test_neurobench_metrics_by_hand(hand_program: Program) -> None:
    result = Simulator(hand_program).run(HAND_X, 1, early_exit=False)
    metrics = neurobench_metrics(
        hand_program, measure(hand_program, HAND_X), result.exit_step, result.counts
    )
    ops = metrics["SynapticOperations"]
    # Binary spikes: accumulates. 3 + 0 + 4 spikes, each reaching 3 kept synapses.
    assert ops == {"Dense": 36.0, "Effective_MACs": 0.0, "Effective_ACs": 21.0}
    assert metrics["MembraneUpdates"] == 9
    assert metrics["Footprint"] == 12 * 4 and metrics["ConnectionSparsity"] == 0.0
    assert 0.0 <= metrics["ActivationSparsity"] <= 1.0


# ---- data moved between macros ------------------------------------------------------------------


def test_transfer_bits_by_hand() -> None:
    """Layer A tiles on macros 0 and 1, layer B on macro 1, reading A's output from macro 0."""
    tensors = {"r4": np.arange(4), "c3": np.arange(3), "c2": np.arange(2)}
    buffers = [(1, 8), (3, 1), (3, 1), (1, 3), (2, 1)]

    def read(dst: int, src: int, macro: int, cols: str, planes: int = 1) -> Read:
        return Read(dst, src, macro, 0, 0, 0, "r4", cols, planes, 1.0)

    instrs = [
        read(1, 0, 0, "c3"),  # A's home: macro 0
        read(1, 0, 1, "c3"),  # partial sums home: 3 outputs x 1 position x (8 + 1) bits = 27
        Scale(2, 1, (0.5,)),  # A's output, produced on macro 0
        Scale(3, 2, (1.0,)),
        read(4, 3, 1, "c2"),  # B on macro 1: A's 3 outputs sent once, 1 bit each = 3
        read(4, 3, 1, "c2"),  # the same map on the same macro: not sent again
    ]
    assert transfer_bits_per_step(instrs, buffers, tensors, adc_bits=8) == 27 + 3
    on_one_macro = [replace(ins, macro=0) if isinstance(ins, Read) else ins for ins in instrs]
    assert transfer_bits_per_step(on_one_macro, buffers, tensors, adc_bits=8) == 0
    # A convolution's gather: the source map's elements are what moves.
    gather = Gather(5, 3, (1, 1), (1, 1), (1, 1), (0, 0, 0, 0), (1, 1))
    assert (
        transfer_bits_per_step(
            [*instrs[:4], gather, read(4, 5, 1, "c2", planes=4)], [*buffers, (3, 1)], tensors, 8
        )
        == 27 + 3 * 4
    )


def test_transfers_are_priced_per_executed_step(hand_program: Program) -> None:
    meta = hand_program.meta | {"macro_transfer_bits_per_step": 30}
    counts = Simulator(hand_program).run(HAND_X, 1, early_exit=False).counts
    report = energy_report(counts, np.array([3]), meta, 3)
    price = meta["target_parameters"]["energy.macro_transfer_pj_per_bit"]
    assert report["energy_breakdown_j"]["macro_transfers"] == pytest.approx(3 * 30 * price * PJ)


def test_a_placement_over_several_macros_moves_data(tmp_path: Path) -> None:
    text = (
        DEFAULT_FILE.read_text()
        .replace("rows = 512 ", "rows = 64 ")
        .replace("cols = 512 ", "cols = 64 ")
    )
    small = tmp_path / "small.toml"
    small.write_text(text)
    model = DEMO_MODELS[1]
    programs = {}
    for name in (DEFAULT_TARGET, small):
        target = load_target(name)
        graph = compile_model(
            model.checkpoint, model.arch, options=PassOptions(), target=target
        ).graph
        programs[name] = lower(graph, target)
    assert programs[DEFAULT_TARGET].meta["macro_transfer_bits_per_step"] == 0
    assert len({read.macro for read in programs[small].instrs if isinstance(read, Read)}) > 1
    assert programs[small].meta["macro_transfer_bits_per_step"] > 0


# ---- the GPU roofline ---------------------------------------------------------------------------


def test_roofline_by_hand() -> None:
    work = gpumodel.Workload(macs=10**6, weights=10**4, activations=10**3, layers=2, timesteps=10)
    params = {
        "baseline.peak_tflops": 1.0,
        "baseline.memory_gbs": 100.0,
        "baseline.static_power_w": 50.0,
        "baseline.pj_per_flop": 10.0,
        "baseline.pj_per_byte": 20.0,
        "baseline.kernel_launch_us": 5.0,
        "baseline.kernels_per_layer": 4.0,
        "baseline.energy_per_mac_pj": 41.0,
    }
    # Batch 1: 8 kernels x 5 us = 40 us beats 2e6 FLOP / 1e12 = 2 us and 48 kB / 100 GB/s.
    step = 50 * 40e-6 + 10e-12 * 2e6 + 20e-12 * 4 * (10**4 + 2 * 10**3)
    assert gpumodel.energy_per_inference(work, params, 1) == pytest.approx(10 * step)
    # Batch 1000: 2e9 FLOP take 2 ms, more than 8.04 MB / 100 GB/s = 80.4 us.
    traffic = 4 * (10**4 + 2 * 1000 * 10**3)
    step = 50 * 2e-3 + 10e-12 * 2e9 + 20e-12 * traffic
    assert gpumodel.energy_per_inference(work, params, 1000) == pytest.approx(10 * step / 1000)
    assert gpumodel.prime_method_energy(work, params) == pytest.approx(10**7 * 41e-12)


# ---- counted vs statistical energy on the demo models ------------------------------------------

SAMPLES = 128
ACTIVITY_CLASSES = ("array_reads", "row_drives")


@pytest.mark.slow
@pytest.mark.parametrize("model", DEMO_MODELS, ids=lambda m: m.key)
def test_counted_and_statistical_energy_agree(model) -> None:
    target, _ = resolve_target(DEFAULT_TARGET, input_bits=INPUT_BITS)
    graph = compile_model(model.checkpoint, model.arch, options=PassOptions(), target=target).graph
    program = replace(lower(graph, target), exit_table=PRIME_RULE)
    x = load_split("test")[0][:SAMPLES]
    result = Simulator(program).run(x, 64)
    counted = energy_report(result.counts, result.exit_step, program.meta, program.timesteps)
    assert result.exit_step.min() < program.timesteps  # early exit is part of the comparison
    statistical = activity_report(
        program, x, result.exit_step, result.counts, counted["energy_per_inference_j"]
    )
    assert abs(statistical["energy_counted_vs_statistical"]) < 0.05
    for name in ACTIVITY_CLASSES:
        ours, theirs = (
            counted["energy_breakdown_j"][name],
            statistical["energy_statistical_breakdown_j"][name],
        )
        assert ours == pytest.approx(theirs, rel=0.05)
    # What does not depend on activity, counted from the program's shapes, is the simulator's count.
    static = static_ops_per_step(program)
    for name in ("adc_conversions", "digital_adds", "digital_multiplies", "neuron_updates"):
        assert result.counts[name].sum() == pytest.approx(static[name] * result.exit_step.sum())


@pytest.mark.parametrize(
    "extra",
    [
        {"macro_transfer_bits_per_step": -1},
        {"macro_transfer_bits_per_step": "many"},
        {"target_estimates": {"energy.cell_read_pj": [0.1]}},
        {"target_estimates": {"energy.nothing": [0.1, 0.2]}},
        {"target_parameters": {"adc.bits": 8}},
    ],
)
def test_malformed_energy_meta_is_one_clear_error(hand_program: Program, extra: dict) -> None:
    counts = Simulator(hand_program).run(HAND_X, 1, early_exit=False).counts
    with pytest.raises(PrimecError, match="artefact"):
        energy_report(counts, np.array([3]), hand_program.meta | extra, 3)
