"""User-facing errors: one line, no traceback, non-zero exit (the CLI turns them into exit 1);
and warnings: one line each, counted so that a run's summary can say there were some."""

import sys

_shown = 0  # warnings this process has printed


class NarrateError(Exception):
    """A problem the user can fix (bad input, missing model, unwritable output).

    The message is shown as one line: say what is wrong and with which file or value.
    """


class InputError(NarrateError):
    """The input document cannot be read or is not text."""


class VoiceError(NarrateError):
    """The voice prompt is unreadable, silent, too short or too long, or an unknown name."""


class ModelError(NarrateError):
    """The model id is unknown or its weights/config are corrupt."""


class OutputError(NarrateError):
    """The output cannot be written (permissions, full disk, exists without --force)."""


class AlreadyFinished(OutputError):
    """--resume on an output that a run finished: there is nothing left to narrate."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be so that the same clean-up runs. Defined here, in a
    module the command has loaded before any signal can arrive: the handler must not import
    (a SIGTERM during start-up would otherwise land in a half-imported module)."""


def warn(message: str) -> None:
    """Print "narrate: warning: MESSAGE" on stderr, counted (see warnings_shown)."""
    global _shown
    sys.stderr.write(f"narrate: warning: {message}\n")
    sys.stderr.flush()
    _shown += 1


def warnings_shown() -> int:
    """How many warnings this process has printed so far."""
    return _shown


def one_line(error: BaseException) -> str:
    """An error as the one line the user sees."""
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        text = f"{error.strerror}{where}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())
