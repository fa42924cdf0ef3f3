"""The training text pool: held-out sentences never enter it, extending corpora skip what
they already have, and fortunes are parsed into clean sentences."""

from __future__ import annotations

import pytest

from narrate.errors import NarrateError
from narrate.train import texts


@pytest.fixture
def small_pool(monkeypatch, tmp_path):
    held = texts.heldout_texts()
    docs = [f"Return the value of item number {w} in the list." for w in ("one", "two", "three", "four")]
    monkeypatch.setattr(texts, "_docstring_sentences", lambda: docs + held[:3])
    monkeypatch.setattr(texts, "DATA", tmp_path)  # no prose file: the pool is docstrings then fortunes
    (tmp_path / "heldout.txt").write_text("\n".join(held) + "\n")
    fortunes = tmp_path / "fortunes"
    fortunes.mkdir()
    (fortunes / "wisdom").write_text(
        "A stitch in time saves nine, or so my grandmother said.\n%\n"
        "Short one.\n%\n"
        "The 3 rules of code are simple enough for anyone.\n%\n"
        "  -- Anonymous line that has no period at the end\n%\n"
        "Never trust a cat that smiles at you before breakfast. It wants something from you today.\n")
    (fortunes / "wisdom.dat").write_bytes(b"\x00\x01binary index")
    monkeypatch.setattr(texts, "FORTUNES", fortunes)
    return docs, held


def test_fortunes_give_clean_sentences_only(small_pool):
    got = texts._fortune_sentences()
    assert got == sorted(["A stitch in time saves nine, or so my grandmother said.",
                          "Never trust a cat that smiles at you before breakfast.",
                          "It wants something from you today."])


def test_pool_never_holds_heldout_and_skips_excluded(small_pool):
    docs, held = small_pool
    train, heldout = texts.corpus_texts(n_train=4, n_heldout=5)
    assert heldout == held[:5] and sorted(train) == sorted(docs)
    assert not set(train) & set(held)
    more, _ = texts.corpus_texts(n_train=3, n_heldout=1, exclude=frozenset(train))
    assert not set(more) & set(train) and not set(more) & set(held)
    assert set(more) <= set(texts._fortune_sentences())  # the docstrings are used up: fortunes follow
    with pytest.raises(NarrateError, match="fewer than the 9"):
        texts.corpus_texts(n_train=9, n_heldout=1)
