"""Step graphs of the test models, built with GraphBuilder the way the frontend imports them.

Supermask layers are `weight` (as formed) + `weight` (scores) + `supermask`, feeding the conv or
linear as its weight operand; plain layers feed a `weight`; a bias is `add(y, b)` with b [C,1,1]
or [M]; BatchNorm is `batch_norm`; neurons, readouts and pools are their IR ops. Every node's loc
is the torch module path it would come from. `ZOO` names each model with its test inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from primec.core.builder import GraphBuilder
from primec.core.ir import Graph, Value

RELEASED = (
    Path(__file__).resolve().parents[1] / "primec" / "models" / "prime_nmnist_classification.pt"
)
PRIME_CELL = {"keep": 0.2, "threshold": 0.2, "slope": 0.1}
FSVAE_LIF = {"keep": 0.25, "threshold": 0.2}
FORMED_STD = 6.35


class Net:
    """A GraphBuilder with the layer helpers the zoo's models share."""

    def __init__(self, name: str, seed: int = 0) -> None:
        self.b = GraphBuilder(name)
        self.rng = np.random.default_rng(seed)

    def supermask(
        self, loc: str, shape: tuple[int, ...], gain: float, sparsity: float = 0.5, arrays=None
    ) -> Value:
        """As-formed weight, scores and the supermask op of one layer."""
        formed, scores = arrays if arrays is not None else self.random_formed(shape)
        w = self.b.weight(np.asarray(formed, np.float32), loc=loc, name=f"{loc}.weight")
        s = self.b.weight(np.asarray(scores, np.float32), loc=loc, name=f"{loc}.scores")
        return self.b.op("supermask", w, s, loc=loc, sparsity=sparsity, gain=gain)

    def random_formed(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Random as-formed weights (device units) and random scores."""
        formed = self.rng.normal(0.0, FORMED_STD, shape).astype(np.float32)
        return formed, self.rng.normal(0.0, 1.0, shape).astype(np.float32)

    def plain(self, loc: str, shape: tuple[int, ...], scale: float) -> Value:
        """A plain (programmed) weight."""
        array = self.rng.normal(0.0, scale, shape).astype(np.float32)
        return self.b.weight(array, loc=loc, name=f"{loc}.weight")

    def bias(self, loc: str, y: Value, scale: float) -> Value:
        """y + b, b per channel ([C,1,1] for a feature map, [M] for a vector)."""
        channels = y.type.shape[0]
        shape = (channels,) if len(y.type.shape) == 1 else (channels, 1, 1)
        b = self.b.weight(
            self.rng.normal(0.0, scale, shape).astype(np.float32), loc=loc, name=f"{loc}.bias"
        )
        return self.b.op("add", y, b, loc=loc)

    def batch_norm(self, loc: str, x: Value) -> Value:
        """Inference BatchNorm with random statistics."""
        c = x.type.shape[0]
        params = [
            self.rng.uniform(0.5, 1.5, c),
            self.rng.normal(0.0, 0.1, c),
            self.rng.normal(0.0, 0.1, c),
            self.rng.uniform(0.5, 2.0, c),
        ]
        names = ("weight", "bias", "running_mean", "running_var")
        ws = [
            self.b.weight(p.astype(np.float32), loc=loc, name=f"{loc}.{n}")
            for p, n in zip(params, names, strict=True)
        ]
        return self.b.op("batch_norm", x, *ws, loc=loc, eps=1e-5)

    def lif(self, loc: str, current: Value, **params) -> Value:
        """A LIF layer with its two states; returns the spikes."""
        shape = current.type.shape
        u = self.b.state(f"{loc}.membrane", shape)
        s = self.b.state(f"{loc}.spike", shape)
        spikes, membrane = self.b.op("lif", current, u, s, loc=loc, name=loc, **params)
        self.b.set_state(u, membrane)
        self.b.set_state(s, spikes)
        return spikes

    def integrator(self, loc: str, current: Value, **params) -> Value:
        """A non-spiking integrator with its membrane state."""
        u = self.b.state(f"{loc}.membrane", current.type.shape)
        out = self.b.op("integrator", current, u, loc=loc, name=loc, **params)
        self.b.set_state(u, out)
        return out

    def readout_mean(self, x: Value) -> None:
        """The running mean over timesteps, as the graph's output."""
        total = self.b.state("readout.sum", x.type.shape)
        count = self.b.state("readout.count", (1,))
        mean, total_next, count_next = self.b.op("readout_mean", x, total, count, loc="readout")
        self.b.set_state(total, total_next)
        self.b.set_state(count, count_next)
        self.b.output(mean)

    def conv(self, x: Value, w: Value, loc: str, **attrs) -> Value:
        """conv2d with PyTorch's defaults."""
        return self.b.op("conv2d", x, w, loc=loc, name=loc, **attrs)


def load_released() -> dict[str, np.ndarray]:
    """The released PRIME state_dict as NumPy arrays."""
    import torch

    state = torch.load(RELEASED, weights_only=True, map_location="cpu")
    return {k: v.numpy() for k, v in state.items()}


def prime_classifier(state: dict[str, np.ndarray] | None = None) -> Graph:
    """PRIME's N-MNIST classifier (PRIME.md), with the released weights unless `state` is given."""
    state = load_released() if state is None else state
    net = Net("prime_nmnist")
    b = net.b
    b.meta.update(timesteps=10, readout="mean", input_encoding="event_counts")

    def layer(key: str) -> Value:
        arrays = (state[f"{key}.weight"], state[f"{key}.scores"])
        return net.supermask(key, arrays[0].shape, 0.01, 0.5, arrays)

    x = b.input("x", (2, 34, 34))
    c0 = net.conv(x, layer("features.conv0"), "features.conv0", padding=(1, 1))
    s0 = net.lif("features.lif0", c0, **PRIME_CELL)
    p0 = b.op("avg_pool2d", s0, loc="features.pool0", kernel=(2, 2), stride=(2, 2))
    c1 = net.conv(p0, layer("features.conv1"), "features.conv1")
    s1 = net.lif("features.lif1", c1, **PRIME_CELL)
    p1 = b.op("avg_pool2d", s1, loc="features.pool1", kernel=(2, 2), stride=(2, 2))
    flat = b.op("flatten", p1, loc="classifier.flatten")
    fc = b.op("linear", flat, layer("classifier.linear0"), loc="classifier.linear0")
    out = net.integrator("classifier.out", fc, keep=1.0, slope=0.1)
    net.readout_mean(out)
    return b.build()


def mlp_snntorch(seed: int = 1) -> Graph:
    """A two-layer MLP of snnTorch `Leaky` neurons (subtract reset after the leak), plain weights."""
    net = Net("mlp_snntorch", seed)
    b = net.b
    b.meta.update(timesteps=8, readout="mean", input_encoding="spikes")
    leaky = {"keep": 0.9, "threshold": 1.0, "reset": "subtract", "reset_timing": "after_leak"}
    x = b.input("x", (64,))
    h = b.op("linear", x, net.plain("fc1", (48, 64), 0.4), loc="fc1")
    s1 = net.lif("lif1", net.bias("fc1", h, 0.1), **leaky)
    o = b.op("linear", s1, net.plain("fc2", (10, 48), 0.5), loc="fc2")
    s2 = net.lif("lif2", o, **leaky)
    net.readout_mean(s2)
    return b.build()


def conv_bn_snn(seed: int = 2) -> Graph:
    """A conv SNN with bias and BatchNorm, a max pool, an average pool and a supermask layer."""
    net = Net("conv_bn_snn", seed)
    b = net.b
    b.meta.update(timesteps=6, readout="mean", input_encoding="event_counts")
    x = b.input("x", (2, 16, 16))
    c0 = net.conv(x, net.plain("conv0", (8, 2, 3, 3), 0.3), "conv0", padding=(1, 1))
    n0 = net.batch_norm("bn0", net.bias("conv0", c0, 0.05))
    s0 = net.lif("lif0", n0, keep=0.5, threshold=0.5)
    p0 = b.op("max_pool2d", s0, loc="pool0", kernel=(2, 2), stride=(2, 2))
    c1 = net.conv(p0, net.supermask("conv1", (16, 8, 3, 3), 0.05), "conv1")
    s1 = net.lif("lif1", net.batch_norm("bn1", c1), keep=0.5, threshold=0.3)
    p1 = b.op("avg_pool2d", s1, loc="pool1", kernel=(2, 2), stride=(2, 2))
    flat = b.op("flatten", p1, loc="flatten")
    fc = b.op("linear", flat, net.plain("fc", (10, 144), 0.3), loc="fc")
    out = net.integrator("out", net.bias("fc", fc, 0.05), keep=1.0, slope=0.1)
    net.readout_mean(out)
    return b.build()


def encoder_decoder(seed: int = 3) -> Graph:
    """A small FSVAE-style encoder-decoder: strided convs, transposed convs, exp-tanh readout."""
    net = Net("encoder_decoder", seed)
    b = net.b
    b.meta.update(timesteps=16, readout="exp_tanh", input_encoding="pixels", input_quantum=1 / 256)
    down = {"stride": (2, 2), "padding": (1, 1)}
    up = {"stride": (2, 2), "padding": (1, 1), "output_padding": (1, 1)}
    x = b.input("x", (1, 16, 16))
    e0 = net.conv(x, net.supermask("enc.conv0", (8, 1, 3, 3), 0.1), "enc.conv0", **down)
    s0 = net.lif(
        "enc.lif0", net.batch_norm("enc.bn0", net.bias("enc.conv0", e0, 0.05)), **FSVAE_LIF
    )
    e1 = net.conv(s0, net.supermask("enc.conv1", (8, 8, 3, 3), 0.05), "enc.conv1", **down)
    s1 = net.lif("enc.lif1", net.batch_norm("enc.bn1", e1), **FSVAE_LIF)
    flat = b.op("flatten", s1, loc="enc.flatten")
    z = b.op("linear", flat, net.supermask("enc.fc", (32, 128), 0.05), loc="enc.fc")
    sz = net.lif("enc.lifz", z, **FSVAE_LIF)
    h = b.op("linear", sz, net.supermask("dec.fc", (128, 32), 0.05), loc="dec.fc")
    sh = net.lif("dec.lif", h, **FSVAE_LIF)
    grid = b.op("reshape", sh, loc="dec.reshape", shape=(8, 4, 4))
    w0 = net.supermask("dec.deconv0", (8, 8, 3, 3), 0.05)
    d0 = b.op("conv_transpose2d", grid, w0, loc="dec.deconv0", name="dec.deconv0", **up)
    sd = net.lif("dec.lif0", net.batch_norm("dec.bn0", d0), **FSVAE_LIF)
    w1 = net.supermask("dec.deconv1", (8, 1, 3, 3), 0.05)
    d1 = b.op("conv_transpose2d", sd, w1, loc="dec.deconv1", name="dec.deconv1", **up)
    acc = b.state("readout.acc", d1.type.shape)
    y, acc_next = b.op(
        "readout_exp_tanh", net.bias("dec.deconv1", d1, 0.05), acc, loc="readout", decay=0.8
    )
    b.set_state(acc, acc_next)
    b.output(y)
    return b.build()


VGG_WIDTHS = (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M")


def vgg(width: float = 1.0, seed: int = 4, timesteps: int = 4, size: int = 32) -> Graph:
    """A VGG-style supermask conv SNN (about 5.7 M weights at width 1) for multi-macro placement."""
    net = Net(f"vgg_w{width:g}", seed)
    b = net.b
    b.meta.update(timesteps=timesteps, readout="mean", input_encoding="event_counts")
    x = b.input("x", (2, size, size))
    channels, index = 2, 0
    for item in VGG_WIDTHS:
        if item == "M":
            x = b.op("avg_pool2d", x, loc=f"features.pool{index}", kernel=(2, 2), stride=(2, 2))
            continue
        out = max(1, round(item * width))
        gain = 3.0 / (FORMED_STD * np.sqrt(channels * 9))
        w = net.supermask(f"features.conv{index}", (out, channels, 3, 3), float(gain))
        c = net.conv(x, w, f"features.conv{index}", padding=(1, 1))
        x = net.lif(f"features.lif{index}", c, **PRIME_CELL)
        channels, index = out, index + 1
    flat = b.op("flatten", x, loc="classifier.flatten")
    hidden = max(1, round(512 * width))
    gain = 3.0 / (FORMED_STD * np.sqrt(flat.type.size))
    h = b.op(
        "linear",
        flat,
        net.supermask("classifier.fc0", (hidden, flat.type.size), float(gain)),
        loc="classifier.fc0",
    )
    sh = net.lif("classifier.lif0", h, **PRIME_CELL)
    gain = 3.0 / (FORMED_STD * np.sqrt(hidden))
    fc = b.op(
        "linear",
        sh,
        net.supermask("classifier.fc1", (10, hidden), float(gain)),
        loc="classifier.fc1",
    )
    out = net.integrator("classifier.out", fc, keep=1.0, slope=0.1)
    net.readout_mean(out)
    return b.build()


def tiny_conv(seed: int = 5) -> Graph:
    """Golden-sized PRIME-like model: supermask conv, LIF, average pool, flatten, linear."""
    net = Net("tiny_conv", seed)
    b = net.b
    b.meta.update(timesteps=4, readout="mean", input_encoding="event_counts")
    x = b.input("x", (1, 6, 6))
    c = net.conv(x, net.supermask("conv0", (3, 1, 3, 3), 0.05), "conv0", padding=(1, 1))
    s = net.lif("lif0", c, **PRIME_CELL)
    p = b.op("avg_pool2d", s, loc="pool0", kernel=(2, 2), stride=(2, 2))
    flat = b.op("flatten", p, loc="flatten")
    fc = b.op("linear", flat, net.supermask("fc", (5, 27), 0.05), loc="fc")
    net.readout_mean(net.integrator("out", fc, keep=1.0, slope=0.1))
    return b.build()


def tiny_mlp(seed: int = 6) -> Graph:
    """Golden-sized programmed MLP: bias, BatchNorm, a dead input row and a dead output."""
    net = Net("tiny_mlp", seed)
    b = net.b
    b.meta.update(timesteps=4, readout="mean", input_encoding="spikes")
    x = b.input("x", (6,))
    w0 = net.rng.normal(0.0, 0.5, (4, 6)).astype(np.float32)
    w0[:, 2] = 0.0  # input 2 feeds nothing: tile drops its row
    w0[3, :] = 0.0  # output 3 is never driven: tile drops its column
    h = b.op("linear", x, b.weight(w0, loc="fc0", name="fc0.weight"), loc="fc0")
    n = net.batch_norm("bn0", net.bias("fc0", h, 0.1))
    s = net.lif("lif0", n, keep=0.9, threshold=0.5, reset="subtract", reset_timing="after_leak")
    o = b.op("linear", s, net.plain("fc1", (3, 4), 0.5), loc="fc1")
    net.readout_mean(net.lif("lif1", o, keep=0.9, threshold=0.5))
    return b.build()


def tiny_deconv(seed: int = 7) -> Graph:
    """Golden-sized transposed conv with an exp-tanh readout."""
    net = Net("tiny_deconv", seed)
    b = net.b
    b.meta.update(timesteps=4, readout="exp_tanh", input_encoding="spikes")
    x = b.input("x", (2, 2, 2))
    w = net.supermask("deconv0", (2, 1, 3, 3), 0.05)
    up = {"stride": (2, 2), "padding": (1, 1), "output_padding": (1, 1)}
    d = b.op("conv_transpose2d", x, w, loc="deconv0", name="deconv0", **up)
    acc = b.state("readout.acc", d.type.shape)
    y, acc_next = b.op("readout_exp_tanh", d, acc, loc="readout", decay=0.8)
    b.set_state(acc, acc_next)
    b.output(y)
    return b.build()


def weight_count(graph: Graph) -> int:
    """Synapses of the graph's conv and linear layers (the as-formed or plain weights)."""
    users = graph.users()
    total = 0
    for node in graph.nodes:
        if node.op != "weight":
            continue
        consumers = users.get(node.outputs[0].name, [])
        if any(
            u.op in ("conv2d", "linear", "conv_transpose2d") and u.inputs[1] == node.outputs[0]
            for u in consumers
        ):
            total += node.outputs[0].type.size
        if any(u.op == "supermask" and u.inputs[0] == node.outputs[0] for u in consumers):
            total += node.outputs[0].type.size
    return total


@dataclass(frozen=True)
class ZooModel:
    """A zoo model: its builder and how to make test inputs for it."""

    build: Callable[[], Graph]
    inputs: Callable[[np.random.Generator, int, int], dict[str, np.ndarray]]


def _counts(shape: tuple[int, ...], top: int = 3):
    return lambda rng, batch, steps: {
        "x": rng.integers(0, top + 1, (batch, steps, *shape)).astype(np.float64)
    }


def _pixels(shape: tuple[int, ...]):
    return lambda rng, batch, steps: {"x": rng.integers(0, 256, (batch, steps, *shape)) / 256.0}


ZOO: dict[str, ZooModel] = {
    "prime": ZooModel(prime_classifier, _counts((2, 34, 34))),
    "mlp": ZooModel(mlp_snntorch, _counts((64,), 1)),
    "conv_bn": ZooModel(conv_bn_snn, _counts((2, 16, 16))),
    "encdec": ZooModel(encoder_decoder, _pixels((1, 16, 16))),
    "vgg": ZooModel(vgg, _counts((2, 32, 32))),
    "tiny_conv": ZooModel(tiny_conv, _counts((1, 6, 6))),
    "tiny_mlp": ZooModel(tiny_mlp, _counts((6,), 1)),
    "tiny_deconv": ZooModel(tiny_deconv, _counts((2, 2, 2), 1)),
}
