"""What one compile chooses beside the target: a measured chip (device map) and a macro limit.

The `Target` is pure data about the hardware; these choices belong to one compile and travel
beside it into the passes (`run(graph, target, choices)`), so neither module imports the other
in a circle.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from primec.hardware.devicemap import DeviceMap, load
from primec.hardware.target import Target, load_target


@dataclass(frozen=True)
class Choices:
    """One compile's choices: the device map to place on, and the most macros to use."""

    device_map: DeviceMap | None = field(default=None, compare=False, repr=False)
    max_macros: int | None = None

    def macro_limit(self, target: Target) -> int:
        """Macros a placement may use: the target's, capped by --max-macros and the device map."""
        limits = [target.chip.macros, self.max_macros, self.map_macros]
        return min(limit for limit in limits if limit is not None)

    @property
    def map_macros(self) -> int | None:
        """Macros the bound device map covers (None without one)."""
        return None if self.device_map is None else self.device_map.macros

    def limit_reason(self, target: Target) -> str:
        """What sets `macro_limit`, in words."""
        limit = self.macro_limit(target)
        if self.max_macros is not None and self.max_macros == limit:
            return f"--max-macros {self.max_macros}"
        if self.map_macros is not None and self.map_macros == limit:
            return f"the device map's {self.map_macros} macro(s)"
        return f"the target's chip.macros = {target.chip.macros}"


NO_CHOICES = Choices()


def resolve_target(
    spec: str | Path,
    device_map: str | Path | None = None,
    max_macros: int | None = None,
    input_bits: int | None = None,
) -> tuple[Target, Choices]:
    """The target of a compile (with its input bits), and the choices beside it."""
    target = load_target(spec)
    if input_bits is not None:
        target = dataclasses.replace(
            target, input=dataclasses.replace(target.input, bits=input_bits)
        )
    chip = None if device_map is None else load(device_map, target)
    return target, Choices(chip, max_macros)
