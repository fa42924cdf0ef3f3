"""narrate: a command-line narrator for long text, backed by a streaming Mamba TTS engine.

From Python (README, "Using narrate from Python")::

    from narrate import Narrator, NarrateSettings, load_document, sentences

    book = load_document("book.md")
    narrator = Narrator.load(voice="joe", settings=NarrateSettings(seed=0))
    for chunk in narrator.narrate(sentences(book.chapters[0].text)):
        ...  # chunk.samples: float32 mono at narrator.sample_rate, as it is made
    narrator.close()

The names below are imported when first used, so ``import narrate`` (and the command's start)
stays quick: torch loads with the first ``Narrator``.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    # narrating: a model and a voice, sentences in, audio chunks out
    "Narrator": "narrate.runtime.narrator",
    "NarrateSettings": "narrate.runtime.narrator",
    "AudioChunk": "narrate.runtime.narrator",
    # documents: a file (txt, md, html, epub, pdf) or a string as titled chapters of text
    "load_document": "narrate.document",
    "document_from_text": "narrate.document",
    "Document": "narrate.document",
    "Chapter": "narrate.document",
    # the text front-end: a chapter's text -> sentences ready for the engine
    "sentences": "narrate.text.segment",
    # models and voices
    "from_pretrained": "narrate.hub",
    "ModelFolderConfig": "narrate.model_folder",
    "load_voice": "narrate.voices",
    # every error narrate reports as one line
    "NarrateError": "narrate.errors",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value  # once
        return value
    raise AttributeError(f"module 'narrate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
