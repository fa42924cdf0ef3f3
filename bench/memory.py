"""Peak memory vs audio length: one fresh ``bench.memory_child`` process per length."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.analysis import relative_growth


def measure_memory(model: str | None, texts: list[str], minutes: list[float], seed: int = 0,
                   timeout: float = 6 * 3600) -> dict:
    """Run one child per length; returns {"runs": [child JSON...], "growth": ...}."""
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sentences.json"
        path.write_text(json.dumps(texts), encoding="utf-8")
        for m in minutes:
            cmd = [sys.executable, "-m", "bench.memory_child", "--sentences", str(path), "--minutes", str(m),
                   "--seed", str(seed)] + (["--model", model] if model else [])
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  cwd=Path(__file__).resolve().parent.parent)
            if proc.returncode != 0:
                tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
                raise RuntimeError(f"memory child for {m} min failed: {tail}")
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    peaks = {r["minutes_target"]: r["maxrss_mb"] for r in runs}
    return {"runs": runs, "growth": relative_growth(peaks),
            "growth_definition": "(peak RSS at the longest length - at the shortest) / at the shortest"}
