"""REPORT.md from the results dict: summary table, plain statements of where narrate is behind
piper, then each section's raw numbers and figures, machine and versions."""

from __future__ import annotations

import json
import math
from pathlib import Path


def fmt(x, digits: int = 3) -> str:
    """A number for a table: '-' for missing/NaN, 'inf', else ``digits`` significant digits."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}g}"


def pct(x) -> str:
    return "-" if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))) else f"{100 * x:+.1f}%"


def table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table; cells are converted with ``fmt`` unless already strings."""
    cell = lambda v: v if isinstance(v, str) else fmt(v)  # noqa: E731
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def times(a, b) -> str:
    """'2.5x' style ratio a/b, '-' if either is missing."""
    if a is None or b is None or not b or any(isinstance(v, float) and math.isnan(v) for v in (a, b)):
        return "-"
    return f"{a / b:.2f}x"


def _get(d: dict, *path, default=None):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def _mean(values) -> float | None:
    v = [x for x in (values or []) if x is not None and not math.isnan(x)]
    return sum(v) / len(v) if v else None


def verdict(ok) -> str:
    """A bar's cell: met / **not met** / - (not measured)."""
    return "-" if ok is None else ("met" if ok else "**not met**")


def natural_row(label: str, e: dict) -> list:
    """label | DNSMOS P.808 SIG BAK OVRL | silence (s, share) | pauses, over 1 s, longest | sentence pause median, p95."""
    d, p = e["dnsmos"], e["pauses"]
    return [label, d["p808"], d["sig"], d["bak"], d["ovrl"], p["silence_s"], f"{100 * p['silence_share']:.1f}%",
            p["n_pauses"], p["n_long"], p["longest_s"], p["sentence_pause_s"]["median"], p["sentence_pause_s"]["p95"]]


NATURAL_HEADERS = ["", "DNSMOS P.808", "SIG", "BAK", "OVRL", "silence (s)", "silence share", "pauses >= 0.3 s",
                   "pauses > 1 s", "longest pause (s)", "sentence pause, median (s)", "p95 (s)"]

# issue 15's bars on the quality section's renderings (held-out text, narrate and piper in the same run)
DNSMOS_MARGIN, SILENCE_FACTOR, LONGEST_PAUSE_S = 0.3, 1.3, 1.2


def naturalness_bars(q: dict) -> list[list]:
    """bar | narrate | piper | met: DNSMOS P.808 and OVRL within 0.3 of piper's, total silence
    within 1.3x piper's, no pause over 1.2 s inside a paragraph."""
    n, p = q["narrate_joe"], q["piper"]
    if "dnsmos" not in n or "dnsmos" not in p:
        return []
    rows = []
    for key, name in (("p808", "DNSMOS P.808"), ("ovrl", "DNSMOS P.835 OVRL")):
        a, b = n["dnsmos"][key], p["dnsmos"][key]
        rows.append([f"{name} within {DNSMOS_MARGIN:g} of piper's", a, b, verdict(a >= b - DNSMOS_MARGIN)])
    a, b = n["pauses"]["silence_s"], p["pauses"]["silence_s"]
    rows.append([f"total silence within {SILENCE_FACTOR:g}x piper's (s)", a, b,
                 verdict(a <= SILENCE_FACTOR * b) if b else verdict(a == 0)])
    a = n["pauses"]["longest_s"]
    rows.append([f"no pause over {LONGEST_PAUSE_S:g} s inside a paragraph (longest, s)", a, p["pauses"]["longest_s"],
                 verdict(a <= LONGEST_PAUSE_S)])
    return rows


def summary_rows(r: dict) -> list[list]:
    """measure | narrate | piper | narrate / piper."""
    rows = []
    sp = r.get("speed")
    if sp:
        rows.append(["RTF, compute s per audio s (lower is faster)", sp["narrate"]["rtf"], sp["piper"]["rtf"],
                     times(sp["narrate"]["rtf"], sp["piper"]["rtf"])])
    tt = r.get("ttfa")
    if tt:
        if "narrate_cli" in tt:
            n_cold, p_cold = _mean(tt["narrate_cli"]["cold_s"]), _mean(tt["piper_cli"]["cold_s"])
            n_warm, p_warm = _mean(tt["narrate_cli"]["warm_s"]), _mean(tt["piper_cli"]["warm_s"])
            rows.append(["time to first audio, stdin, cold start incl. load (s)", n_cold, p_cold, times(n_cold, p_cold)])
            rows.append(["time to first audio, stdin, program running (s)", n_warm, p_warm, times(n_warm, p_warm)])
        n_in, p_in = _mean(tt["narrate_inprocess_s"]), _mean(tt["piper_inprocess_s"])
        rows.append(["time to first audio, in-process API, warm (s)", n_in, p_in, times(n_in, p_in)])
    q = r.get("quality")
    if q:
        rows.append([f"WER on {q['n_sentences']} unseen sentences (lower is better)", q["narrate_joe"]["wer"],
                     q["piper"]["wer"], times(q["narrate_joe"]["wer"], q["piper"]["wer"])])
        rows.append(["speaker similarity to voices/joe.wav", q["narrate_joe"]["similarity"]["joe"]["whole"],
                     q["piper"]["similarity"]["joe"]["whole"], "-"])
        rows.append(["unseen flite slt prompt: similarity to slt (with the prompt / default voice)",
                     f"{fmt(q['narrate_slt']['similarity']['slt']['whole'])} / {fmt(q['default_to_slt'])}", "n/a", "-"])
        if "dnsmos" in q["narrate_joe"]:
            n, p = q["narrate_joe"], q["piper"]
            rows.append(["naturalness, DNSMOS P.808 / P.835 OVRL (higher is better)",
                         f"{fmt(n['dnsmos']['p808'])} / {fmt(n['dnsmos']['ovrl'])}",
                         f"{fmt(p['dnsmos']['p808'])} / {fmt(p['dnsmos']['ovrl'])}", "-"])
            rows.append(["silence in pauses >= 0.3 s (s; longest pause)",
                         f"{fmt(n['pauses']['silence_s'])} ({fmt(n['pauses']['longest_s'])})",
                         f"{fmt(p['pauses']['silence_s'])} ({fmt(p['pauses']['longest_s'])})",
                         times(n["pauses"]["silence_s"], p["pauses"]["silence_s"])])
    m = r.get("memory")
    if m:
        runs = sorted(m["runs"], key=lambda x: x["minutes_target"])
        rows.append([f"peak RSS, {runs[0]['minutes_target']:g} -> {runs[-1]['minutes_target']:g} min of audio (MB)",
                     f"{runs[0]['maxrss_mb']:.0f} -> {runs[-1]['maxrss_mb']:.0f} ({pct(m['growth'])})", "not measured", "-"])
    t = r.get("throughput")
    if t:
        rows.append([f"book throughput, audio s per wall s, {t['batched']['streams']} streams vs 1",
                     f"{fmt(t['batched']['audio_per_wall_s'])} vs {fmt(t['single']['audio_per_wall_s'])} "
                     f"({fmt(t['ratio'])}x)", "n/a (no batching)", "-"])
    d = r.get("drift")
    if d and d["windows"]:
        w = d["windows"]
        rows.append([f"drift: WER first -> last {d['window_min']:g}-min window", f"{fmt(w[0]['wer'])} -> {fmt(w[-1]['wer'])}",
                     "n/a", "-"])
        st = d.get("same_text")
        if st:
            rows.append(["drift, same sentences: WER first spoken -> last window",
                         f"{fmt(st['early']['wer'])} -> {fmt(st['late']['wer'])} ({pct(st['wer_change'])})", "n/a", "-"])
    s = r.get("seams")
    if s:
        rows.append(["median pause at sentence joins (s)", s["narrate"]["pause_at_seam_s"]["median"],
                     s["piper"]["pause_at_seam_s"]["median"], "-"])
        if "seams_pause_above_inside_max" in s["narrate"]:
            rows.append(["joins with a pause longer than any inside a sentence",
                         f"{s['narrate']['seams_pause_above_inside_max']}/{s['narrate']['n_seams']}",
                         f"{s['piper']['seams_pause_above_inside_max']}/{s['piper']['n_seams']}", "-"])
        rows.append(["joins with a jump above the p99 of jumps elsewhere (clicks)",
                     f"{s['narrate']['seams_above_elsewhere_p99']}/{s['narrate']['n_seams']}",
                     f"{s['piper']['seams_above_elsewhere_p99']}/{s['piper']['n_seams']}", "-"])
    c = r.get("codec")
    if c:
        rows.append(["codec round trip of piper audio: WER decoded (original)",
                     f"{fmt(c['wer_decoded'])} ({fmt(c['wer_original'])})", "-", "-"])
    cl = r.get("cloning")
    if cl:
        held = {k: v for k, v in cl["prompts"].items() if v["kind"] == "held out"}
        if held:
            rows.append(["held-out voice prompts: similarity to the prompt (with it / default voice)",
                         ", ".join(f"{k} {fmt(v['similarity'])} / {fmt(v['default_similarity'])}"
                                   for k, v in held.items()), "n/a", "-"])
    return rows


def behind(r: dict) -> list[str]:
    """Plain statements comparing narrate with piper, measure by measure."""
    out = []

    def cmp(name, n, p, lower_better=True, unit=""):
        if n is None or p is None or any(math.isnan(v) for v in (n, p)):
            return
        worse = n > p if lower_better else n < p
        word = "behind" if worse else "ahead of or level with"
        out.append(f"{name}: narrate is **{word}** piper ({fmt(n)}{unit} vs {fmt(p)}{unit}).")

    sp = r.get("speed")
    if sp:
        cmp(f"Speed (RTF; narrate takes {times(sp['narrate']['rtf'], sp['piper']['rtf'])} piper's compute per audio second)",
            sp["narrate"]["rtf"], sp["piper"]["rtf"])
    tt = r.get("ttfa")
    if tt and "narrate_cli" in tt:
        cmp("Time to first audio from stdin, cold", _mean(tt["narrate_cli"]["cold_s"]), _mean(tt["piper_cli"]["cold_s"]), unit=" s")
        cmp("Time to first audio from stdin, running", _mean(tt["narrate_cli"]["warm_s"]), _mean(tt["piper_cli"]["warm_s"]), unit=" s")
    elif tt:
        cmp("Time to first audio (in-process)", _mean(tt["narrate_inprocess_s"]), _mean(tt["piper_inprocess_s"]), unit=" s")
    q = r.get("quality")
    if q:
        cmp("Intelligibility (WER)", q["narrate_joe"]["wer"], q["piper"]["wer"])
        cmp("Likeness to joe (similarity)", q["narrate_joe"]["similarity"]["joe"]["whole"],
            q["piper"]["similarity"]["joe"]["whole"], lower_better=False)
        a, b = q["narrate_slt"]["similarity"]["slt"]["whole"], q["default_to_slt"]
        ok = a is not None and b is not None and a > b
        out.append(f"Unseen voice: the output with the slt prompt is {'closer to' if ok else '**not closer to**'} "
                   f"slt than the default voice's output ({fmt(q['narrate_slt']['similarity']['slt']['whole'])} vs "
                   f"{fmt(q['default_to_slt'])}); piper cannot take a voice prompt at all.")
    s = r.get("seams")
    if s:
        cmp("Clicks at joins (joins above the elsewhere-p99 jump)", s["narrate"]["seams_above_elsewhere_p99"] / max(1, s["narrate"]["n_seams"]),
            s["piper"]["seams_above_elsewhere_p99"] / max(1, s["piper"]["n_seams"]))
    return out


def _section_speed(r: dict) -> list[str]:
    sp = r["speed"]
    n, p = sp["narrate"], sp["piper"]
    out = ["## 1. Speed", "",
           f"Same text for both: {sp['text']['n_sentences']} sentences (the long rendering of section 4), "
           f"one stream. Wall-clock compute; CPU seconds count all threads, and for narrate its vocoder process too.", "",
           table(["", "audio (s)", "wall (s)", "CPU (s)", "RTF (wall)", "RTF (CPU)"],
                 [["narrate", n["audio_s"], n["wall_s"], n["cpu_s"], n["rtf"], n["rtf_cpu"]],
                  ["piper", p["audio_s"], p["wall_s"], p["cpu_s"], p["rtf"], p["rtf_cpu"]]]), "",
           f"RTF ratio narrate / piper: **{fmt(sp['rtf_ratio'])}**.", "",
           "narrate's RTF split. Main process: time inside `engine.step` = model decoder steps; the rest = text "
           "front-end, phonemizer, bookkeeping, handing frames to the vocoder. The vocoder "
           f"({r['meta']['model'].get('vocoder', 'griffin-lim')}) runs in a "
           "process of its own on the other core, at the same time: its seconds (as it reports them) overlap the "
           "main process's, so total = model + other:", "",
           table(["model", "vocoder", "other", "total"], [[n["rtf_model"], n["rtf_vocoder"], n["rtf_other"], n["rtf"]]]), ""]
    if "figure" in sp:
        out += [f"![speed]({sp['figure']})", ""]
    return out


def _section_ttfa(r: dict) -> list[str]:
    tt = r["ttfa"]
    out = ["### Time to first audio", ""]
    if "narrate_cli" in tt:
        out += [f"Through the programs with text on standard input: `{tt['narrate_cmd']}` vs `{tt['piper_cmd']}`. "
                f"Cold = from starting the process (imports and model load included) to its first audio byte, with the "
                f"first sentence written at once; running = from writing a further sentence (after the output had been "
                f"quiet for {tt['quiet_s']:g} s) to its first byte.", "",
                table(["", "cold (s), per run", "running (s), each sentence"],
                      [["narrate", ", ".join(fmt(x) for x in tt["narrate_cli"]["cold_s"]),
                        ", ".join(fmt(x) for x in tt["narrate_cli"]["warm_s"])],
                       ["piper", ", ".join(fmt(x) for x in tt["piper_cli"]["cold_s"]),
                        ", ".join(fmt(x) for x in tt["piper_cli"]["warm_s"])]]), ""]
        for name in ("narrate_cli", "piper_cli"):
            if tt[name].get("errors"):
                out += [f"{name} errors: {'; '.join(tt[name]['errors'])}", ""]
    else:
        out += [f"The narrate CLI was not usable ({tt.get('cli_note', '')}); only the in-process numbers below.", ""]
    out += ["In-process (models loaded, after one uncounted warm-up sentence): `Narrator.narrate(queue-fed generator, "
            "live=True)` from handing over a sentence to its first non-empty chunk, vs piper's `synthesize(sentence)` "
            "to its first chunk:", "",
            table(["", "seconds, each sentence"],
                  [["narrate", ", ".join(fmt(x) for x in tt["narrate_inprocess_s"])],
                   ["piper", ", ".join(fmt(x) for x in tt["piper_inprocess_s"])]]), ""]
    return out


def _section_memory(r: dict) -> list[str]:
    m = r["memory"]
    rows = [[f"{x['minutes_target']:g}", x["audio_s"] / 60, x["wall_s"], x["maxrss_loaded_mb"],
             x.get("maxrss_main_mb", x["maxrss_mb"]), x.get("maxrss_vocoder_mb", "-"), x["maxrss_mb"]]
            for x in sorted(m["runs"], key=lambda x: x["minutes_target"])]
    out = ["## 2. Memory", "",
           "Each length in a fresh process (`python -m bench.memory_child`), audio written to /dev/null as it "
           "comes; peak RSS (`VmHWM`) after loading and after rendering, of the main process and of the vocoder process "
           "(forked from it, so pages they share count twice: the sum overstates).", "",
           table(["target (min)", "audio (min)", "wall (s)", "peak RSS after load (MB)", "main after render (MB)",
                  "vocoder process (MB)", "sum (MB)"], rows), "",
           f"Growth {m['growth_definition']}: **{pct(m['growth'])}** (flat is the goal).", ""]
    if "figure" in m:
        out += [f"![memory]({m['figure']})", ""]
    return out


def _section_throughput(r: dict) -> list[str]:
    t = r["throughput"]
    rows = [[f"{x['streams']}", x["audio_s"], x["wall_s"], x["audio_per_wall_s"]] for x in (t["single"], t["batched"])]
    out = ["## 3. Throughput for books", "",
           f"`narrate_many` with {t['batched']['streams']} streams of {t['sentences_per_stream']} sentences each "
           f"vs 1 stream of {t['sentences_per_stream']} sentences."
           + (f" As `narrate` runs chapter files, the streams go to {t['decoder_processes']} decoder processes "
              "(one per core), each decoding its share as one batch and vocoding it; one stream alone decodes in "
              "the main process, with the vocoder process beside it." if t.get("decoder_processes", 1) > 1 else ""),
           "",
           table(["streams", "audio (s)", "wall (s)", "audio s per wall s"], rows), "",
           f"Batched / single: **{fmt(t['ratio'])}x**.", ""]
    if "rounds" in t:
        out += ["The streams hold about the same number of characters each (so the batch stays full to the "
                "end), and one stream and all of them are run in turn, round after round; the table shows the "
                "round with the median ratio. Every round (audio s per wall s, single / batched / ratio): "
                + "; ".join(f"{fmt(x['single'])} / {fmt(x['batched'])} / {fmt(x['ratio'])}x" for x in t["rounds"])
                + ".", ""]
    return out


def _section_quality(r: dict) -> list[str]:
    q = r["quality"]
    rows = []
    for key, label in (("narrate_joe", "narrate, voice joe"), ("narrate_slt", "narrate, unseen slt prompt"),
                       ("piper", "piper joe")):
        e = q[key]
        sims = e["similarity"]
        rows.append([label, e["wer"], e["wer_by_source"].get("everyday"), e["wer_by_source"].get("heldout"),
                     sims["joe"]["whole"], sims["joe"]["sentence_mean"], sims["slt"]["whole"], e["audio_s"]])
    out = ["## 4. Quality", "",
           f"{q['n_sentences']} sentences never trained on ({q['n_by_source'].get('everyday', 0)} everyday, "
           f"{q['n_by_source'].get('heldout', 0)} held-out docstring sentences), one stream each system; each "
           "sentence transcribed on its own with Whisper tiny.en (faster-whisper, int8); WER via bench.measures.wer. "
           "Similarity: resemblyzer cosine of the whole output (sentences joined) and the per-sentence mean.", "",
           table(["", "WER", "WER everyday", "WER held-out", "sim. to joe (whole)", "sim. to joe (sentence mean)",
                  "sim. to slt prompt", "audio (s)"], rows), "",
           f"Unseen voice (flite slt, female US, not in training): similarity to the slt prompt of narrate's output "
           f"with that prompt **{fmt(q['narrate_slt']['similarity']['slt']['whole'])}** vs with the default voice "
           f"({q['default_voice']}) **{fmt(q['default_to_slt'])}** (higher = closer). For scale: joe.wav vs the slt "
           f"prompt: {fmt(q['joe_vs_slt'])}.", ""]
    if "dnsmos" in q["narrate_joe"]:
        out += ["Naturalness and pauses of the same renderings. DNSMOS (Microsoft's P.808 MOS and P.835 SIG/BAK/OVRL, "
                "from the `speechmos` wheel; 1-5, higher is better; it hears signal artifacts more than prosody): mean "
                "over consecutive 9 s windows of the whole rendering at 16 kHz. A pause: a run of 10 ms frames below "
                "-40 dB of the clip's peak lasting >= 0.3 s, between the first and last sound; silence = their total. "
                "Sentence pause: the pause at each join of two sentences (0 where none). The text is one paragraph "
                "(sentences one after another), so every pause is inside a paragraph.", "",
                table(NATURAL_HEADERS, [natural_row(label, q[key]) for key, label in
                                        (("narrate_joe", "narrate, voice joe"), ("narrate_slt", "narrate, unseen slt prompt"),
                                         ("piper", "piper joe"))]), ""]
        bars = naturalness_bars(q)
        if bars:
            out += ["The naturalness bars (issue 15), on these renderings:", "",
                    table(["bar", "narrate", "piper", ""], bars), ""]
    out += ["Examples (reference / narrate joe / piper):", ""]
    for a, b in zip(q["narrate_joe"]["examples"], q["piper"]["examples"]):
        out += [f"- `{a['ref']}`", f"  - narrate: {_quote(a['hyp'])}", f"  - piper: {_quote(b['hyp'])}"]
    out.append("")
    return out


def _quote(text: str) -> str:
    return f"`{text}`" if text.strip() else "(nothing recognized)"


def _section_drift(r: dict) -> list[str]:
    d = r["drift"]
    rows = [[f"{w['start_min']:.1f}-{w['end_min']:.1f}", w["n_sentences"], w["wer"], w["similarity"],
             _get(w, "dnsmos", "p808"), _get(w, "dnsmos", "ovrl")] for w in d["windows"]]
    out = ["### Drift", "",
           f"One {d['length_min']:.1f}-minute rendering (voice joe) of the benchmark sentences cycled, ending with the "
           f"sentences of its first window again (so the first and the last window read the same text), cut into "
           f"~{d['window_min']:g}-minute windows of whole sentences (by where each sentence ends, from the AudioChunk "
           "sentence indices); each window transcribed as a whole against the sentences spoken in it.", "",
           table(["minutes", "sentences", "WER", "similarity to joe", "DNSMOS P.808", "OVRL"], rows), ""]
    if "narrate" in d:
        out += ["Naturalness and pauses over the whole long rendering, and piper's on exactly the sentences narrate "
                "spoke (as in section 4):", "",
                table(NATURAL_HEADERS, [natural_row("narrate", d["narrate"]), natural_row("piper", d["piper"])]), ""]
    st = d.get("same_text")
    if st:
        out += [f"The same sentences early and late: the last window's {st['n_sentences']} sentences as first spoken "
                f"(minutes {st['early']['start_min']:.1f}-{st['early']['end_min']:.1f}) and in the last window "
                f"(minutes {st['late']['start_min']:.1f}-{st['late']['end_min']:.1f}), each set transcribed as a whole. "
                "Windows of different sentences differ in difficulty; this compares like with like.", "",
                table(["", "WER", "similarity to joe"],
                      [["first spoken", st["early"]["wer"], st["early"]["similarity"]],
                       ["last window", st["late"]["wer"], st["late"]["similarity"]],
                       ["change", pct(st["wer_change"]), pct(st["similarity_change"])]]), ""]
    if "figure" in d:
        out += [f"![drift]({d['figure']})", ""]
    return out


def _section_seams(r: dict) -> list[str]:
    s = r["seams"]
    rows, longer = [], []
    for name in ("narrate", "piper"):
        x = s[name]
        rows.append([name, x["n_seams"], x["seams_without_pause"], x["pause_at_seam_s"]["median"],
                     x["pause_at_seam_s"]["p95"], x["pause_inside_s"]["n"], x["pause_inside_s"]["median"],
                     x["jump_at_seam"]["median"], x["jump_at_seam"]["max"], x["jump_elsewhere"]["median"],
                     x["jump_elsewhere_p99"], f"{x['seams_above_elsewhere_p99']}/{x['n_seams']}"])
        longer.append([name, x["pause_inside_s"]["max"], f"{x.get('seams_pause_above_inside_max', '-')}/{x['n_seams']}",
                       x["pause_at_seam_s"]["max"]])
    out = ["## 5. Seams", "",
           "On the long renderings (narrate; piper on exactly the sentences narrate spoke). A seam is where one "
           "sentence's audio ends (narrate: end of an AudioChunk with final=True; piper: end of one synthesize call). "
           "Pause = run of 10 ms frames below -40 dB relative to the clip's peak, at least 50 ms; a pause is at a "
           "join when the join lies within it (±20 ms). Jump = largest |x[i+1] - x[i]| within ±5 ms of the join, "
           "vs the same over every other 10 ms window.", "",
           table(["", "joins", "joins w/o pause", "pause at joins, median (s)", "p95 (s)", "pauses inside",
                  "inside, median (s)", "jump at joins, median", "max", "jump elsewhere, median", "elsewhere p99",
                  "joins > p99"], rows), "",
           "Pauses at joins against the range of pauses inside sentences (the quality bar):", "",
           table(["", "longest pause inside a sentence (s)", "joins with a longer pause", "longest pause at a join (s)"],
                 longer), "",
           "A jump near a join is not always a click: where the next sentence starts speaking within 5 ms of the "
           "join (joins without a pause), its onset is the jump.", ""]
    if "figure" in s:
        out += [f"![seams]({s['figure']})", ""]
    return out


def _section_codec(r: dict) -> list[str]:
    c = r["codec"]
    return ["## 6. Codec", "",
            f"The model's offline codec ({c['codec']}): encode -> decode of piper joe's audio of the "
            f"{c['n_sentences']} quality sentences, sentence by sentence.", "",
            table(["WER original", "WER decoded", "similarity decoded vs original (whole)", "(sentence mean)"],
                  [[c["wer_original"], c["wer_decoded"], c["similarity_whole"], c["similarity_sentence_mean"]]]), ""]


def _section_cloning(r: dict) -> list[str]:
    c = r["cloning"]
    b = c["bars"]
    rows = []
    for name, x in c["prompts"].items():
        bars = x["bars"]
        rows.append([name, x["kind"], x["similarity"], x["default_similarity"], verdict(bars["similarity"]),
                     x["f0_output"], x["f0_prompt"], verdict(bars.get("f0")) if "f0" in bars else "-",
                     x["wer"], verdict(bars.get("wer")) if "wer" in bars else "-", x["dnsmos"]["p808"],
                     x["dnsmos"]["ovrl"]])
    d = c["default"]
    rows.append([f"default voice ({c['default_voice']})", "-", "-", "-", "-", d["f0"], "-", "-", d["wer"], "-",
                 d["dnsmos"]["p808"], d["dnsmos"]["ovrl"]])
    out = ["## 7. Cloning", "",
           f"The same {c['n_sentences']} held-out sentences read with each voice prompt and with the default voice. "
           "Held-out prompts are made by the benchmark (other synthesizers reading everyday sentences) and were never "
           "in training; seen ones are the bundled prompts. Similarity: resemblyzer cosine of the whole output to the "
           "prompt, and of the default voice's output to the same prompt. F0: median over voiced frames (Praat's "
           "autocorrelation pitch, narrate.pitch.median_pitch; on breathy output, where little is periodic, it can "
           "read an octave off). WER: Whisper tiny.en, each sentence on its own.", "",
           f"Bars (issue 16): held out: similarity >= the default voice's + {b['held_out_margin']:g} and >= "
           f"{b['held_out_min']:g}, median F0 within {100 * b['f0_tolerance']:.0f}% of the prompt's, WER <= "
           f"{b['wer_factor']:g}x the default voice's; seen: similarity >= {b['seen_min']:g}.", "",
           table(["prompt", "kind", "similarity to prompt", "default voice's", "bar", "F0 output (Hz)",
                  "F0 prompt (Hz)", "bar", "WER", "bar", "DNSMOS P.808", "OVRL"], rows), "",
           "Prompts: " + "; ".join(f"{k}: {x['description']} ({x['prompt_s']:.1f} s)" for k, x in c["prompts"].items())
           + ".", ""]
    return out


def _section_soak(s: dict) -> list[str]:
    """``make soak``'s summary (bench/results/soak/soak.json): each run's memory from its first
    minutes to its peak, and what the runs left behind."""
    meta = s.get("meta", {})
    rows = []
    for run in s["runs"]:
        p = s["per_run"].get(str(run["run"]), s["per_run"].get(run["run"], {}))
        cells = []
        for early, peak in ((p.get("early_peak_rss_mb"), p.get("peak_rss_mb")),
                            (p.get("early_peak_main_mb"), p.get("peak_main_mb"))):
            growth = peak / early - 1 if early and peak else None
            cells += [f"{x:.0f}" if x else "-" for x in (early, peak)] + [pct(growth) if growth is not None else "-"]
        rows.append([run["output"], run["exit"], f"{run['seconds'] / 60:.1f}", *cells,
                     p.get("peak_open_files"), p.get("peak_children"),
                     len(run["left"]["processes"]), len(run["left"]["files"])])
    out = ["## 8. Soak", "",
           f"`{meta.get('command', 'python -m bench.soak')}`"
           + (f" at commit {meta['git'][:12]}, started {meta['started']}" if "git" in meta else "")
           + ": one narrate run after another on a book of hostile passages (wav, m4b, a chapter folder in turn); "
           "each run's RSS (with its children: vocoder, decoder processes, ffmpeg), open files and child processes "
           "every minute; the last run is "
           "stopped by SIGTERM at the deadline (exit 143, its output kept and resumable). Growth: a run's peak "
           "over its peak in its early part (its first 10 minutes, or its first third when it is shorter than "
           "30), for all its processes together and for narrate's own process (the text front end and the "
           "decoder).", "",
           table(["output", "exit", "minutes", "RSS early (MB)", "RSS peak (MB)", "growth",
                  "narrate process early (MB)", "peak (MB)", "growth",
                  "open files (peak)", "children (peak)", "processes left", "files left"], rows), "",
           f"Processes left running after a run ended: **{s['leaked_processes']}**; hidden files left: "
           f"**{len(s['leftover_files'])}**.", ""]
    if s.get("figure"):
        out += [f"![soak]({s['figure']})", ""]
    return out


def left_behind_lines(r: dict) -> list[str]:
    """What sections left running (processes, threads), or that none did."""
    lb = r.get("left_behind")
    if not lb:
        return []
    bad = {k: v for k, v in lb.items() if v["processes"] or v["threads"]}
    if not bad:
        return [f"No section left a process or a thread running (checked after each of: {', '.join(lb)}).", ""]
    out = ["**Left running after a section** (processes were then ended by the benchmark):", ""]
    for k, v in bad.items():
        procs = "; ".join(f"pid {p['pid']} `{p['cmd']}`" for p in v["processes"]) or "no process"
        out.append(f"- {k}: {procs}; threads: {', '.join(v['threads']) or 'none'}")
    return out + [""]


def render(r: dict, soak: dict | None = None) -> str:
    """The whole REPORT.md; soak: ``make soak``'s summary, if there is one."""
    meta = r["meta"]
    out = [f"# narrate benchmark{' (quick)' if meta['quick'] else ''}", "",
           f"Model under test: `{meta['model']['name']}` ({meta['model']['path']}, model.safetensors sha256 "
           f"{meta['model']['sha256'][:16]}"
           + (f"; vocoder {meta['model']['vocoder']}, mean temperature {meta['model']['mean_temperature']:g}"
              if "vocoder" in meta["model"] else "")
           + f"); peer: piper {meta['versions'].get('piper-tts', '?')} with the joe voice "
           "(narrate's teacher).", "", f"Command: `{meta['command']}`", "",
           table(["measure", "narrate", "piper", "narrate / piper"], summary_rows(r)), ""]
    notes = behind(r)
    if notes:
        out += ["**Where narrate stands against piper:**", ""] + [f"- {n}" for n in notes] + [""]
    if meta.get("load_warning"):
        out += [f"> {meta['load_warning']}", ""]
    if r.get("earlier"):
        out += ["**Sections kept from an earlier run** (`--update`):", ""]
        out += [f"- {k}: `{e['command']}` started {e['started']}, model sha256 {e['model_sha256'][:16]}, "
                f"commit {e['git'][:12]}, sizes `{json.dumps(e['config'])}`" for k, e in r["earlier"].items()] + [""]
    if r.get("errors"):
        out += ["**Sections that failed:**", ""] + [f"- {k}: `{v}`" for k, v in r["errors"].items()] + [""]
    out += left_behind_lines(r)
    for key, fn in (("speed", _section_speed), ("ttfa", _section_ttfa), ("memory", _section_memory),
                    ("throughput", _section_throughput), ("quality", _section_quality), ("drift", _section_drift),
                    ("seams", _section_seams), ("codec", _section_codec), ("cloning", _section_cloning)):
        if r.get(key):
            out += fn(r)
    if soak:
        out += _section_soak(soak)
    m = meta["machine"]
    out += ["## Machine and versions", "",
            table(["", ""], [["CPU", m["cpu"]], ["cores (nproc)", str(m["nproc"])], ["RAM", f"{m['ram_gb']:.1f} GB"],
                             ["load average at start / end", f"{m['load_start']} / {m['load_end']}"],
                             ["torch threads", str(m["torch_threads"])], ["OS", m["os"]]]), "",
            table(["package", "version"], [[k, str(v)] for k, v in meta["versions"].items()]), "",
            f"narrate git commit: {meta['git']}", "",
            f"Started {meta['started']}, finished {meta['finished']}; sizes: `{json.dumps(r['config'])}`", "",
            table(["section", "wall (s)"], [[k, v] for k, v in r["timings_s"].items()]), "",
            "Raw numbers: results.json.", ""]
    return "\n".join(out)


def load_soak(results_dir: Path) -> dict | None:
    """The soak's summary beside the benchmark's results (soak/soak.json), with its figure's
    path relative to REPORT.md; None if the soak was not run."""
    path = results_dir / "soak" / "soak.json"
    if not path.exists():
        return None
    soak = json.loads(path.read_text(encoding="utf-8"))
    if (path.parent / "soak.png").exists():
        soak["figure"] = "soak/soak.png"
    return soak


def present_figures(r: dict, results_dir: Path) -> dict:
    """``r`` without the sections' figures that are not in ``results_dir`` (REPORT.md's folder),
    so every figure link resolves: a figure's path is relative to the --out its run wrote it to,
    and a results.json copied to another folder leaves the figures behind."""
    return {k: {f: x for f, x in v.items() if f != "figure"}
            if isinstance(v, dict) and isinstance(v.get("figure"), str) and not (results_dir / v["figure"]).is_file()
            else v for k, v in r.items()}


def write(results_dir: Path) -> Path:
    """REPORT.md again from results.json and the soak's summary (after ``make soak``), both in
    ``results_dir``, linking the figures there."""
    results = json.loads((results_dir / "results.json").read_text(encoding="utf-8"))
    path = results_dir / "REPORT.md"
    path.write_text(render(present_figures(results, results_dir), load_soak(results_dir)), encoding="utf-8")
    return path


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write REPORT.md again from results.json and soak/soak.json.")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    print(write(parser.parse_args().out))
