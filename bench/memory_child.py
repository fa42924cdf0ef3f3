"""One memory measurement in a fresh process: load narrate, render N minutes of audio from a
sentence file (cycled), discard the audio as it comes (16-bit PCM to /dev/null), then print
JSON with the peak RSS after loading and after rendering (the main process plus the vocoder
process; their peaks summed), and the main process's current RSS along the way.

    python -m bench.memory_child --sentences FILE --minutes N [--model M] [--voice joe]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time


def _maxrss_mb(pid: str = "self") -> float:
    """Peak RSS of a process (VmHWM). Not ru_maxrss: Linux carries that across exec, so a child
    started by a big benchmark process would report the parent's size."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024  # kB


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sentences", required=True)
    ap.add_argument("--minutes", type=float, required=True)
    ap.add_argument("--model", default=None)
    ap.add_argument("--voice", default="joe")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import numpy as np

    from narrate.runtime.narrator import NarrateSettings, Narrator

    with open(args.sentences, encoding="utf-8") as f:
        texts = json.load(f)
    narrator = Narrator.load(args.model, args.voice, NarrateSettings(seed=args.seed))
    sr = narrator.sample_rate
    loaded_peak = _maxrss_mb()
    target = int(args.minutes * 60 * sr)
    trace, next_mark, n = [], 0, 0
    t0 = time.perf_counter()
    with open("/dev/null", "wb") as sink:
        gen = narrator.narrate(itertools.cycle(texts))
        for chunk in gen:
            sink.write((np.clip(chunk.samples, -1, 1) * 32767).astype("<i2").tobytes())
            n += len(chunk.samples)
            if n >= next_mark:
                trace.append((n / sr, _rss_mb()))
                next_mark += max(sr, target // 30)
            if chunk.final and n >= target:
                break
        gen.close()
    wall = time.perf_counter() - t0
    trace.append((n / sr, _rss_mb()))
    vocoder = _maxrss_mb(str(narrator.vocoding.process.proc.pid)) if narrator.vocoding.process else 0.0
    narrator.close()
    print(json.dumps({"minutes_target": args.minutes, "audio_s": n / sr, "wall_s": wall,
                      "maxrss_loaded_mb": loaded_peak, "maxrss_main_mb": _maxrss_mb(), "maxrss_vocoder_mb": vocoder,
                      "maxrss_mb": _maxrss_mb() + vocoder, "rss_trace": trace}))


if __name__ == "__main__":
    main()
