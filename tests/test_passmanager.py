"""The pass manager: verification after each pass, failures named, observability hooks."""

from __future__ import annotations

from pathlib import Path

import pytest
from primec.passes import dce

from primec.core.ir import Graph, Node
from primec.core.passmanager import PassManager, PassOptions
from primec.errors import PrimecError
from primec.pipeline import read_ir

GOLDEN = Path(__file__).parent / "golden" / "ir"


def small() -> Graph:
    return read_ir(GOLDEN / "small_conv_snn.pir")


def identity(graph: Graph, target: object = None, choices: object = None) -> Graph:
    return graph


def duplicate_last_node(graph: Graph, target: object = None, choices: object = None) -> Graph:
    """A broken pass: defines the last node's results a second time."""
    return graph.replace(nodes=graph.nodes + (graph.nodes[-1],))


def explode(graph: Graph, target: object = None, choices: object = None) -> Graph:
    raise RuntimeError("boom")


REGISTRY = {
    "first": identity,
    "second": identity,
    "broken": duplicate_last_node,
    "explode": explode,
    "dce": dce.run,
}


def test_broken_pass_is_named_with_the_passes_before() -> None:
    manager = PassManager(REGISTRY, log=lambda _: None)
    with pytest.raises(PrimecError) as caught:
        manager.run(small(), ["first", "second", "broken"], before=["import"])
    text = str(caught.value)
    assert "pass broken produced an ill-formed graph (after: import, first, second)" in text
    assert "is defined twice" in text


def test_no_verify_lets_the_broken_graph_through() -> None:
    manager = PassManager(REGISTRY, PassOptions(verify=False), log=lambda _: None)
    result = manager.run(small(), ["broken"])
    assert len(result.value.nodes) == len(small().nodes) + 1


def test_raising_pass_is_named() -> None:
    manager = PassManager(REGISTRY, log=lambda _: None)
    with pytest.raises(
        PrimecError, match=r"pass explode failed \(after: first\): RuntimeError: boom"
    ):
        manager.run(small(), ["first", "explode"])


def test_stop_after_print_after_dump_and_time(tmp_path: Path) -> None:
    lines: list[str] = []
    options = PassOptions(
        print_after=("second",), stop_after="second", dump_dir=tmp_path, time_passes=True
    )
    result = PassManager(REGISTRY, options, log=lines.append).run(
        small(), ["first", "second", "broken"]
    )
    assert result.stopped_after == "second"
    assert [r.name for r in result.records] == ["first", "second"]
    assert sorted(p.name for p in tmp_path.glob("*.pir")) == ["00-first.pir", "01-second.pir"]
    assert read_ir(tmp_path / "01-second.pir") == small()
    printed = [line for line in lines if line.startswith("// ----- IR after")]
    assert len(printed) == 1 and "after second" in printed[0]
    assert any(line.startswith("pass first:") and "no change" in line for line in lines)


def test_print_after_all_and_change_detection() -> None:
    lines: list[str] = []
    graph = small()
    dead = Node(
        "leaky_relu",
        (graph.inputs[0],),
        (graph.inputs[0].__class__("dead", graph.inputs[0].type),),
        (("slope", 0.5),),
    )
    graph = graph.replace(nodes=graph.nodes + (dead,))
    result = PassManager(REGISTRY, PassOptions(print_after_all=True), log=lines.append).run(
        graph, ["first", "dce"]
    )
    assert [r.changed for r in result.records] == [False, True]
    assert "dead" not in {v.name for n in result.value.nodes for v in n.outputs}
    assert sum(line.startswith("// ----- IR after") for line in lines) == 2


def test_unknown_pass_names_are_reported_up_front() -> None:
    manager = PassManager(REGISTRY, PassOptions(stop_after="nope"))
    with pytest.raises(PrimecError, match="unknown pass nope"):
        manager.check_names(["first"], ["import"])
