"""narrate: a command-line narrator for long text, backed by a streaming Mamba TTS engine."""

__version__ = "0.1.0"
