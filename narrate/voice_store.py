"""The user's own voices: a cloned voice kept under a name, so that ``--voice NAME`` finds it.

A kept voice is three files in the user's data folder ($XDG_DATA_HOME/narrate/voices, by default
~/.local/share/narrate/voices), laid out like the bundled voices in voices/:
NAME.wav (the prompt, mono 16-bit at its own sample rate), NAME.npy (its [256] speaker
embedding) and NAME.txt (a one-line description). The wav is written last, under a temporary
name, and its presence is what makes the voice exist, so a voice is never half there.
"""

from __future__ import annotations

import datetime
import os
import re
from pathlib import Path

import numpy as np

from narrate.errors import VoiceError
from narrate.voices import Voice, bundled_voices, read_prompt

# Letters, digits, '-', '_' and '.', starting with a letter or digit: never a path, never hidden.
NAME = re.compile(r"[^\W_][\w.-]{0,63}")
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3"}


def user_voices_dir() -> Path:
    """$XDG_DATA_HOME/narrate/voices; ~/.local/share/narrate/voices when it is unset or relative
    (the XDG base directory spec ignores relative paths)."""
    data = os.environ.get("XDG_DATA_HOME", "")
    base = Path(data) if data and Path(data).is_absolute() else Path.home() / ".local" / "share"
    return base / "narrate" / "voices"


def user_voices() -> dict[str, Path]:
    """name -> wav path of the voices kept with ``narrate voices add``."""
    folder = user_voices_dir()
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.wav")) if not p.name.startswith(".")}


def check_name(name: str, force: bool = False) -> None:
    """A name ``add`` may use: VoiceError (one line) if it is malformed or already taken."""
    if "/" in name or "\\" in name or os.sep in name:
        raise VoiceError(f"voice name '{name}' contains a path separator; give a plain name such as 'anna'")
    if not NAME.fullmatch(name):
        raise VoiceError(f"voice name '{name}' is not allowed: use 1-64 letters, digits, '-', '_' or '.', "
                         "starting with a letter or digit")
    if Path(name).suffix.lower() in AUDIO_SUFFIXES:
        raise VoiceError(f"voice name '{name}' looks like a file name; give a name without {Path(name).suffix}")
    if force:
        return
    if name in bundled_voices():
        raise VoiceError(f"'{name}' is the name of a bundled voice; choose another name, or add "
                         "--force to use yours instead of it")
    if name in user_voices():
        raise VoiceError(f"you already have a voice named '{name}' ({user_voices()[name]}); "
                         "add --force to replace it")


def add_voice(name: str, wav: np.ndarray, sample_rate: int, embedding: np.ndarray, source: Path,
              description: str | None = None) -> Path:
    """Keep a prompt (already read and checked) and its embedding as voice NAME -> its wav path."""
    import soundfile as sf

    folder = user_voices_dir()
    target = folder / f"{name}.wav"
    temp = folder / f".{name}.wav.partial"
    if description is None:
        description = (f"your voice, from {source.name} ({len(wav) / sample_rate:.1f} s), "
                       f"added {datetime.date.today().isoformat()}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{name}.npy", np.asarray(embedding, np.float32))
        (folder / f"{name}.txt").write_text(" ".join(description.split()) + "\n", encoding="utf-8")
        sf.write(str(temp), np.clip(wav, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
        os.replace(temp, target)
    except OSError as e:
        temp.unlink(missing_ok=True)
        raise VoiceError(f"cannot keep voice '{name}' in {folder}: {e.strerror or e}") from None
    return target


def remove_voice(name: str) -> Path:
    """Delete the user's voice NAME (its wav, embedding and description) -> the wav path it had."""
    mine = user_voices()
    if name not in mine:
        if name in bundled_voices():
            raise VoiceError(f"'{name}' is a bundled voice; only voices added with 'narrate voices add' "
                             "can be removed")
        raise VoiceError(f"you have no voice named '{name}' (yours: {', '.join(mine) or 'none'})")
    path = mine[name]
    try:
        path.unlink()  # first: without its wav the voice is gone even if the rest stays
        for suffix in (".npy", ".txt"):
            path.with_suffix(suffix).unlink(missing_ok=True)
    except OSError as e:
        raise VoiceError(f"cannot remove voice '{name}' from {path.parent}: {e.strerror or e}") from None
    return path


def load_user_voice(name: str) -> Voice:
    """The user's voice NAME with its prompt; the embedding from NAME.npy (recomputed from the
    prompt if that file is missing or unreadable)."""
    from narrate.voices import SpeakerEncoder

    path = user_voices()[name]
    wav, sr = read_prompt(path)
    try:
        embedding = np.load(path.with_suffix(".npy"))
        if embedding.shape != (256,) or not np.isfinite(embedding).all():
            raise ValueError("not a speaker embedding")
    except (OSError, ValueError):
        embedding = SpeakerEncoder().embed(wav, sr)
    return Voice(name, path, embedding, wav, sr)
