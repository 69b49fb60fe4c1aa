"""Generate docs/cli.md from the click commands, so the reference cannot drift from the CLI."""

from __future__ import annotations

import click

from primec.cli import main

HEADER = """# primec command line

Generated from the CLI by `make docs` (`python -m primec.cli_docs > docs/cli.md`); a test fails
when this file and the CLI disagree. Every command exits 0 on success and 2 with one message
(`error: ...`) on bad input; none leaves a partial output file.
"""


def _commands(group: click.Group, prefix: str) -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name in sorted(group.commands):
        command = group.commands[name]
        path = f"{prefix} {name}"
        found.append((path, command))
        if isinstance(command, click.Group):
            found += _commands(command, path)
    return found


def command_help(path: str, command: click.Command) -> str:
    """One command's help text, as `--help` prints it."""
    # The CLI's own context settings, so the help is the one `--help` prints (click caches it).
    context = click.Context(
        command,
        info_name=path,
        max_content_width=100,
        terminal_width=100,
        help_option_names=["-h", "--help"],
    )
    return command.get_help(context)


def render() -> str:
    """The whole reference page."""
    parts = [HEADER, "## primec\n", "```", command_help("primec", main), "```\n"]
    for path, command in _commands(main, "primec"):
        parts += [f"## {path}\n", "```", command_help(path, command), "```\n"]
    return "\n".join(parts)


if __name__ == "__main__":
    print(render(), end="")
