"""Small conv SNNs as each framework's tutorials build them, for `--arch tests/framework_archs.py:NAME`.

Each factory returns the framework's own module (no primec code); the weights are seeded and
scaled so that every layer spikes on N-Digits. `PRIMEC_STEP` gives the time-loop facts.
"""

from __future__ import annotations

import torch
from torch import nn

PRIMEC_STEP = {
    "input_shape": (2, 34, 34),
    "timesteps": 10,
    "input_encoding": "event_counts",
    "readout": "spike_count",
}


def _convs(seed: int) -> list[nn.Module]:
    """Conv(2->8, 5) + pool, conv(8->16, 5) + pool, flatten, linear(400->10): seeded weights."""
    torch.manual_seed(seed)
    layers = [
        nn.Conv2d(2, 8, 5),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 10),
    ]
    with torch.no_grad():
        layers[0].weight.mul_(2.0)
        layers[2].weight.mul_(3.0)
        layers[5].weight.mul_(3.0)
    return layers


def _interleave(layers: list[nn.Module], neurons: list[nn.Module]) -> nn.Sequential:
    conv1, pool1, conv2, pool2, flat, fc = layers
    n1, n2, n3 = neurons
    return nn.Sequential(conv1, pool1, n1, conv2, pool2, n2, flat, fc, n3)


def snntorch_leaky(reset: str = "subtract") -> nn.Sequential:
    """The snnTorch tutorial's convolutional SNN with Leaky neurons."""
    import snntorch as snn

    def cell(output: bool = False) -> nn.Module:
        return snn.Leaky(beta=0.9, init_hidden=True, output=output, reset_mechanism=reset)

    return _interleave(_convs(0), [cell(), cell(), cell(output=True)])


def snntorch_leaky_zero() -> nn.Sequential:
    """Leaky with reset to zero."""
    return snntorch_leaky("zero")


def snntorch_zero_no_delay(cls: str = "Leaky") -> nn.Sequential:
    """Leaky (or Synaptic) with reset to zero at once: reset_delay=False."""
    return _no_delay(snntorch_leaky_zero() if cls == "Leaky" else snntorch_synaptic_zero(), cls)


def _no_delay(net: nn.Sequential, cls: str) -> nn.Sequential:
    """The network with reset_delay=False on every `cls` neuron."""
    for module in net.modules():
        if type(module).__name__ == cls:
            module.reset_delay = False
    return net


def snntorch_synaptic_zero_no_delay() -> nn.Sequential:
    """Synaptic with reset to zero at once: reset_delay=False."""
    return snntorch_zero_no_delay("Synaptic")


def snntorch_subtract_no_delay(cls: str = "Leaky") -> nn.Sequential:
    """Leaky (or Synaptic) with the subtract reset at once: reset_delay=False."""
    return _no_delay(snntorch_leaky() if cls == "Leaky" else snntorch_synaptic(), cls)


def snntorch_synaptic_subtract_no_delay() -> nn.Sequential:
    """Synaptic with the subtract reset at once."""
    return snntorch_subtract_no_delay("Synaptic")


def snntorch_synaptic(reset: str = "subtract") -> nn.Sequential:
    """The same with Synaptic neurons (a synaptic current state)."""
    import snntorch as snn

    def cell(output: bool = False) -> nn.Module:
        return snn.Synaptic(
            alpha=0.8, beta=0.9, init_hidden=True, output=output, reset_mechanism=reset
        )

    return _interleave(_convs(1), [cell(), cell(), cell(output=True)])


def snntorch_synaptic_zero() -> nn.Sequential:
    """Synaptic with reset to zero."""
    return snntorch_synaptic("zero")


def snntorch_per_channel(cls: str = "Leaky", reset: str = "subtract") -> nn.Sequential:
    """The snnTorch conv SNN with learnable per-channel beta and threshold ([C, 1, 1] after each
    convolution, [10] per output neuron; learn_beta, learn_threshold), seeded random values."""
    import snntorch as snn

    draw = torch.Generator().manual_seed(11)

    def uniform(shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape, generator=draw)

    def cell(shape: tuple[int, ...], output: bool = False) -> nn.Module:
        options = dict(init_hidden=True, output=output, reset_mechanism=reset)
        options |= dict(learn_beta=True, learn_threshold=True)
        beta, threshold = uniform(shape, 0.5, 1.0), uniform(shape, 0.5, 1.5)
        if cls == "Synaptic":
            alpha = uniform(shape, 0.5, 0.9)
            return snn.Synaptic(alpha, beta, threshold=threshold, learn_alpha=True, **options)
        return snn.Leaky(beta, threshold=threshold, **options)

    neurons = [cell((8, 1, 1)), cell((16, 1, 1)), cell((10,), output=True)]
    return _interleave(_convs(6), neurons)


def snntorch_per_channel_zero() -> nn.Sequential:
    """Per-channel Leaky with reset to zero."""
    return snntorch_per_channel(reset="zero")


def snntorch_per_channel_synaptic() -> nn.Sequential:
    """Per-channel Synaptic: alpha, beta and threshold per channel, learnable."""
    return snntorch_per_channel("Synaptic")


def _spikingjelly(neurons: list[nn.Module], step_mode: str, scale: float = 1.0) -> nn.Sequential:
    """The SpikingJelly tutorial's conv SNN, built from its layer wrappers, in `step_mode`
    (weights times `scale`: decay_input divides each input by tau)."""
    from spikingjelly.activation_based import functional, layer

    torch.manual_seed(2)
    net = nn.Sequential(
        layer.Conv2d(2, 8, 5),
        layer.MaxPool2d(2),
        neurons[0],
        layer.Conv2d(8, 16, 5),
        layer.MaxPool2d(2),
        neurons[1],
        layer.Flatten(),
        layer.Linear(400, 10),
        neurons[2],
    )
    with torch.no_grad():
        net[0].weight.mul_(2.0 * scale)
        net[3].weight.mul_(3.0 * scale)
        net[7].weight.mul_(3.0 * scale)
    functional.set_step_mode(net, step_mode)
    return net


def sj_lif(decay_input: bool = True, hard: bool = True, step_mode: str = "s") -> nn.Sequential:
    """LIFNode with tau 2 (SpikingJelly's default)."""
    from spikingjelly.activation_based import neuron

    v_reset = 0.0 if hard else None
    cells = [neuron.LIFNode(tau=2.0, decay_input=decay_input, v_reset=v_reset) for _ in range(3)]
    return _spikingjelly(cells, step_mode, 2.0 if decay_input else 1.0)


def sj_lif_no_decay_input() -> nn.Sequential:
    """LIFNode with decay_input=False."""
    return sj_lif(decay_input=False)


def sj_lif_soft() -> nn.Sequential:
    """LIFNode with soft reset (v_reset=None)."""
    return sj_lif(hard=False)


def sj_lif_soft_no_decay_input_multistep() -> nn.Sequential:
    """Soft reset, no input decay, multi-step mode."""
    return sj_lif(decay_input=False, hard=False, step_mode="m")


def sj_lif_multistep() -> nn.Sequential:
    """LIFNode in multi-step mode."""
    return sj_lif(step_mode="m")


def sj_lif_v_reset() -> nn.Sequential:
    """LIFNode with a hard reset to v_reset = 0.5, where its membrane also starts."""
    from spikingjelly.activation_based import neuron

    cells = [neuron.LIFNode(tau=2.0, v_reset=0.5) for _ in range(3)]
    return _spikingjelly(cells, "s", 2.0)


def sj_if_v_reset_multistep() -> nn.Sequential:
    """IFNode with a hard reset to v_reset = 0.25 (its starting membrane), multi-step mode."""
    from spikingjelly.activation_based import neuron

    return _spikingjelly([neuron.IFNode(v_reset=0.25) for _ in range(3)], "m")


def sj_if(hard: bool = True, step_mode: str = "s") -> nn.Sequential:
    """IFNode."""
    from spikingjelly.activation_based import neuron

    v_reset = 0.0 if hard else None
    return _spikingjelly([neuron.IFNode(v_reset=v_reset) for _ in range(3)], step_mode)


def sj_if_soft_multistep() -> nn.Sequential:
    """IFNode, soft reset, multi-step mode."""
    return sj_if(hard=False, step_mode="m")


def _norse(cell, scale: float = 6.0) -> nn.Module:
    """The Norse tutorial's conv SNN: a SequentialState of torch layers and `cell()`s."""
    import norse.torch as norse

    layers = _convs(4)
    with torch.no_grad():  # Norse scales each input by dt/tau_mem (0.1 by default)
        for layer in layers:
            if isinstance(layer, nn.Conv2d | nn.Linear):
                layer.weight.mul_(scale)
    conv1, pool1, conv2, pool2, flat, fc = layers
    return norse.SequentialState(conv1, pool1, cell(), conv2, pool2, cell(), flat, fc, cell())


def norse_lif() -> nn.Module:
    """Norse LIFCell, default parameters (dt 1 ms, tau_syn 5 ms, tau_mem 10 ms)."""
    import norse.torch as norse

    return _norse(norse.LIFCell)


def norse_lif_box() -> nn.Module:
    """Norse LIFBoxCell (no synaptic current)."""
    import norse.torch as norse

    return _norse(norse.LIFBoxCell, 10.0)


def norse_lif_v_leak() -> nn.Module:
    """Norse LIFCell leaking towards v_leak = 0.25 (where its membrane starts), v_reset -0.25."""
    import norse.torch as norse

    p = norse.LIFParameters(v_leak=torch.tensor(0.25), v_reset=torch.tensor(-0.25))
    return _norse(lambda: norse.LIFCell(p))


def norse_lif_box_v_leak() -> nn.Module:
    """Norse LIFBoxCell leaking towards v_leak = -0.25 (where its membrane starts)."""
    import norse.torch as norse

    p = norse.LIFBoxParameters(v_leak=torch.tensor(-0.25))
    return _norse(lambda: norse.LIFBoxCell(p), 10.0)


def snntorch_leaky_zero_mlp() -> nn.Sequential:
    """Zero-reset Leaky MLP on flattened N-Digits frames [2312], for snnTorch's NIR exporter.

    Shaped round the exporter's limits with nir 1.0.8, which fails to infer the types of the
    convolutions it writes, of a one-value beta (so beta and threshold are per neuron) and of a
    batch dimension (so there is none to flatten)."""
    import snntorch as snn

    torch.manual_seed(5)
    fc1, fc2 = nn.Linear(2 * 34 * 34, 64), nn.Linear(64, 10)
    with torch.no_grad():
        fc1.weight.mul_(4.0)
        fc2.weight.mul_(3.0)

    def cell(size: int, output: bool = False) -> nn.Module:
        beta, threshold = torch.full((size,), 0.875), torch.ones(size)
        return snn.Leaky(
            beta=beta, threshold=threshold, init_hidden=True, output=output, reset_mechanism="zero"
        )

    return nn.Sequential(fc1, cell(64), fc2, cell(10, output=True))


def sj_lif_strided() -> nn.Sequential:
    """LIFNode (hard reset, decay_input) after strided convolutions, for SpikingJelly's NIR
    exporter (which writes no max pool)."""
    from spikingjelly.activation_based import layer, neuron

    torch.manual_seed(6)
    net = nn.Sequential(
        layer.Conv2d(2, 8, 5, stride=2),
        neuron.LIFNode(tau=2.0),
        layer.Conv2d(8, 16, 3, stride=2),
        neuron.LIFNode(tau=2.0),
        layer.Flatten(),
        layer.Linear(16 * 7 * 7, 10),
        neuron.LIFNode(tau=2.0),
    )
    with torch.no_grad():
        for index, scale in ((0, 4.0), (2, 8.0), (5, 16.0)):
            net[index].weight.mul_(scale)
    return net
