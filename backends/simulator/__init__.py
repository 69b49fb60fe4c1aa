"""The simulator of primec's artefacts, in modules of one job each: `noise` (settings, random
streams, static cell errors), `adc` (per-column ADC ranges), `grid` (the fixed-point grid that
keeps sums exact), `crossbar` (tiles and reads), `planes` and `sparse` (bit-plane reads through
noise and the ADC), `gauss` (keyed read-noise normals), `digital` (the periphery's
instructions) and `executor` (the time loop); `kernelcache` keys the numba kernels' caches to
the sources.
"""

from __future__ import annotations

from primec.backends.simulator.kernelcache import kernels_cached_by_source

# The kernels' numba caches are keyed by a digest of these sources (`kernelcache`): the
# executor imports every kernel module, so each is defined inside this block.
with kernels_cached_by_source():
    from primec.backends.simulator.executor import COUNTERS, SimResult, Simulator
    from primec.backends.simulator.noise import Noise

__all__ = ["COUNTERS", "Noise", "SimResult", "Simulator"]
