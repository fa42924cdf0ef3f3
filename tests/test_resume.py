"""The resume sidecar: saved atomically, loaded back exactly, corruption and mismatches refused,
and a record plus a resumed wav sink continue a book sample-exactly."""

import hashlib
import json
from dataclasses import asdict

import numpy as np
import pytest
import soundfile as sf

from narrate.audio.resume import (ResumeRecord, check_compatible, clear_record, load_record,
                                  record_path, save_record, sha256_file)
from narrate.audio.sinks import open_sink
from narrate.errors import OutputError

SR = 22050
SHA = "ab" * 32
SETTINGS = {"model": "narrate-small", "voice": "joe", "speed": 1.0, "seed": 7, "format": "wav"}


def record(**changes):
    fields = dict(input_sha256=SHA, settings=dict(SETTINGS), chapters_done=[1, 2], chapter=3,
                  sentences_done=14, samples_written=123456)
    fields.update(changes)
    return ResumeRecord(**fields)


def test_record_sits_beside_a_file_and_inside_a_folder(tmp_path):
    assert record_path(tmp_path / "book.wav") == tmp_path / "book.wav.narrate.json"
    folder = tmp_path / "chapters"
    folder.mkdir()
    assert record_path(folder) == folder / ".narrate.json"
    save_record(folder, record())
    moved = tmp_path / "elsewhere"
    folder.rename(moved)  # the record goes with the folder
    assert load_record(moved) == record() and load_record(folder) is None


def test_a_folder_record_an_older_narrate_kept_beside_it_is_read_then_moved_inside(tmp_path):
    folder = tmp_path / "chapters"
    folder.mkdir()
    old = tmp_path / "chapters.narrate.json"
    old.write_text(json.dumps(asdict(record())), encoding="utf-8")
    assert load_record(folder) == record()
    save_record(folder, record(sentences_done=15))
    assert not old.exists() and load_record(folder).sentences_done == 15
    old.write_text("{}", encoding="utf-8")
    clear_record(folder)
    assert not old.exists() and not (folder / ".narrate.json").exists()


def test_save_and_load_round_trip(tmp_path):
    out = tmp_path / "book.wav"
    assert load_record(out) is None
    save_record(out, record())
    assert load_record(out) == record()
    save_record(out, record(sentences_done=15, samples_written=130000))
    assert load_record(out).sentences_done == 15
    # Atomic write: only the record itself is left, no temporary beside it.
    assert [p.name for p in tmp_path.iterdir()] == ["book.wav.narrate.json"]
    assert json.loads(record_path(out).read_text())["chapters_done"] == [1, 2]


@pytest.mark.parametrize("content", [
    "{not json",
    "[]",
    json.dumps({"settings": {}}),  # no input hash
    json.dumps({"input_sha256": "xyz", "settings": {}}),
    json.dumps({"input_sha256": SHA, "settings": []}),
    json.dumps({"input_sha256": SHA, "settings": {}, "chapter": -1}),
    json.dumps({"input_sha256": SHA, "settings": {}, "samples_written": True}),
    json.dumps({"input_sha256": SHA, "settings": {}, "chapters_done": ["1"]}),
    json.dumps({"input_sha256": SHA, "settings": {}, "version": 99}),
])
def test_corrupt_records_are_refused(tmp_path, content):
    out = tmp_path / "book.wav"
    record_path(out).write_text(content)
    with pytest.raises(OutputError, match="corrupt"):
        load_record(out)


def test_unknown_keys_from_newer_versions_are_ignored(tmp_path):
    out = tmp_path / "book.wav"
    record_path(out).write_text(json.dumps({"input_sha256": SHA, "settings": {}, "extra": 1}))
    loaded = load_record(out)
    assert (loaded.chapter, loaded.sentences_done, loaded.chapters_done) == (0, 0, [])


def test_compatibility_check_names_the_mismatch():
    check_compatible(record(), SHA, dict(SETTINGS))
    # Settings are compared as JSON stores them: a tuple now equals the list saved then.
    check_compatible(record(settings={"size": [1, 2]}), SHA, {"size": (1, 2)})
    with pytest.raises(OutputError, match="input text changed"):
        check_compatible(record(), "cd" * 32, SETTINGS)
    with pytest.raises(OutputError, match=r"voice: 'joe' then, 'amy' now"):
        check_compatible(record(), SHA, {**SETTINGS, "voice": "amy"})
    with pytest.raises(OutputError, match=r"seed: 7 then, unset now"):
        check_compatible(record(), SHA, {k: v for k, v in SETTINGS.items() if k != "seed"})


def test_clear_record(tmp_path):
    out = tmp_path / "book.wav"
    save_record(out, record())
    clear_record(out)
    assert not record_path(out).exists()
    clear_record(out)  # clearing twice is fine


def test_sha256_file(tmp_path):
    data = bytes(range(256)) * 5000
    (tmp_path / "in.txt").write_bytes(data)
    assert sha256_file(tmp_path / "in.txt") == hashlib.sha256(data).hexdigest()


def test_record_and_wav_sink_resume_a_book(tmp_path):
    """The CLI's sequence: write, record, write more, interrupt; then load, check, truncate to
    the recorded position and continue: the result is exactly the uninterrupted audio."""
    out = tmp_path / "book.wav"
    rng = np.random.default_rng(0)
    sentences = [(0.3 * rng.standard_normal(int(SR * s))).astype(np.float32)
                 for s in (0.4, 0.3, 0.5, 0.2)]
    with pytest.raises(KeyboardInterrupt):
        with open_sink(out, "wav", SR) as sink:
            for i, sentence in enumerate(sentences[:2]):
                sink.write(sentence)
                save_record(out, record(chapters_done=[], chapter=1, sentences_done=i + 1,
                                        samples_written=sink.samples_written))
            sink.write(sentences[2][:1000])  # interrupted in the middle of sentence 3
            raise KeyboardInterrupt

    saved = load_record(out)
    check_compatible(saved, SHA, SETTINGS)
    with open_sink(out, "wav", SR, resume=True) as sink:
        sink.truncate_to(saved.samples_written)
        for sentence in sentences[saved.sentences_done:]:
            sink.write(sentence)
    clear_record(out)
    data, _ = sf.read(out, dtype="float32")
    expected = np.clip(np.concatenate(sentences), -1, 1)
    assert data.size == expected.size
    assert np.max(np.abs(data - expected)) <= 1 / 32768 + 1e-6
    assert not record_path(out).exists()
