"""Overhead of ``narrate batch --ray`` on a two-node Ray cluster on this machine against the local
batch, on the same documents (made from the held-out sentences): wall time of the whole command,
model loading and start-up included, runs alternating.

    python -m bench.cluster_overhead [--model narrate-joe] [--runs 2]

The cluster is two nodes of one CPU each (ray.cluster_utils.Cluster), stopped at the end. The
documents of both runs are compared sample by sample.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
HELDOUT = ROOT / "narrate" / "train" / "data" / "heldout.txt"


def make_documents(folder: Path) -> list[Path]:
    """Three documents, six chapters of 6-16 held-out sentences."""
    lines = [s for s in HELDOUT.read_text(encoding="utf-8").splitlines() if s.strip()]
    take = iter(lines)

    def para(n: int) -> str:
        return " ".join(next(take) for _ in range(n))

    a, b, c = folder / "a.md", folder / "b.txt", folder / "c.txt"
    a.write_text(f"# One\n\n{para(16)}\n\n# Two\n\n{para(6)}\n\n# Three\n\n{para(12)}\n", encoding="utf-8")
    b.write_text(f"CHAPTER I\n\n{para(14)}\n\nCHAPTER II\n\n{para(8)}\n", encoding="utf-8")
    c.write_text(para(10) + "\n", encoding="utf-8")
    return [a, b, c]


def timed(command: list[str], env: dict) -> float:
    start = time.monotonic()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{proc.stderr[-2000:]}")
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="narrate-joe")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    from ray.cluster_utils import Cluster

    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1",
           "RAY_agent_register_timeout_ms": "180000",  # a busy machine starts agents slowly
           "RAY_worker_niceness": "0"}  # Ray's workers at the local batch's priority (its default: +15)
    os.environ.update(env)  # the nodes import this checkout too
    work = Path(tempfile.mkdtemp(prefix="narrate-cluster-bench-"))
    docs = make_documents(work)
    base = [sys.executable, "-m", "narrate", "batch", *map(str, docs), "--model", args.model,
            "--force", "--quiet"]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        local, ray = [], []
        for _ in range(args.runs):
            local.append(timed(base + ["--out-dir", str(work / "local")], env))
            ray.append(timed(base + ["--out-dir", str(work / "ray"), "--ray", cluster.address], env))
            print(f"local {local[-1]:.1f} s   ray {ray[-1]:.1f} s   load {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        cluster.shutdown()
    for doc in docs:
        x, _ = sf.read(str(work / "local" / f"{doc.stem}.wav"), dtype="int16")
        y, _ = sf.read(str(work / "ray" / f"{doc.stem}.wav"), dtype="int16")
        assert np.array_equal(x, y), f"{doc.stem}: cluster and local audio differ"
    audio = sum(sf.info(str(p)).duration for p in (work / "local").glob("*.wav"))
    best_local, best_ray = min(local), min(ray)
    print(f"{audio:.0f} s of audio in 3 documents; best of {args.runs}: local {best_local:.1f} s, "
          f"ray (2 nodes x 1 CPU) {best_ray:.1f} s: {100 * (best_ray / best_local - 1):+.0f}%; "
          f"same samples")


if __name__ == "__main__":
    main()
