"""Docs that are generated must match what generates them."""

from __future__ import annotations

from pathlib import Path

from primec.cli_docs import render

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_cli_reference_is_up_to_date() -> None:
    assert (DOCS / "cli.md").read_text() == render(), "docs/cli.md is stale: run `make docs`"


def test_every_doc_the_readme_names_exists() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    named = {part.split("`")[0] for part in readme.split("`docs/")[1:]}
    missing = sorted(name for name in named if not (DOCS / name).exists())
    assert not missing, f"README names missing docs: {missing}"
