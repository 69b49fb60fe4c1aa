"""`python -m primec.cli`: the `primec` command."""

from primec.cli import main

main()
