"""The IR text's tokens: the lexer the parser in `primec.core.text` reads them from, with its
`ParseError` naming file, line and column."""

from __future__ import annotations

import re

from primec.errors import PrimecError

_TOKEN = re.compile(
    r"""(?P<ws>[ \t\r]+|//[^\n]*)
      | (?P<nl>\n)
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<value>%[A-Za-z0-9_.\-]+)
      | (?P<symbol>@[A-Za-z0-9_.\-]+)
      | (?P<digest>\#[0-9a-f]+)
      | (?P<number>-?(?:\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\d+|inf\b)|nan\b)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<arrow>->|<-)
      | (?P<punct>[(){}\[\]:,=<>])
    """,
    re.VERBOSE,
)


class ParseError(PrimecError):
    """Malformed IR text; carries line and column."""


class _Tokens:
    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.tokens: list[tuple[str, str, int, int]] = []
        self._lex()
        self.pos = 0

    def _lex(self) -> None:
        line, col, i = 1, 1, 0
        while i < len(self.text):
            match = _TOKEN.match(self.text, i)
            if match is None:
                self.fail_at(line, col, f"unexpected character {self.text[i]!r}")
            kind, lexeme = match.lastgroup, match.group()
            if kind == "nl":
                self.tokens.append(("nl", lexeme, line, col))
                line, col = line + 1, 1
            elif kind != "ws":
                self.tokens.append((kind, lexeme, line, col))
                col += len(lexeme)
            else:
                col += len(lexeme)
            i = match.end()
        self.tokens.append(("eof", "", line, col))

    def fail_at(self, line: int, col: int, message: str) -> None:
        lines = self.text.splitlines()
        snippet = lines[line - 1] if 0 < line <= len(lines) else ""
        context = f"  {snippet}\n  {' ' * (col - 1)}^"
        raise ParseError(message, where=f"{self.source}:{line}:{col}", context=context)

    def fail(self, message: str) -> None:
        _, _, line, col = self.tokens[self.pos]
        self.fail_at(line, col, message)

    def peek(self, skip_newlines: bool = True) -> tuple[str, str, int, int]:
        if skip_newlines:
            self.skip_newlines()
        return self.tokens[self.pos]

    def skip_newlines(self) -> None:
        while self.tokens[self.pos][0] == "nl":
            self.pos += 1

    def next(self, skip_newlines: bool = True) -> tuple[str, str, int, int]:
        token = self.peek(skip_newlines)
        self.pos += 1
        return token

    def expect(self, kind: str, lexeme: str | None = None, skip_newlines: bool = True) -> str:
        token = self.peek(skip_newlines)
        if token[0] != kind or (lexeme is not None and token[1] != lexeme):
            wanted = repr(lexeme) if lexeme is not None else kind
            found = repr(token[1]) if token[1] else token[0]
            self.fail(f"expected {wanted}, found {'end of line' if token[0] == 'nl' else found}")
        self.pos += 1
        return token[1]

    def accept(self, kind: str, lexeme: str | None = None, skip_newlines: bool = True) -> bool:
        token = self.peek(skip_newlines)
        if token[0] == kind and (lexeme is None or token[1] == lexeme):
            self.pos += 1
            return True
        return False
