"""Book throughput: audio seconds produced per wall second by narrate_many on k streams."""

from __future__ import annotations

import time


def batch_throughput(narrator, streams: list[list[str]]) -> dict:
    """Decode ``streams`` together (one batched step for all); audio s per wall s."""
    samples = [0] * len(streams)
    t0, c0 = time.perf_counter(), time.process_time()
    vocoded = narrator.vocoding.seconds
    for i, chunk in narrator.narrate_many([iter(s) for s in streams]):
        samples[i] += len(chunk.samples)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if narrator.vocoding.in_process:  # its CPU is not this process's
        cpu += narrator.vocoding.seconds - vocoded
    audio = sum(samples) / narrator.sample_rate
    return {"streams": len(streams), "audio_s": audio, "wall_s": wall, "cpu_s": cpu,
            "audio_per_wall_s": audio / wall if wall else float("inf"),
            "per_stream_audio_s": [n / narrator.sample_rate for n in samples]}
