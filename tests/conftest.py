"""Shared test options: `pytest --update-golden` rewrites golden files (review the diff)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite golden expected files")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first (stable otherwise): with `-n 2` the longest ones then run beside the
    many short ones instead of one of them starting last while the other worker sits idle."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """Whether golden files are rewritten instead of compared."""
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(autouse=True)
def verify_around_every_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pass any test runs (through the pass manager or by hand) gets a verified graph and
    must leave one: the registry's passes are wrapped for the test's duration."""
    from primec.passes import PASSES

    from primec.core.verify import verify

    def verified(name: str, run):
        def wrapper(graph, *args, **kwargs):
            verify(graph, source=f"before pass {name}")
            return verify(run(graph, *args, **kwargs), source=f"after pass {name}")

        return wrapper

    for name, run in list(PASSES.items()):
        monkeypatch.setitem(PASSES, name, verified(name, run))


@pytest.fixture(scope="module")
def ndigits_x():
    """Every N-Digits test sample, [359, 10, 2, 34, 34] event counts (the framework tests)."""
    from primec.datasets import load_split

    return load_split("test")[0]
