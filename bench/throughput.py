"""Book throughput: audio seconds produced per wall second by narrate_many on k streams."""

from __future__ import annotations

import statistics
import time

from bench.analysis import ratio


def batch_throughput(narrator, streams: list[list[str]]) -> dict:
    """Decode ``streams`` together (one batched step for all); audio s per wall s."""
    samples = [0] * len(streams)
    t0, c0 = time.perf_counter(), time.process_time()
    vocoded = narrator.vocoding.seconds
    decoders = narrator.decoders
    worked = decoders.cpu_seconds if decoders else 0.0
    for i, chunk in narrator.narrate_many([iter(s) for s in streams]):
        samples[i] += len(chunk.samples)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if narrator.vocoding.in_process:  # its CPU is not this process's
        cpu += narrator.vocoding.seconds - vocoded
    if decoders:  # nor is that of the decoder processes
        cpu += decoders.cpu_seconds - worked
    audio = sum(samples) / narrator.sample_rate
    return {"streams": len(streams), "audio_s": audio, "wall_s": wall, "cpu_s": cpu,
            "audio_per_wall_s": audio / wall if wall else float("inf"),
            "per_stream_audio_s": [n / narrator.sample_rate for n in samples]}


def alternate(narrator, streams: list[list[str]], rounds: int) -> dict:
    """One stream, then all of them, ``rounds`` times over (this machine's speed drifts by
    +-20% within minutes, so the two are measured side by side); the round with the median
    ratio is reported, with every round's figures. A short unmeasured batch goes first: the
    first run in a process pays one-time set-up (kernels, allocations) the later ones do not."""
    batch_throughput(narrator, [s[:2] for s in streams])
    runs = [(batch_throughput(narrator, streams[:1]), batch_throughput(narrator, streams)) for _ in range(rounds)]
    ratios = [ratio(b["audio_per_wall_s"], s["audio_per_wall_s"]) for s, b in runs]
    single, batched = runs[ratios.index(statistics.median_low(ratios))]
    return {"single": single, "batched": batched, "ratio": statistics.median_low(ratios),
            "rounds": [{"single": s["audio_per_wall_s"], "batched": b["audio_per_wall_s"], "ratio": r}
                       for (s, b), r in zip(runs, ratios)]}
