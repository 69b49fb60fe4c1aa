"""primec's backends (bytecode, macro file), registered explicitly here."""

from __future__ import annotations

BACKENDS: dict = {}
