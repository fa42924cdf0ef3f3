"""The narrate command: ``app`` (Typer) with its commands registered, ``main`` its entry point.

``core`` holds the app, its options and error reporting, ``listening`` / ``library`` / ``training`` the
commands, ``progress`` the live display."""

from __future__ import annotations

from narrate.cli.core import app as app, main as main, route as route
from narrate.cli import listening, library, training  # noqa: E402,F401



