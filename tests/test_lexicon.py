import pytest

from narrate.errors import InputError
from narrate.text.lexicon import Lexicon
from narrate.text.normalize import normalize
from narrate.text.segment import sentences


def write(tmp_path, text, name="lexicon.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_and_apply(tmp_path):
    path = write(
        tmp_path,
        "# names in the book\n"
        "\n"
        "Hermione = her-MY-oh-nee\n"
        "Nguyen\t[[ ŋwˈɪn ]]\n"
        "New York = noo YORK\n"
        "York = YAWK\n"
        "  Tom=TOMMY  \n",
    )
    lexicon = Lexicon.load(path)
    assert len(lexicon) == 4 + 1
    assert lexicon.apply("HERMIONE met nguyen in New  York, not York.") == (
        "her-MY-oh-nee met [[ ŋwˈɪn ]] in noo YORK, not YAWK."
    )


def test_whole_words_only(tmp_path):
    lexicon = Lexicon.load(write(tmp_path, "Tom = TOMMY\n"))
    assert lexicon.apply("Tom, tomato and Tomás; Tom's hat.") == "TOMMY, tomato and Tomás; TOMMY's hat."


def test_longest_entry_wins():
    lexicon = Lexicon({"New": "NOO", "New York City": "the big apple"})
    assert lexicon.apply("New York City is new.") == "the big apple is NOO."


def test_phonemes_survive_normalize_and_segmentation():
    lexicon = Lexicon({"Nguyen": "[[ ŋwˈɪn. ðə, 1 ]]"})
    out = list(sentences("Dr. Nguyen arrived at 7 p.m. She smiled.", lexicon=lexicon))
    assert out == ["Doctor [[ ŋwˈɪn. ðə, 1 ]] arrived at seven PM.", "She smiled."]
    assert normalize("[[ ŋwˈɪn. ðə, 1 ]]") == "[[ ŋwˈɪn. ðə, 1 ]]"


def test_empty_lexicon_changes_nothing(tmp_path):
    lexicon = Lexicon.load(write(tmp_path, "# nothing yet\n\n"))
    assert len(lexicon) == 0
    assert lexicon.apply("Same text.") == "Same text."


@pytest.mark.parametrize(
    "content, message",
    [
        ("Tom = TOMMY\njust a word\n", "line 2: expected 'word = replacement'"),
        ("= nothing\n", "line 1: the word before '=' is empty"),
        ("# c\nTom =   \n", "line 2: no replacement for 'Tom'"),
        ("Nguyen = [[ ŋwˈɪn\n", "line 1: phonemes must be written as [[ phonemes ]]"),
        ("Nguyen = say [[ ŋwˈɪn ]] twice\n", "line 1: phonemes must be the whole replacement"),
        ("Nguyen = [[ ]]\n", "line 1: phonemes must be written as [[ phonemes ]]"),
    ],
)
def test_invalid_lines_name_file_and_line(tmp_path, content, message):
    path = write(tmp_path, content, "names.lex")
    with pytest.raises(InputError) as err:
        Lexicon.load(path)
    assert "names.lex" in str(err.value)
    assert message in str(err.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="missing.txt' not found"):
        Lexicon.load(tmp_path / "missing.txt")
    with pytest.raises(InputError, match="is a directory"):
        Lexicon.load(tmp_path)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"Tom = TOMMY\ncaf\xe9 = kaff-AY\n")
    with pytest.raises(InputError, match=r"latin1.txt' line 2: not UTF-8"):
        Lexicon.load(bad)
