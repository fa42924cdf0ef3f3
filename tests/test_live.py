import io
import os
import threading
import time

import pytest

from narrate.errors import InputError
from narrate.text.lexicon import Lexicon
from narrate.text.live import live_sentences
from narrate.text.segment import split_sentences


@pytest.fixture(autouse=True, scope="module")
def warm_model():
    # Load the punkt model before timing anything.
    split_sentences("Warm up.")


def pipe_writer(parts):
    """A real pipe fed by a thread: ``parts`` is a list of text or float (seconds to sleep).

    Returns the read end as a text stream and a dict recording when each write happened."""
    r, w = os.pipe()
    written = {}

    def run():
        with os.fdopen(w, "w", encoding="utf-8") as f:
            for i, part in enumerate(parts):
                if isinstance(part, float):
                    time.sleep(part)
                    continue
                written[i] = time.monotonic()
                f.write(part)
                f.flush()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return os.fdopen(r, "r", encoding="utf-8"), written, thread


def collect(stream, **kwargs):
    got = []
    for sentence in live_sentences(stream, **kwargs):
        got.append((time.monotonic(), sentence))
    return got


def test_quiet_input_flushes_before_more_arrives():
    stream, written, thread = pipe_writer(["Hello there. ", 1.5, "It is 7 p.m. now. Mr. Smith", 0.2, " left."])
    with stream:
        got = collect(stream, quiet=0.5)
    thread.join()
    assert [s for _, s in got] == ["Hello there.", "It is seven PM now.", "Mister Smith left."]
    # The first sentence was spoken while the writer was still sleeping.
    assert got[0][0] < written[2]


def test_sentence_is_complete_when_the_next_one_starts():
    stream, written, thread = pipe_writer(["First one. Second one", 1.5, " ends.\n"])
    with stream:
        got = collect(stream, quiet=5.0)
    thread.join()
    assert [s for _, s in got] == ["First one.", "Second one ends."]
    assert got[0][0] < written[2]


def test_newline_after_final_punctuation_completes_a_sentence():
    stream, written, thread = pipe_writer(["It works!\n", 1.5, "More\n"])
    with stream:
        got = collect(stream, quiet=5.0)
    thread.join()
    assert [s for _, s in got] == ["It works!", "More"]
    assert got[0][0] < written[2]


def test_eof_flushes_pending_text_and_lexicon_applies():
    stream, _, thread = pipe_writer(["Nguyen said 42"])
    with stream:
        got = collect(stream, quiet=5.0, lexicon=Lexicon({"Nguyen": "[[ ŋwˈɪn ]]"}))
    thread.join()
    assert [s for _, s in got] == ["[[ ŋwˈɪn ]] said forty-two"]


def test_long_unpunctuated_input_is_split():
    stream, _, thread = pipe_writer(["word " * 100])
    with stream:
        pieces = [s for _, s in collect(stream, quiet=5.0, max_chars=50)]
    thread.join()
    assert all(len(p) <= 50 for p in pieces)
    assert " ".join(pieces).split() == ["word"] * 100


def test_in_memory_stream():
    stream = io.StringIO("One. Two.\n\nThree")
    assert list(live_sentences(stream)) == ["One.", "Two.", "Three"]


def test_read_error_is_an_input_error():
    class Broken(io.StringIO):
        def readline(self, *args):
            raise OSError("device gone")

    with pytest.raises(InputError, match="cannot read the input stream: device gone"):
        list(live_sentences(Broken()))
