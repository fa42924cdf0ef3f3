"""User-facing errors: one line, no traceback, non-zero exit (the CLI turns them into exit 1)."""


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


def one_line(error: BaseException) -> str:
    """An error as the one line the user sees."""
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        text = f"{error.strerror}{where}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())
