"""The narrate command: help and routing, the listing commands, real narrations through a
subprocess with the tiny model (formats, chapters, stdout, batch), and every bad input ending in
one line on stderr with exit status 1."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from conftest import PROMPT_RATE, cli_env, error_line, prompt_audio
from narrate import hub, voices
from narrate.cli.core import app, route

runner = CliRunner()
needs_ffmpeg = pytest.mark.skipif(not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
                                  reason="ffmpeg/ffprobe not installed")
TEXT = ("It was a bright cold day in April. The clocks were striking thirteen.\n\n"
        "Winston slipped through the doors.\n")
SPEAK_OPTIONS = ["--voice", "--output", "--model", "--revision", "--split", "--format", "--resume",
                 "--force", "--speed", "--seed", "--temperature", "--lexicon", "--quiet-time", "--quiet"]


# --- help and routing -------------------------------------------------------------------------


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("speak", "batch", "voices", "models", "prepare", "train", "export"):
        assert command in result.output
    assert "narrate INPUT" in result.output


def test_speak_help_explains_every_option():
    result = runner.invoke(app, route(["book.txt", "--help"]), env={"COLUMNS": "250"})
    assert result.exit_code == 0
    assert "Usage: narrate speak" in result.output
    lines = result.output.splitlines()
    for option in SPEAK_OPTIONS:
        line = next(line for line in lines if f" {option} " in line)
        # The option's own line carries the start of its explanation.
        assert len(line.split(option, 1)[1].strip()) > 20, line


@pytest.mark.parametrize("command", ["batch", "prepare", "train", "export"])
def test_subcommand_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert f"Usage: narrate {command}" in result.output


def test_route_puts_speak_in_front_of_an_input():
    assert route(["book.txt", "--voice", "me.wav"]) == ["speak", "book.txt", "--voice", "me.wav"]
    assert route(["-", "-o", "-"]) == ["speak", "-", "-o", "-"]
    # The value of an option is not the input, even when it is called like a command.
    assert route(["--voice", "voices", "book.txt"]) == ["speak", "--voice", "voices", "book.txt"]
    assert route(["-q", "book.txt"]) == ["speak", "-q", "book.txt"]
    assert route(["--voice=me.wav", "book.txt"]) == ["speak", "--voice=me.wav", "book.txt"]
    assert route(["--voice", "me.wav"]) == ["speak", "--voice", "me.wav"]  # speak: INPUT missing


def test_route_keeps_subcommands_and_overview():
    for argv in (["voices"], ["batch", "a.txt", "--out-dir", "x"], ["speak", "book.txt"],
                 ["--help"], ["-h"], ["--version"], []):
        assert route(argv) == argv


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("narrate ")


def test_unknown_option_is_a_usage_error():
    result = runner.invoke(app, route(["book.txt", "--no-such-option"]))
    assert result.exit_code == 2


def test_missing_input_is_a_usage_error():
    result = runner.invoke(app, route(["--quiet"]))
    assert result.exit_code == 2
    assert "INPUT" in result.output.upper()


# --- listing commands -------------------------------------------------------------------------


def test_voices_lists_name_description_path(tmp_path, monkeypatch):
    sf.write(str(tmp_path / "anna.wav"), prompt_audio(3.0), PROMPT_RATE)
    (tmp_path / "anna.txt").write_text("Calm British alto\nmore details\n", encoding="utf-8")
    monkeypatch.setattr(voices, "VOICES_DIR", tmp_path)
    result = runner.invoke(app, ["voices"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    assert "anna" in result.output
    assert "Calm British alto" in result.output
    assert "more details" not in result.output
    assert str(tmp_path / "anna.wav") in result.output


def test_voices_when_none_bundled(tmp_path, monkeypatch):
    monkeypatch.setattr(voices, "VOICES_DIR", tmp_path / "absent")
    result = runner.invoke(app, ["voices"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    assert "No bundled voices" in result.output


def test_models_lists_bundled_and_cached(tmp_path, monkeypatch, tiny_model):
    bundled = tmp_path / "models"
    shutil.copytree(tiny_model, bundled / "tiny-bundled")
    monkeypatch.setattr(hub, "MODELS_DIR", bundled)
    monkeypatch.setattr(hub, "cached_models", lambda: {"someone/cached-model": tiny_model})
    result = runner.invoke(app, ["models"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "tiny-bundled" in result.output and "bundled" in result.output
    assert "someone/cached-model" in result.output and "Hugging Face cache" in result.output
    size_mb = (tiny_model / "model.safetensors").stat().st_size / 1e6
    assert f"{size_mb:.1f} MB" in result.output


# --- errors caught before any model is loaded (in process) ------------------------------------


def test_missing_input_file_in_process(tmp_path):
    result = runner.invoke(app, route([str(tmp_path / "absent.txt")]))
    assert result.exit_code == 1
    assert "not found" in error_line(result.stderr)


def test_resume_from_stdin_is_refused():
    result = runner.invoke(app, route(["-", "-o", "x.wav", "--resume"]))
    assert result.exit_code == 1
    assert "standard input" in error_line(result.stderr)


def test_bad_lexicon_is_reported(tmp_path):
    book = tmp_path / "book.txt"
    book.write_text(TEXT, encoding="utf-8")
    lexicon = tmp_path / "lex.txt"
    lexicon.write_text("no separator here\n", encoding="utf-8")
    result = runner.invoke(app, route([str(book), "--lexicon", str(lexicon)]))
    assert result.exit_code == 1
    assert "line 1" in error_line(result.stderr)


def test_export_needs_a_run_folder(tmp_path):
    result = runner.invoke(app, ["export", "--run", str(tmp_path), "--out", str(tmp_path / "m")])
    assert result.exit_code == 1
    assert "not a training run folder" in error_line(result.stderr)


def test_train_needs_a_corpus(tmp_path):
    result = runner.invoke(app, ["train", "--corpus", str(tmp_path / "nope"),
                                 "--run", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "corpus folder" in error_line(result.stderr)


def test_train_init_checkpoint_must_exist(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "texts.json").write_text("{}")
    result = runner.invoke(app, ["train", "--corpus", str(tmp_path / "c"), "--run", str(tmp_path / "r"),
                                 "--init", str(tmp_path / "missing.pt")])
    assert result.exit_code == 1
    assert "checkpoint" in error_line(result.stderr) and "not found" in error_line(result.stderr)


def test_prepare_extends_needs_a_corpus(tmp_path):
    result = runner.invoke(app, ["prepare", "--out", str(tmp_path / "new"), "--extends", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "corpus folder" in error_line(result.stderr)


# --- real narrations (subprocess) -------------------------------------------------------------


@pytest.fixture
def book(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_text_file_to_wav_beside_input(book, narrate_cmd, tiny_model):
    proc = narrate_cmd(book)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b""  # stdout carries audio only, and here there is none
    out = book.with_suffix(".wav")
    info = sf.info(str(out))
    config = json.loads((tiny_model / "config.json").read_text())
    assert info.samplerate == config["codec"]["mel"]["sample_rate"]
    assert info.channels == 1 and info.duration > 1.0
    assert "of audio" in proc.stderr and str(out.name) in proc.stderr  # the summary line
    assert not list(book.parent.glob("*.narrate.json"))  # finished: no resume record left


def test_refuses_to_overwrite_without_force(book, narrate_cmd):
    out = book.parent / "out.wav"
    out.write_bytes(b"precious")
    proc = narrate_cmd(book, "-o", out)
    assert proc.returncode == 1
    line = error_line(proc.stderr)
    assert "exists" in line and "--force" in line
    assert out.read_bytes() == b"precious"
    proc = narrate_cmd(book, "-o", out, "--force", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""  # --quiet: nothing but errors
    assert sf.info(str(out)).duration > 1.0


@pytest.mark.parametrize("fmt", ["flac", "mp3"])
def test_other_formats(book, narrate_cmd, fmt):
    proc = narrate_cmd(book, "--format", fmt, "-q")
    assert proc.returncode == 0, proc.stderr
    out = book.with_suffix(f".{fmt}")
    info = sf.info(str(out))
    assert info.format == fmt.upper()
    assert info.duration > 1.0


def test_stdout_raw_matches_file(book, narrate_cmd):
    proc = narrate_cmd(book, "-o", "-", "--format", "raw", "--seed", "5")
    assert proc.returncode == 0, proc.stderr
    raw = np.frombuffer(proc.stdout, "<i2")
    assert len(proc.stdout) % 2 == 0 and raw.size > 0 and np.abs(raw).max() > 0
    out = book.parent / "same.wav"
    assert narrate_cmd(book, "-o", out, "--seed", "5").returncode == 0
    # Same seed, same samples: stdout's own PCM16 conversion and libsndfile's round alike to
    # within one step.
    written = sf.read(str(out), dtype="int16")[0].astype(int)
    assert written.size == raw.size
    assert np.abs(written - raw.astype(int)).max() <= 1


def test_stdout_wav_streams_a_header(book, narrate_cmd):
    proc = narrate_cmd(book, "-o", "-", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout[:4] == b"RIFF" and proc.stdout[8:12] == b"WAVE"


@needs_ffmpeg
def test_markdown_chapters_to_folder_and_m4b(tmp_path, narrate_cmd):
    md = tmp_path / "story.md"
    md.write_text("# The Story\n\n## Departure\n\nThey left at dawn. Nobody waved.\n\n"
                  "## Return\n\nYears later they came back. The house was gone.\n", encoding="utf-8")
    proc = narrate_cmd(md, "--split", "chapters")
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "story"
    files = sorted(folder.glob("*.wav"))
    assert [f.name for f in files] == ["01 - Departure.wav", "02 - Return.wav"]
    assert all(sf.info(str(f)).duration > 1.0 for f in files)
    # the combined book is named and titled after the book, the chapter files numbered in it
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_chapters", "-show_format", "-of", "json",
                            str(folder / "The Story.m4b")], capture_output=True, text=True, check=True)
    chapters = json.loads(probe.stdout)["chapters"]
    assert [c["tags"]["title"] for c in chapters] == ["Departure", "Return"]
    assert json.loads(probe.stdout)["format"]["tags"]["title"] == "The Story"
    assert not (tmp_path / "story.narrate.json").exists()


@needs_ffmpeg
def test_single_m4b_keeps_chapter_marks(tmp_path, narrate_cmd):
    md = tmp_path / "story.md"
    md.write_text("## One\n\nThe first part is short.\n\n## Two\n\nThe second part is short too.\n",
                  encoding="utf-8")
    proc = narrate_cmd(md, "-o", tmp_path / "story.m4b", "-q")
    assert proc.returncode == 0, proc.stderr
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_chapters", "-of", "json",
                            str(tmp_path / "story.m4b")], capture_output=True, text=True, check=True)
    chapters = json.loads(probe.stdout)["chapters"]
    assert [c["tags"]["title"] for c in chapters] == ["One", "Two"]
    assert float(chapters[1]["start_time"]) > 1.0


def test_batch_goes_on_after_a_bad_document(tmp_path, narrate_cmd):
    good1, good2 = tmp_path / "one.txt", tmp_path / "two.md"
    good1.write_text("The first document is short.", encoding="utf-8")
    good2.write_text("# Two\n\nThe second one is short as well.", encoding="utf-8")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\x00\x01\x02binary\x00")
    out = tmp_path / "out"
    proc = narrate_cmd("batch", good1, bad, good2, "--out-dir", out)
    assert proc.returncode == 1, proc.stderr
    assert sf.info(str(out / "one.wav")).duration > 0.5
    assert sf.info(str(out / "two.wav")).duration > 0.5
    assert not (out / "bad.wav").exists()
    table = proc.stdout.decode()
    assert "done" in table and "failed" in table and "binary" in table
    assert "Traceback" not in proc.stderr


def test_batch_all_good_exits_zero(tmp_path, narrate_cmd):
    doc = tmp_path / "only.txt"
    doc.write_text("Just one short document.", encoding="utf-8")
    proc = narrate_cmd("batch", doc, "--out-dir", tmp_path / "out", "--format", "flac")
    assert proc.returncode == 0, proc.stderr
    assert sf.info(str(tmp_path / "out" / "only.flac")).format == "FLAC"


# --- the bad-input battery: exit 1, one line naming the problem, no traceback ------------------


def _write_prompt(path, audio):
    sf.write(str(path), audio, PROMPT_RATE)
    return path


BAD_INPUTS = [  # (file name, content or None for no file, words the message must contain)
    ("absent.txt", None, "not found"),
    ("empty.txt", b"", "empty"),
    ("data.txt", bytes(range(256)) * 8, "binary"),
    ("latin.txt", "Un caf\u00e9 cr\u00e8me.".encode("latin-1"), "UTF-8"),
    ("paper.pdf", b"%PDF-1.4\n", "not a valid PDF file"),
]


@pytest.mark.parametrize("name,content,words", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_files(name, content, words, tmp_path, narrate_cmd):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    proc = narrate_cmd(path)
    assert proc.returncode == 1
    line = error_line(proc.stderr)
    assert words in line and name in line
    assert proc.stdout == b""


@pytest.mark.parametrize("case,words", [
    ("missing", "does not exist"),
    ("short", "too short"),
    ("silent", "silent"),
    ("not audio", "not readable audio"),
])
def test_bad_voice_prompts(case, words, book, narrate_cmd):
    voice = book.parent / "voice.wav"
    if case == "short":
        _write_prompt(voice, prompt_audio(0.5))
    elif case == "silent":
        _write_prompt(voice, np.zeros(3 * PROMPT_RATE, np.float32))
    elif case == "not audio":
        voice.write_text("this is not a recording")
    proc = narrate_cmd(book, "-o", book.parent / "out.wav", "--voice", voice, voice=False)
    assert proc.returncode == 1
    line = error_line(proc.stderr)
    assert words in line and "voice.wav" in line
    assert not (book.parent / "out.wav").exists()


def test_unknown_voice_name(book, narrate_cmd):
    proc = narrate_cmd(book, "--voice", "nobody-by-this-name", voice=False)
    assert proc.returncode == 1
    assert "unknown voice 'nobody-by-this-name'" in error_line(proc.stderr)


def test_unknown_model_offline(book, narrate_cmd):
    proc = narrate_cmd(book, "--model", "someone/no-such-narrate-model", model=False,
                       env=cli_env(HF_HUB_OFFLINE="1"))
    assert proc.returncode == 1
    line = error_line(proc.stderr)
    assert "someone/no-such-narrate-model" in line and "HF_HUB_OFFLINE" in line


def test_corrupt_model_weights(book, narrate_cmd, tiny_model, tmp_path):
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:500])
    proc = narrate_cmd(book, "--model", broken, model=False)
    assert proc.returncode == 1
    line = error_line(proc.stderr)
    assert "corrupt" in line and "model.safetensors" in line


def test_vocoder_choice(book, narrate_cmd, tiny_model, tmp_path):
    """--vocoder griffin-lim renders with the model's own vocoder left aside (other samples, the
    same length); --vocoder neural on a model without one is a one-line error."""
    neural, gl = tmp_path / "neural.wav", tmp_path / "gl.wav"
    assert narrate_cmd(book, "-o", neural, "-q").returncode == 0
    proc = narrate_cmd(book, "-o", gl, "-q", "--vocoder", "griffin-lim")
    assert proc.returncode == 0, proc.stderr
    a, b = sf.read(str(neural))[0], sf.read(str(gl))[0]
    assert len(a) == len(b) and not np.allclose(a, b)
    line = _refused_without(narrate_cmd, book, tiny_model, tmp_path, "vocoder.safetensors", "neural")
    assert "no neural vocoder" in line and "--vocoder griffin-lim" in line


def _refused_without(narrate_cmd, book, tiny_model, tmp_path, file: str, vocoder: str) -> str:
    """The error line of --vocoder VOCODER with a copy of the tiny model that lacks FILE."""
    bare = tmp_path / "bare"
    shutil.copytree(tiny_model, bare)
    (bare / file).unlink()
    proc = narrate_cmd(book, "--model", bare, "--vocoder", vocoder, "-o", tmp_path / "x.wav", model=False)
    assert proc.returncode == 1
    return error_line(proc.stderr)


def test_source_filter_vocoder(book, narrate_cmd, tiny_model, tmp_path):
    """--vocoder source-filter renders through the model's pitch track (the same length as the
    neural vocoder's); a model without one is a one-line error that names the other choices."""
    neural, pitched = tmp_path / "neural.wav", tmp_path / "pitched.wav"
    assert narrate_cmd(book, "-o", neural, "-q").returncode == 0
    proc = narrate_cmd(book, "-o", pitched, "-q", "--vocoder", "source-filter")
    assert proc.returncode == 0, proc.stderr
    a, b = sf.read(str(neural))[0], sf.read(str(pitched))[0]
    assert len(a) == len(b) and np.abs(b).max() > 0 and not np.allclose(a, b)
    line = _refused_without(narrate_cmd, book, tiny_model, tmp_path, "pitch_track.safetensors", "source-filter")
    assert "no pitch track" in line and "--vocoder neural" in line


def test_output_under_a_regular_file(book, narrate_cmd):
    proc = narrate_cmd(book, "-o", book / "out.wav")
    assert proc.returncode == 1
    line = error_line(proc.stderr)
    assert "book.txt" in line and "not a folder" in line


def test_output_in_unwritable_folder(book, narrate_cmd, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        probe = locked / "probe"
        try:
            probe.write_text("x")  # root ignores permissions: nothing to test then
            pytest.skip("running with permissions that ignore read-only folders")
        except PermissionError:
            pass
        proc = narrate_cmd(book, "-o", locked / "out.wav")
        assert proc.returncode == 1
        assert "locked" in error_line(proc.stderr)
    finally:
        locked.chmod(0o700)
