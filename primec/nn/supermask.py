"""Supermask layers (PRIME, after edge-popup): frozen random weights, trained scores, top-|score| mask.

Each layer holds `weight`, drawn once from the as-formed conductance distribution and never
trained, and `scores` of the same shape. The kept synapses are the top (1 - sparsity) of |scores|
in the layer (PRIME.md: k = 1 + round(sparsity*(n-1)), kept where |s| >= the k-th smallest), the
effective weight is weight * gain * mask, and the gradient reaches the scores straight through
the mask. The state_dict keys are those of the plain layer plus `scores`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from primec.nn import functional as F

RELEASED_STD = 6.35  # std of the released PRIME classifier's weights (device units)
RELEASED_GAIN = 0.01  # the periphery's scale in the released PRIME classifier


def draw_weights(shape: tuple[int, ...], std: float = RELEASED_STD, seed: int = 0) -> Tensor:
    """As-formed random weights: normal(0, std), reproducible from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator) * std


class Supermask:
    """Mixin for a torch layer whose `weight` is frozen and masked by trained `scores`."""

    weight: nn.Parameter
    sparsity: float
    gain: float

    def init_supermask(self, sparsity: float, gain: float, std: float, seed: int) -> None:
        """Draw the frozen weight, initialise the scores (both from `seed`), set sparsity and gain."""
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
        self.sparsity, self.gain = float(sparsity), float(gain)
        with torch.no_grad():
            self.weight.copy_(draw_weights(tuple(self.weight.shape), std, seed))
        self.weight.requires_grad_(False)
        scores = torch.empty_like(self.weight)
        # edge-popup's score initialisation; its own generator keeps the weights independent.
        generator = torch.Generator().manual_seed(seed + 1_000_003)
        nn.init.kaiming_uniform_(scores, a=math.sqrt(5), generator=generator)
        self.scores = nn.Parameter(scores)

    def effective_weight(self) -> Tensor:
        """weight * gain * mask: what the layer multiplies its input with."""
        if torch.compiler.is_exporting():
            return torch.ops.primec.supermask(self.weight, self.scores, self.sparsity, self.gain)
        return F.masked_weight(self.weight, self.scores, self.sparsity, self.gain)

    def kept(self) -> int:
        """How many synapses the mask keeps."""
        return int(F.keep_mask(self.scores.detach(), self.sparsity).sum())


class SupermaskLinear(Supermask, nn.Linear):
    """`nn.Linear` with a frozen random weight and a trained top-|score| mask."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        *,
        sparsity: float = 0.5,
        gain: float = RELEASED_GAIN,
        std: float = RELEASED_STD,
        seed: int = 0,
    ) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias)
        self.init_supermask(sparsity, gain, std, seed)

    def extra_repr(self) -> str:
        """The layer's arguments plus sparsity and gain."""
        return f"{nn.Linear.extra_repr(self)}, sparsity={self.sparsity}, gain={self.gain}"

    def forward(self, x: Tensor) -> Tensor:
        """y = x @ W_eff.T (+ bias)."""
        return nn.functional.linear(x, self.effective_weight(), self.bias)


class SupermaskConv2d(Supermask, nn.Conv2d):
    """`nn.Conv2d` with a frozen random weight and a trained top-|score| mask."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = False,
        *,
        sparsity: float = 0.5,
        gain: float = RELEASED_GAIN,
        std: float = RELEASED_STD,
        seed: int = 0,
    ) -> None:
        nn.Conv2d.__init__(
            self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias
        )
        self.init_supermask(sparsity, gain, std, seed)

    def extra_repr(self) -> str:
        """The layer's arguments plus sparsity and gain."""
        return f"{nn.Conv2d.extra_repr(self)}, sparsity={self.sparsity}, gain={self.gain}"

    def forward(self, x: Tensor) -> Tensor:
        """Cross-correlation with W_eff (+ bias)."""
        return self._conv_forward(x, self.effective_weight(), self.bias)


class SupermaskConvTranspose2d(Supermask, nn.ConvTranspose2d):
    """`nn.ConvTranspose2d` with a frozen random weight and a trained top-|score| mask."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        output_padding: int | tuple[int, int] = 0,
        groups: int = 1,
        bias: bool = False,
        dilation: int | tuple[int, int] = 1,
        *,
        sparsity: float = 0.5,
        gain: float = RELEASED_GAIN,
        std: float = RELEASED_STD,
        seed: int = 0,
    ) -> None:
        nn.ConvTranspose2d.__init__(
            self,
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            output_padding,
            groups,
            bias,
            dilation,
        )
        self.init_supermask(sparsity, gain, std, seed)

    def extra_repr(self) -> str:
        """The layer's arguments plus sparsity and gain."""
        return f"{nn.ConvTranspose2d.extra_repr(self)}, sparsity={self.sparsity}, gain={self.gain}"

    def forward(self, x: Tensor) -> Tensor:
        """Transposed convolution with W_eff (+ bias)."""
        return nn.functional.conv_transpose2d(
            x,
            self.effective_weight(),
            self.bias,
            self.stride,
            self.padding,
            self.output_padding,
            self.groups,
            self.dilation,
        )
