"""Voices on the command line: keeping a cloned voice under a name (narrate voices add / remove),
the listing and its samples, and the prompt checks (noise, music, several speakers, clipping,
silence) on real speech made by flite, damaged in known ways.

One SpeakerEncoder serves every test (resemblyzer's first call takes seconds); the CLI runs
in-process (CliRunner) except for one narration through a subprocess with the tiny model.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from conftest import PROMPT_RATE, cli_env, error_line, prompt_audio
from narrate import voices
from narrate.cli.core import app, route
from narrate.errors import VoiceError
from narrate.prompt_check import measure_prompt
from narrate.voice_store import user_voices, user_voices_dir
from narrate.voices import SpeakerEncoder, load_voice

runner = CliRunner()
needs_flite = pytest.mark.skipif(not shutil.which("flite"), reason="flite not installed")
SENTENCE = ("She opened the window and listened to the rain on the roof, "
            "then we walked along the river until the sun went down.")


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder()


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> dict[str, np.ndarray]:
    """flite's awb (male) and slt (female) reading SENTENCE: real speech, mono float32 at 16 kHz."""
    if not shutil.which("flite"):
        pytest.skip("flite not installed")
    import librosa

    folder = tmp_path_factory.mktemp("flite")
    out = {}
    for voice in ("awb", "slt"):
        path = folder / f"{voice}.wav"
        subprocess.run(["flite", "-voice", voice, "-t", SENTENCE, "-o", str(path)], check=True)
        wav, rate = sf.read(str(path), dtype="float32")
        out[voice] = librosa.resample(wav, orig_sr=rate, target_sr=PROMPT_RATE)
    return out


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    """XDG_DATA_HOME in a temporary folder: the user's voices land there."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path / "data"


def write(path, audio, rate=PROMPT_RATE):
    sf.write(str(path), audio, rate)
    return path


def problems(audio, encoder) -> str:
    return "; ".join(measure_prompt(audio, PROMPT_RATE, encoder)[0].problems())


# --- the prompt checks, on real speech and its damaged copies ----------------------------------


def test_clean_speech_has_no_problems(speech, encoder):
    for voice, audio in speech.items():
        measures, embedding = measure_prompt(audio, PROMPT_RATE, encoder)
        assert measures.problems() == [], (voice, measures)
        assert embedding.shape == (256,) and abs(np.linalg.norm(embedding) - 1) < 1e-4
    # The synthetic prompt the other tests narrate with passes too (their stderr stays clean).
    assert problems(prompt_audio(3.0), encoder) == ""


def test_noise_is_named(speech, encoder):
    audio = speech["awb"]
    noise = np.random.default_rng(0).normal(0, 1, len(audio)).astype(np.float32)
    for snr_db, noisy in ((30, False), (5, True)):
        scale = np.sqrt((audio ** 2).mean() / 10 ** (snr_db / 10))
        found = problems(audio + scale * noise, encoder)
        assert ("noisy" in found) == noisy, (snr_db, found)


def test_clipping_is_named(speech, encoder):
    audio = speech["slt"] / np.abs(speech["slt"]).max()
    assert "clipped" in problems(np.clip(audio * 4, -1, 1), encoder)
    assert "clipped" in problems(np.clip(audio * 4, -1, 1) * 0.5, encoder)  # clipped, then turned down
    assert "clipped" not in problems(audio * 0.9, encoder)


def test_mostly_silence_is_named(speech, encoder):
    audio = np.concatenate([speech["awb"][: 2 * PROMPT_RATE], np.zeros(6 * PROMPT_RATE, np.float32)])
    assert "mostly silence" in problems(audio, encoder)


def test_music_is_named(encoder, tmp_path):
    if not shutil.which("sox"):
        pytest.skip("sox not installed")
    notes = []
    for i, note in enumerate(["C4", "E4", "G4", "C5", "A4", "F4", "D4", "G4"]):
        path = tmp_path / f"n{i}.wav"
        subprocess.run(["sox", "-n", "-r", str(PROMPT_RATE), str(path), "synth", "0.5", "pluck", note,
                        "pluck", note[:-1] + "3", "remix", "-"], check=True)
        notes.append(sf.read(str(path), dtype="float32")[0])
    found = problems(np.concatenate(notes), encoder)
    assert "music" in found and "several speakers" not in found


def test_two_speakers_are_named(speech, encoder):
    assert "several speakers" in problems(np.concatenate([speech["awb"], speech["slt"]]), encoder)
    assert "several speakers" not in problems(np.concatenate([speech["awb"], speech["awb"]]), encoder)


def test_too_little_speech_is_an_error(speech, encoder):
    audio = np.zeros(5 * PROMPT_RATE, np.float32)
    audio[PROMPT_RATE: PROMPT_RATE + PROMPT_RATE // 2] = speech["awb"][PROMPT_RATE: PROMPT_RATE + PROMPT_RATE // 2]
    with pytest.raises(VoiceError, match="only 0.[0-9] s of speech"):
        measure_prompt(audio, PROMPT_RATE, encoder)


# --- keeping a voice: add, use, list, remove ---------------------------------------------------


def test_voices_help_shows_its_commands():
    result = runner.invoke(app, ["voices", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for word in ("add", "remove", "--sample", "--model", "--force"):
        assert word in result.output


def test_user_voices_dir_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert user_voices_dir() == tmp_path / "xdg" / "narrate" / "voices"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for unset in ("", "relative/path"):  # the XDG spec: empty or relative means the default
        monkeypatch.setenv("XDG_DATA_HOME", unset)
        assert user_voices_dir() == tmp_path / "home" / ".local" / "share" / "narrate" / "voices"


def test_add_keeps_the_voice_and_its_name_works_from_any_folder(speech, encoder, data_home, tmp_path,
                                                                 narrate_cmd):
    prompt = write(tmp_path / "me.wav", speech["slt"], 22050)
    result = runner.invoke(app, ["voices", "add", "anna", str(prompt)])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr and "--voice anna" in result.stderr
    folder = data_home / "narrate" / "voices"
    info = sf.info(str(folder / "anna.wav"))
    assert (info.subtype, info.samplerate, info.channels) == ("PCM_16", 22050, 1)
    kept, rate = sf.read(str(folder / "anna.wav"), dtype="float32")
    assert np.abs(kept - speech["slt"]).max() < 1e-4  # the prompt itself, to 16-bit precision
    embedding = np.load(folder / "anna.npy")
    assert embedding.shape == (256,)
    assert np.dot(embedding, encoder.embed(speech["slt"], 22050)) > 0.99
    description = (folder / "anna.txt").read_text(encoding="utf-8").splitlines()
    assert len(description) == 1 and "me.wav" in description[0]

    voice = load_voice("anna", "joe")
    assert (voice.name, voice.path, voice.sample_rate) == ("anna", folder / "anna.wav", 22050)
    assert np.array_equal(voice.embedding, embedding) and len(voice.audio) == len(kept)

    listing = runner.invoke(app, ["voices"], env={"COLUMNS": "250"})
    assert listing.exit_code == 0
    row = next(line for line in listing.output.splitlines() if " anna " in line)
    assert "yours" in row and description[0] in row and str(folder / "anna.wav") in row
    (folder / "anna.txt").write_bytes(b"")  # a description file emptied by hand: listed without one
    assert runner.invoke(app, ["voices"], env={"COLUMNS": "250"}).exit_code == 0

    # A real narration, in another folder, with --voice anna (a subprocess, so XDG_DATA_HOME
    # reaches it through the environment as it would from a shell).
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "note.txt").write_text("A short note, read in a kept voice.", encoding="utf-8")
    proc = narrate_cmd("note.txt", "--voice", "anna", voice=False, cwd=elsewhere,
                       env=cli_env(XDG_DATA_HOME=str(data_home)))
    assert proc.returncode == 0, proc.stderr
    assert sf.info(str(elsewhere / "note.wav")).duration > 0.5


def test_remove(speech, encoder, data_home, tmp_path):
    prompt = write(tmp_path / "me.wav", speech["awb"])
    assert runner.invoke(app, ["voices", "add", "bob", str(prompt)]).exit_code == 0
    result = runner.invoke(app, ["voices", "remove", "bob"])
    assert result.exit_code == 0 and "removed" in result.stderr
    assert list((data_home / "narrate" / "voices").iterdir()) == []
    again = runner.invoke(app, ["voices", "remove", "bob"])
    assert again.exit_code == 1 and "no voice named 'bob'" in error_line(again.stderr)
    bundled = runner.invoke(app, ["voices", "remove", "joe"])
    assert bundled.exit_code == 1 and "bundled voice" in error_line(bundled.stderr)
    assert (voices.VOICES_DIR / "joe.wav").exists()
    with pytest.raises(VoiceError, match="unknown voice 'bob'"):
        load_voice("bob", "joe")


@pytest.mark.parametrize("name,words", [
    ("a/b", "path separator"),
    ("..", "not allowed"),
    (".hidden", "not allowed"),
    ("two words", "not allowed"),
    ("x" * 65, "not allowed"),
    ("me.wav", "looks like a file name"),
    ("joe", "bundled voice"),
])
def test_bad_names_are_refused_before_anything_is_read(name, words, data_home, tmp_path):
    result = runner.invoke(app, ["voices", "add", name, str(tmp_path / "absent.wav")])
    assert result.exit_code == 1
    assert words in error_line(result.stderr)
    assert not data_home.exists()


def test_a_taken_name_needs_force(speech, encoder, data_home, tmp_path):
    first, second = write(tmp_path / "a.wav", speech["awb"]), write(tmp_path / "b.wav", speech["slt"])
    assert runner.invoke(app, ["voices", "add", "sam", str(first)]).exit_code == 0
    refused = runner.invoke(app, ["voices", "add", "sam", str(second)])
    assert refused.exit_code == 1 and "--force" in error_line(refused.stderr)
    kept = np.load(data_home / "narrate" / "voices" / "sam.npy")
    assert runner.invoke(app, ["voices", "add", "sam", str(second), "--force"]).exit_code == 0
    assert not np.array_equal(np.load(data_home / "narrate" / "voices" / "sam.npy"), kept)
    # --force over a bundled name: yours is the one --voice takes, and the listing says so.
    assert runner.invoke(app, ["voices", "add", "joe", str(second), "--force", "-d", "mine"]).exit_code == 0
    assert load_voice("joe", "joe").path == data_home / "narrate" / "voices" / "joe.wav"
    listing = runner.invoke(app, ["voices"], env={"COLUMNS": "250"}).output
    assert "replaced by yours" in next(line for line in listing.splitlines() if str(voices.VOICES_DIR) in line
                                       and "joe.wav" in line)


def test_add_warns_about_a_poor_prompt_and_refuses_an_unusable_one(speech, encoder, data_home, tmp_path):
    two = write(tmp_path / "two.wav", np.concatenate([speech["awb"], speech["slt"]]))
    result = runner.invoke(app, ["voices", "add", "pair", str(two)])
    assert result.exit_code == 0
    warning = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1 and "several speakers" in warning[0] and "two.wav" in warning[0]
    assert "pair" in user_voices()
    for bad, words in ((np.zeros(3 * PROMPT_RATE, np.float32), "silent"),
                       (speech["awb"][: PROMPT_RATE], "too short")):
        result = runner.invoke(app, ["voices", "add", "bad", str(write(tmp_path / "bad.wav", bad))])
        assert result.exit_code == 1 and words in error_line(result.stderr)
    assert "bad" not in user_voices()


def test_speak_warns_about_a_poor_prompt_before_loading_the_model(speech, encoder, tmp_path):
    book = tmp_path / "book.txt"
    book.write_text("One short sentence.", encoding="utf-8")
    noisy = speech["awb"] + np.random.default_rng(1).normal(0, 0.1, len(speech["awb"])).astype(np.float32)
    prompt = write(tmp_path / "noisy.wav", noisy)
    args = [str(book), "--voice", str(prompt), "--model", str(tmp_path / "no-model")]
    result = runner.invoke(app, route(args))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("narrate: warning: ") and "noisy" in lines[0]
    assert lines[1].startswith("narrate: error: ") and "no-model" in lines[1]
    assert error_line(runner.invoke(app, route([*args, "-q"])).stderr)  # -q: the error alone


def test_an_empty_voice_name_is_not_the_default_voice():
    with pytest.raises(VoiceError, match="empty voice name"):
        load_voice("", "joe")


# --- samples -----------------------------------------------------------------------------------


def test_sample_writes_one_file_per_voice(tiny_model, data_home, tmp_path, monkeypatch):
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    for suffix in (".wav", ".npy", ".txt"):
        shutil.copy(voices.VOICES_DIR / f"joe{suffix}", bundled / f"joe{suffix}")
    monkeypatch.setattr(voices, "VOICES_DIR", bundled)
    mine = data_home / "narrate" / "voices"
    mine.mkdir(parents=True)
    shutil.copy(bundled / "joe.wav", mine / "kept.wav")  # no .npy: its embedding is recomputed
    (mine / "broken.wav").write_bytes(b"RIFF not really")
    out = tmp_path / "samples"
    result = runner.invoke(app, ["voices", "--sample", str(out), "--model", str(tiny_model)])
    assert result.exit_code == 1  # the broken voice
    assert "voice 'broken'" in next(line for line in result.stderr.splitlines() if "error" in line)
    assert sorted(p.name for p in out.iterdir()) == ["joe.wav", "kept.wav"]
    for name in ("joe", "kept"):
        info = sf.info(str(out / f"{name}.wav"))
        assert info.subtype == "PCM_16" and info.duration > 0.5
    again = runner.invoke(app, ["voices", "--sample", str(out), "--model", str(tiny_model)])
    assert again.exit_code == 1 and "--force" in error_line(again.stderr)
