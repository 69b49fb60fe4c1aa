"""primec's graph passes, one module each, registered explicitly here (no import side effects).

Each pass is `run(graph, target) -> graph`: pure, with a docstring saying what it requires and
ensures. The order in which they run is `primec.pipeline.PASS_PIPELINE`, nowhere else.
"""

from __future__ import annotations

from primec.passes import dce

PASSES = {
    "dce": dce.run,
}
