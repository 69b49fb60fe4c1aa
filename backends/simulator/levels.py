"""A layer's input levels over every step of a batch (layer-major, `layermajor.py`): the input
gather's padded rows in one pass, and a sparse layer's exact sums, made from its nonzero levels
(`lifkernels.lif_over_time` calls it row by row).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def padded_rows(x, corner, out64, largest):
    """A batch's input x [B, T, C, H, W] time-major and zero-padded in one pass: out64 [T x B,
    C, Hp, Wp] (row t x B + b is sample b at step t; x at rows top.., columns left..) and each
    row's largest level (of out64, its padding included, NaN if any is: torch.amax's). Returns
    how many levels are nonzero."""
    rows, steps = x.shape[:2]
    top, left = corner
    height, width = x.shape[3:]
    padded = out64.shape[2] != height or out64.shape[3] != width
    nonzero = 0
    for t in range(steps):
        for b in range(rows):
            r = t * rows + b
            if padded:
                out64[r] = 0.0
            peak, nan = 0.0 if padded else -np.inf, False
            for c in range(x.shape[2]):
                for y in range(height):
                    source, wide = x[b, t, c, y], out64[r, c, top + y]
                    for j in range(width):
                        v = np.float64(source[j])
                        wide[left + j] = v
                        nonzero += v != 0.0
                        nan |= v != v
                        peak = v if v > peak else peak
            largest[r] = np.nan if nan else peak
    return nonzero


# Reassociation and contraction are safe here: every product and partial sum is exact.
@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"}, boundscheck=False)
def sparse_sums(levels, weights, stride, shape, out):
    """A row's exact sums, channels-last out [Ho x Wo x C], from its flat padded levels [Cin x
    Hp x Wp] (`lifkernels._field`'s) and the weights [Cin, kh, kw, C], reversed along kw:
    each nonzero level times the weights it meets, added where they land (with unit column
    stride, a window row's outputs and its reversed weights are both one run of C x the
    outputs it reaches, one loop). Exact products and sums (as `lifkernels._field_sum`), so
    the order does not matter and the zero levels, which add zeros, are skipped."""
    inputs, kh, kw, channels = weights.shape
    flat = weights.reshape(inputs, kh, kw * channels)
    height, width, padded_width = shape
    columns = len(levels) // inputs
    out[:] = 0.0
    for i in range(len(levels)):
        v = levels[i]
        if v == 0.0:
            continue
        c, y, x = i // columns, (i % columns) // padded_width, i % padded_width
        # The outputs whose window holds (y, x): oy x stride + p = y with 0 <= p < kh.
        for oy in range(max(0, (y - kh + stride[0]) // stride[0]), min(height, y // stride[0] + 1)):
            p = y - oy * stride[0]
            first = max(0, (x - kw + stride[1]) // stride[1])
            last = min(width, x // stride[1] + 1)
            if stride[1] == 1:  # weights from q = x - first down, reversed: upwards
                w = flat[c, p, (kw - 1 - x + first) * channels :]
                run = out[(oy * width + first) * channels : (oy * width + last) * channels]
                for k in range(len(run)):
                    run[k] += v * w[k]
                continue
            for ox in range(first, last):
                w, at = weights[c, p, kw - 1 - (x - ox * stride[1])], (oy * width + ox) * channels
                for o in range(channels):
                    out[at + o] += v * w[o]
