"""A zoo of small spiking networks for the frontend tests, each a factory usable as --arch,
and the helpers that run them (inputs of each encoding, onnxruntime in a loop).

`tests/snn_models.py:mlp_leaky` and friends build a fresh network with fixed random weights
(and non-trivial BatchNorm statistics), so the same factory always gives the same model.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from primec import frontend as fe
from primec import nn as pnn


def _randomise_batch_norms(net: nn.Module, seed: int) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters (eval mode uses them)."""
    generator = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            size = module.num_features
            module.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(size, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(size, generator=generator) * 0.1)
    return net


def mlp_leaky() -> pnn.SNN:
    """An MLP with snnTorch-style Leaky neurons (subtract reset) and biases, mean spike rate."""
    torch.manual_seed(1)
    layers = nn.Sequential(
        OrderedDict(
            flatten=nn.Flatten(),
            fc1=nn.Linear(64, 48),
            lif1=pnn.Leaky(beta=0.9, threshold=0.5),
            drop=nn.Dropout(0.2),
            fc2=nn.Linear(48, 10),
            lif2=pnn.Leaky(beta=0.8, threshold=0.3),
        )
    )
    return pnn.SNN(
        {"layers": layers},
        pnn.MeanReadout(),
        input_shape=(1, 8, 8),
        timesteps=8,
        input_encoding="spikes",
    )


def conv_bn() -> pnn.SNN:
    """A conv SNN with biases, BatchNorm, max and average pooling, IF/LIF neurons, integrator."""
    torch.manual_seed(2)
    features = nn.Sequential(
        OrderedDict(
            conv0=nn.Conv2d(1, 8, 3, padding=1),
            bn0=nn.BatchNorm2d(8),
            if0=pnn.IF(threshold=0.5),
            pool0=nn.MaxPool2d(2),
            conv1=nn.Conv2d(8, 16, 3),
            bn1=nn.BatchNorm2d(16),
            lif1=pnn.LIF(keep=0.5, threshold=0.4, strict=False, reset="subtract"),
            pool1=nn.AvgPool2d(2),
        )
    )
    head = nn.Sequential(
        OrderedDict(
            flatten=nn.Flatten(),
            fc=nn.Linear(16 * 2 * 2, 10),
            relu=nn.LeakyReLU(0.05),
            out=pnn.Integrator(keep=0.9, slope=1.0),
        )
    )
    net = pnn.SNN(
        {"features": features, "head": head},
        pnn.MeanReadout(),
        input_shape=(1, 12, 12),
        timesteps=6,
        input_encoding="analog_repeat",
    )
    return _randomise_batch_norms(net, 2)


def fsvae_autoencoder() -> pnn.SNN:
    """The inpainting shape without sampling: supermask conv encoder, transposed-conv decoder."""
    mask = {"sparsity": 0.5, "gain": 0.05, "std": 6.92}
    encoder = nn.Sequential(
        OrderedDict(
            conv0=pnn.SupermaskConv2d(1, 8, 3, stride=2, padding=1, bias=True, seed=10, **mask),
            bn0=nn.BatchNorm2d(8),
            lif0=pnn.FSVAELIF(),
            conv1=pnn.SupermaskConv2d(8, 8, 3, stride=2, padding=1, bias=True, seed=11, **mask),
            bn1=nn.BatchNorm2d(8),
            lif1=pnn.FSVAELIF(),
            flatten=nn.Flatten(),
            fc=pnn.SupermaskLinear(8 * 4 * 4, 32, seed=12, **mask),
            lif2=pnn.FSVAELIF(),
        )
    )
    decoder = nn.Sequential(
        OrderedDict(
            fc=pnn.SupermaskLinear(32, 8 * 4 * 4, seed=13, **mask),
            unflatten=nn.Unflatten(1, (8, 4, 4)),
            lif0=pnn.FSVAELIF(),
            deconv0=pnn.SupermaskConvTranspose2d(
                8, 8, 3, stride=2, padding=1, output_padding=1, bias=True, seed=14, **mask
            ),
            bn0=nn.BatchNorm2d(8),
            lif1=pnn.FSVAELIF(),
            deconv1=pnn.SupermaskConvTranspose2d(
                8, 8, 3, stride=2, padding=1, output_padding=1, bias=True, seed=15, **mask
            ),
            bn1=nn.BatchNorm2d(8),
            lif2=pnn.FSVAELIF(),
            deconv2=pnn.SupermaskConvTranspose2d(8, 1, 3, padding=1, seed=16, **mask),
        )
    )
    net = pnn.SNN(
        {"encoder": encoder, "decoder": decoder},
        pnn.ExpTanhReadout(decay=0.8),
        input_shape=(1, 16, 16),
        timesteps=16,
        input_encoding="analog_repeat",
    )
    return _randomise_batch_norms(net, 3)


def with_sigmoid() -> pnn.SNN:
    """A network with a layer primec cannot map (a sigmoid) at `features.act`."""
    torch.manual_seed(4)
    features = nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(1, 4, 3),
            act=nn.Sigmoid(),
            lif=pnn.PrimeCell(),
            flatten=nn.Flatten(),
            fc=nn.Linear(4 * 6 * 6, 3),
            gate=nn.Tanh(),
        )
    )
    return pnn.SNN(
        {"features": features},
        pnn.MeanReadout(),
        input_shape=(1, 8, 8),
        timesteps=4,
        input_encoding="analog_repeat",
    )


LIF_VARIANTS = {
    "prime": pnn.PrimeCell(),
    "fsvae": pnn.FSVAELIF(),
    "leaky": pnn.Leaky(beta=0.9, threshold=0.5),
    "if": pnn.IF(threshold=0.3),
    "if_subtract": pnn.IF(threshold=0.3, reset="subtract"),
    "non_strict": pnn.LIF(keep=0.5, threshold=0.25, strict=False, slope=0.2),
}

ZOO = {
    "mlp_leaky": mlp_leaky,
    "conv_bn": conv_bn,
    "fsvae_autoencoder": fsvae_autoencoder,
}


def example_input(
    net: pnn.SNN, batch: int = 4, steps: int | None = None, seed: int = 0
) -> torch.Tensor:
    """Inputs [B, T, ...] of the network's encoding: 0/1 spikes, or analog values repeated."""
    steps = steps or net.timesteps
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, steps, *net.input_shape)
    if net.input_encoding == "spikes":
        return (torch.rand(shape, generator=generator) < 0.3).float()
    if net.input_encoding == "event_counts":
        return torch.randint(0, 4, shape, generator=generator).float()
    frame = torch.rand((batch, 1, *net.input_shape), generator=generator) * 2.0
    return frame.expand(shape).contiguous()


def onnx_of(net: pnn.SNN) -> onnx.ModelProto:
    """The network's ONNX step graph, as `primec export` writes it."""
    return fe.export(fe.Source("test model", Path("test"), module=net))


def run_onnx(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run an ONNX step graph in a loop with onnxruntime; every output per step, [B, T, ...]."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    meta = {p.key: p.value for p in model.metadata_props}
    pairs = json.loads(meta["primec.states"])
    shapes = {i.name: i.shape[1:] for i in session.get_inputs()}
    states = {name: np.zeros((x.shape[0], *shapes[name]), np.float32) for name, _ in pairs}
    names = [o.name for o in session.get_outputs()]
    history: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for t in range(x.shape[1]):
        results = dict(zip(names, session.run(None, {"x": x[:, t], **states}), strict=True))
        states = {state: results[output] for state, output in pairs}
        for name in names:
            history[name].append(results[name])
    return {name: np.stack(values, axis=1) for name, values in history.items()}
