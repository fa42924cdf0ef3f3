import inspect

import nupunkt

from narrate.text import segment
from narrate.text.lexicon import Lexicon
from narrate.text.segment import sentences, split_long, split_sentences


def test_split_sentences_survives_abbreviations_money_and_quotes():
    text = (
        "Mr. Smith met Dr. Jones at 10 a.m. in the U.S. on Monday. He paid $3.50 for coffee. "
        '"Is that right?" she asked. Yes.'
    )
    assert split_sentences(text) == [
        "Mr. Smith met Dr. Jones at 10 a.m. in the U.S. on Monday.",
        "He paid $3.50 for coffee.",
        '"Is that right?" she asked.',
        "Yes.",
    ]


def test_blank_lines_always_break_and_lines_are_joined():
    text = "A heading without a stop\n\nFirst line\ncontinues here.\r\n\r\nLast"
    assert split_sentences(text) == ["A heading without a stop", "First line continues here.", "Last"]


def test_split_sentences_of_nothing():
    assert split_sentences("") == []
    assert split_sentences(" \n\n \t") == []


def test_short_sentence_is_returned_whole():
    assert split_long("A short one.", 200) == ["A short one."]


def test_split_long_prefers_clause_punctuation_then_conjunctions():
    sentence = (
        "This is a very long sentence that goes on and on; it has several clauses, some of which "
        "are separated by commas, and others by conjunctions because the writer liked long "
        "sentences and never wanted to stop writing them, which is tiring for a reader."
    )
    pieces = split_long(sentence, 80)
    assert pieces == [
        "This is a very long sentence that goes on and on;",
        "it has several clauses, some of which are separated by commas,",
        "and others by conjunctions because the writer liked long sentences",
        "and never wanted to stop writing them, which is tiring for a reader.",
    ]
    assert " ".join(pieces) == sentence


def test_split_long_falls_back_to_spaces_then_hard_cuts():
    sentence = " ".join(["word"] * 30)
    pieces = split_long(sentence, 22)
    assert all(len(p) <= 22 for p in pieces)
    assert " ".join(pieces) == sentence
    assert split_long("x" * 45, 20) == ["x" * 20, "x" * 20, "x" * 5]


def test_split_long_never_cuts_inside_phonemes():
    sentence = "word " * 8 + "[[ ab cd ef gh ij kl ]] and the end"
    pieces = split_long(sentence, 30)
    assert any("[[ ab cd ef gh ij kl ]]" in p for p in pieces)
    assert all(p.count("[[") == p.count("]]") for p in pieces)


def test_sentences_is_the_whole_front_end():
    text = "Mr. Smith paid $3.50 in 1984.\n\n* * *\n\nHermione smiled; Nguyen waved."
    lexicon = Lexicon({"Hermione": "her-MY-oh-nee", "Nguyen": "[[ ŋwˈɪn ]]"})
    assert list(sentences(text, lexicon=lexicon)) == [
        "Mister Smith paid three dollars and fifty cents in nineteen eighty-four.",
        "her-MY-oh-nee smiled; [[ ŋwˈɪn ]] waved.",
    ]


def test_sentences_respects_max_chars():
    text = "One, two, three, four, five, six, seven, eight, nine, ten, eleven, twelve."
    pieces = list(sentences(text, max_chars=30))
    assert len(pieces) > 1
    assert all(len(p) <= 30 for p in pieces)


def test_sentences_is_lazy(monkeypatch):
    calls = []
    real = nupunkt.sent_spans
    monkeypatch.setattr(segment.nupunkt, "sent_spans", lambda t: calls.append(t) or real(t))
    gen = sentences("First paragraph.\n\n" * 1000)
    assert inspect.isgenerator(gen)
    assert next(gen) == "First paragraph."
    assert len(calls) == 1
