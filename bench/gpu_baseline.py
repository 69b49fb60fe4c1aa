"""The GPU baseline, measured and modelled, and the ratios PRIME's 37.83x may come from.

For each demo model (the released N-MNIST classifier, the primec-trained N-Digits model), the
same network runs in plain PyTorch (`primec.nn`), dense (every synapse: weight x gain) and masked
(the pruning mask applied), its effective weights computed once, as a deployment would:

- on a GPU, when one is present (`--device cuda`, the default when torch sees one): energy per
  inference from the board's own energy counter (NVML `nvmlDeviceGetTotalEnergyConsumption`, via
  the nvidia-ml-py package; Volta or newer), read around `--repeats` synchronised runs of all T
  steps, at batch 1 and at the target's large batch (`baseline.large_batch`);
- always, on the CPU: the inputs of the roofline model are checked against what PyTorch actually
  executes: FLOPs per inference (torch's FlopCounterMode) against 2 x dense MACs x T from the
  compiled program, and aten operations (one CUDA kernel each) per layer and step against the
  target's `baseline.kernels_per_layer` bounds; CPU time per inference is recorded too.

Then the roofline model (`primec.hardware.gpumodel`) at both batches, primec's counted energy per inference
(compiled, simulated on N-Digits with PRIME's released exit rule), and the efficiency ratio under
several ways of counting the GPU (docs/energy.md, "How 37.83x can arise").

    .venv/bin/python bench/gpu_baseline.py                 # CPU: about a minute
    .venv/bin/python bench/gpu_baseline.py --device cuda   # with a GPU: adds measured energies
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from primec.backends.lower import lower  # noqa: E402
from primec.backends.simulator import Simulator  # noqa: E402

from primec.apps.demo import DEMO_MODELS, INPUT_BITS  # noqa: E402
from primec.core.passmanager import PassOptions  # noqa: E402
from primec.datasets import load_split  # noqa: E402
from primec.hardware import gpumodel  # noqa: E402
from primec.hardware.choices import resolve_target  # noqa: E402
from primec.hardware.earlyexit import PRIME_RULE  # noqa: E402
from primec.hardware.energy import energy_report  # noqa: E402
from primec.hardware.target import DEFAULT_TARGET  # noqa: E402
from primec.nn.archs import ARCHS  # noqa: E402
from primec.nn.supermask import Supermask  # noqa: E402
from primec.pipeline import compile_model  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "gpu_baseline.json"
PRIME_RATIO = 37.83  # PRIME's reported gain on classification (PRIME.md)
# NVIDIA A100 datasheet: 400 W at 19.5 TFLOP/s FP32 = 20.5 pJ per FLOP (the target's
# baseline.energy_per_mac_pj is the FP16 tensor-core figure, 400 W at 312 TFLOP/s).
A100_FP32_PJ_PER_MAC = 2 * 400.0 / 19.5e12 * 1e12
SAMPLES = 128  # N-Digits test samples simulated for primec's energy


class OpCounter(TorchDispatchMode):
    """Counts aten operations that compute (one CUDA kernel each); views launch none."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += not (func.is_view or func.overloadpacket.__name__ in ("detach", "alias"))
        return func(*args, **(kwargs or {}))


def network(model, masked: bool) -> torch.nn.Module:
    """The demo model in plain PyTorch, effective weights fixed once (dense: mask all ones)."""
    net = ARCHS[model.arch]()
    net.load_state_dict(torch.load(model.checkpoint, weights_only=True, map_location="cpu"))
    net.eval()
    for layer in net.modules():
        if isinstance(layer, Supermask):
            with torch.no_grad():
                weight = layer.effective_weight() if masked else layer.weight * layer.gain
            layer.effective_weight = _fixed(weight.detach())
    return net


def _fixed(weight: torch.Tensor):
    return lambda: weight


def cpu_check(net: torch.nn.Module, x: torch.Tensor, layers: int, program_macs: int) -> dict:
    """What PyTorch executes per inference (batch 1) beside the roofline model's inputs.

    Counted on one step (`net.step`): `net(x)` also runs a step to shape the zero states.
    """
    steps = x.shape[1]
    with torch.no_grad(), FlopCounterMode(display=False) as flops:
        net.step(x[:1, 0])
    with torch.no_grad(), OpCounter() as ops:
        net.step(x[:1, 0])
    return {
        "flops_per_inference_torch": flops.get_total_flops() * steps,
        "flops_per_inference_roofline": 2 * program_macs * steps,
        "kernels_per_step": ops.ops,
        "kernels_per_layer_measured": ops.ops / layers,
        "cpu_seconds_per_inference_batch1": _seconds(net, x[:1]),
    }


def _seconds(net: torch.nn.Module, x: torch.Tensor, repeats: int = 5) -> float:
    with torch.no_grad():
        net(x)
        started = time.perf_counter()
        for _ in range(repeats):
            net(x)
    return (time.perf_counter() - started) / (repeats * len(x))


def gpu_energy(net: torch.nn.Module, x: torch.Tensor, batch: int, repeats: int) -> dict | None:
    """Joules per inference from the GPU's energy counter (None without NVML)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # ImportError without nvidia-ml-py; pynvml.NVMLError without NVML
        print(f"no GPU energy counter: {exc}", file=sys.stderr)
        return None
    handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
    data = x[torch.arange(batch) % len(x)].cuda()
    net = net.cuda()
    with torch.no_grad():
        for _ in range(3):
            net(data)
        torch.cuda.synchronize()
        before, started = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle), time.perf_counter()
        for _ in range(repeats):
            net(data)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        joules = (pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) - before) * 1e-3
    return {
        "batch": batch,
        "energy_per_inference_j": joules / (repeats * batch),
        "average_power_w": joules / seconds,
        "seconds_per_inference": seconds / (repeats * batch),
        "device": torch.cuda.get_device_name(),
    }


def primec_energy(model, x: np.ndarray) -> tuple[dict[str, Any], Any]:
    """primec's counted energy per inference: compiled, simulated with PRIME's exit rule."""
    target, _ = resolve_target(DEFAULT_TARGET, input_bits=INPUT_BITS)
    graph = compile_model(model.checkpoint, model.arch, options=PassOptions(), target=target).graph
    program = replace(lower(graph, target), exit_table=PRIME_RULE)
    result = Simulator(program).run(x, 64)
    report = energy_report(result.counts, result.exit_step, program.meta, program.timesteps)
    return report, program


def methods(report: dict[str, Any], program, parameters: dict[str, Any]) -> dict[str, Any]:
    """The efficiency ratio under each way of counting the GPU's energy."""
    steps = program.timesteps
    work = gpumodel.Workload.from_meta(program.meta, steps)
    ours = report["energy_per_inference_j"]
    low, high = report["energy_per_inference_range_j"]
    kept = 0.5  # PRIME's sparsity: half the synapses are kept in every layer
    executed = report["operations_per_inference"]["steps"] / steps
    fp32 = work.macs * steps * A100_FP32_PJ_PER_MAC * 1e-12
    gpu = {
        "roofline, batch 1, dense, all T": gpumodel.energy_per_inference(work, parameters, 1),
        f"roofline, batch {parameters['baseline.large_batch']}, dense, all T": report[
            "gpu_baseline_energy_j"
        ],
        "peak FP32 (41 pJ/MAC), dense MACs, all T": fp32,
        "peak FP32, effective MACs (pruned, early exit)": fp32 * kept * executed,
        "PRIME's method: peak FP16 tensor (2.56 pJ/MAC), dense MACs, all T": (
            gpumodel.prime_method_energy(work, parameters)
        ),
    }
    return {
        name: {
            "gpu_energy_j": joules,
            "ratio": joules / ours,
            "ratio_range": [joules / high, joules / low],
            "vs_prime_37_83x": joules / ours / PRIME_RATIO,
        }
        for name, joules in gpu.items()
    }


def run(device: str, repeats: int) -> dict[str, Any]:
    """Every measurement and model of the bench, per demo model."""
    x_all = load_split("test")[0]
    out: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "device": device,
        "gpu_available": torch.cuda.is_available(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "models": {},
    }
    for model in DEMO_MODELS:
        report, program = primec_energy(model, x_all[:SAMPLES])
        parameters = program.meta["target_parameters"]
        layers = len(program.meta["layers"])
        x = torch.from_numpy(x_all[:64]).float()
        entry: dict[str, Any] = {
            "primec_energy_per_inference_j": report["energy_per_inference_j"],
            "primec_energy_range_j": report["energy_per_inference_range_j"],
            "avg_timesteps": report["operations_per_inference"]["steps"],
            "dense_macs_per_step": program.meta["dense_macs_per_step"],
            "methods": methods(report, program, parameters),
        }
        for variant in ("dense", "masked"):
            net = network(model, variant == "masked")
            measured = cpu_check(net, x, layers, program.meta["dense_macs_per_step"])
            if device.startswith("cuda") and torch.cuda.is_available():
                big = parameters["baseline.large_batch"]
                measured["gpu"] = [gpu_energy(net, x, b, repeats) for b in (1, big)]
            entry[variant] = measured
        out["models"][model.key] = entry
    return out


def main() -> None:
    """Run the bench, print a summary, write bench/results/gpu_baseline.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = run(args.device, args.repeats)
    for key, entry in result["models"].items():
        print(f"{key}: primec {entry['primec_energy_per_inference_j'] * 1e9:.0f} nJ per inference")
        for variant in ("dense", "masked"):
            check = entry[variant]
            print(
                f"  {variant}: FLOPs torch {check['flops_per_inference_torch']:.3g} vs roofline "
                f"{check['flops_per_inference_roofline']:.3g}; {check['kernels_per_layer_measured']:.1f} "
                f"kernels per layer and step; GPU: {check.get('gpu', 'none')}"
            )
        for name, method in entry["methods"].items():
            print(
                f"  {name:50} GPU {method['gpu_energy_j'] * 1e6:9.1f} uJ  ratio {method['ratio']:9.1f}x "
                f"({method['ratio_range'][0]:.0f}-{method['ratio_range'][1]:.0f}x)"
            )
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
