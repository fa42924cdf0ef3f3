"""python -m narrate: the same as the narrate command."""

from narrate.cli.core import main

main()
