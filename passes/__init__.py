"""primec's graph passes, one module each, registered explicitly here (no import side effects).

Each pass is `run(graph, target) -> graph`: pure, with a docstring saying what it requires and
ensures. The order in which they run is `primec.pipeline.PASS_PIPELINE`, nowhere else.
"""

from __future__ import annotations

from primec.passes import (
    analog_input,
    choose_drive,
    dce,
    fold_affine,
    fold_masks,
    lower_crossbar,
    map_pairs,
    place,
    schedule,
    tile,
)

PASSES = {
    "dce": dce.run,
    "fold-masks": fold_masks.run,
    "fold-affine": fold_affine.run,
    "lower-crossbar": lower_crossbar.run,
    "analog-input": analog_input.run,
    "choose-drive": choose_drive.run,
    "map-pairs": map_pairs.run,
    "tile": tile.run,
    "place": place.run,
    "schedule": schedule.run,
}
