"""One error type for everything a user can get wrong: what, where, and what to do."""

from __future__ import annotations


class PrimecError(Exception):
    """A user-facing error: `message` says what, `where` where, `hint` what to do."""

    def __init__(self, message: str, where: str = "", hint: str = "", context: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint
        self.context = context

    def __str__(self) -> str:
        parts = [f"{self.where}: {self.message}" if self.where else self.message]
        if self.context:
            parts.append(self.context)
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "\n".join(parts)
