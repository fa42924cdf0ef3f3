"""Text -> phoneme ids with word spans, through piper's espeak-ng phonemizer.

The ids are those of the teacher voice (piper's phoneme_id_map), interleaved with the pad id
exactly as piper does, so a model trained on piper's alignments sees the same tokens at run time.
Raw phonemes written as ``[[ ... ]]`` (from a pronunciation lexicon) pass through unchanged.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

BOS, EOS, PAD, SPACE = "^", "$", "_", " "


@dataclass
class Phonemes:
    """One piece of text as tokens.

    ids:   [N] phoneme ids (BOS, pad, p1, pad, p2, ..., EOS)
    words: [N] index of the word each token belongs to (-1 for BOS/EOS and word gaps)
    text_words: the words of the text in reading order (for timestamps)
    """

    ids: list[int]
    words: list[int]
    text_words: list[str]


_LOCK = threading.Lock()


class Phonemizer:
    """espeak-ng (bundled with piper) phonemization into a fixed id map."""

    def __init__(self, id_map: dict[str, list[int]], espeak_voice: str = "en-us"):
        self.id_map = id_map
        self.espeak_voice = espeak_voice
        self.pad_id = id_map[PAD][0]
        self.space_id = id_map[SPACE][0]
        self.vocab_size = max(i for ids in id_map.values() for i in ids) + 1

    def phonemes(self, text: str) -> list[str]:
        """All phonemes of ``text`` as one sequence (piper's sentences joined by a space)."""
        import re

        from piper.phonemize_espeak import ESPEAK_DATA_DIR, EspeakPhonemizer

        from narrate.text.normalize import PHONEME_BLOCK

        out: list[str] = []
        with _LOCK:
            phonemizer = EspeakPhonemizer(ESPEAK_DATA_DIR)
            for part in re.split("(" + PHONEME_BLOCK + ")", text):
                if part.startswith("[["):
                    if out and out[-1] != " ":
                        out.append(" ")
                    out.extend(part[2:-2].strip())
                    out.append(" ")
                    continue
                if not part.strip():
                    continue
                for sentence in phonemizer.phonemize(self.espeak_voice, part):
                    if out and out[-1] != " ":
                        out.append(" ")
                    out.extend(sentence)
        while out and out[-1] == " ":
            out.pop()
        return out

    def encode(self, text: str) -> Phonemes:
        """Text -> ids (unknown phonemes dropped) and the word index of every id."""
        phones = self.phonemes(text)
        ids = [self.id_map[BOS][0], self.pad_id]
        words = [-1, -1]
        word = 0
        for ph in phones:
            if ph not in self.id_map:
                continue
            if ph == SPACE:
                word += 1
                ids += [self.space_id, self.pad_id]
                words += [-1, -1]
                continue
            ids += [self.id_map[ph][0], self.pad_id]
            words += [word, word]
        ids.append(self.id_map[EOS][0])
        words.append(-1)
        return Phonemes(ids=ids, words=words, text_words=text.split())


def piper_phonemizer() -> Phonemizer:
    """The phonemizer with piper's default English id map (what the teacher voice uses)."""
    from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP

    return Phonemizer(dict(DEFAULT_PHONEME_ID_MAP), "en-us")
