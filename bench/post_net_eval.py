"""The post-net (narrate.codec.post_net) against the frames as the model gives them, both through
the source filter, on the same model frames: DNSMOS (P.808, SIG, BAK, OVRL), Whisper tiny.en WER,
voiced share, median pitch and resemblyzer similarity of all the audio to the voice's recording.

    python -m bench.post_net_eval --out DIR --post-net FILE [FILE ...] [--texts bench|pool]
        [--voice NAME] [--sentences 1:110:2]

Frames: the narrator's (one stream per sentence, the vocoder in-process), each sentence's frames as
pushed to the vocoder, cached in OUT/frames-<texts>-<voice>.pkl so every condition vocodes the
same frames. Texts: ``bench``, the benchmark's 110 sentences (bench.texts); ``pool``, pool
sentences 2000-2099, which neither the model nor the post-net trained on. Conditions: ``as-is``
and, for each ``--post-net`` file (default: the model folder's, which the bundled model does not
have), its name. Sentences
``a:b:step``: the benchmark's odd ones (1:110:2) were the ones looked at while the post-net was
being built.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import torch

SR = 22050


def texts(kind: str) -> list[str]:
    from narrate.text.segment import prepare_sentence

    if kind == "bench":
        from bench.texts import bench_sentences

        return [s.text for s in bench_sentences(False)]
    from narrate.train.texts import corpus_texts

    return [p for raw in corpus_texts(n_train=2100)[0][2000:2100] for p in prepare_sentence(raw)]


def model_frames(voice: str | None, sentences: list[str]) -> tuple[list[np.ndarray], float]:
    """Each sentence's frames as the narrator pushes them to its vocoder, and the voice's pitch."""
    import narrate.codec.pitched as pitched
    from narrate.runtime.narrator import NarrateSettings, Narrator

    pushed: list[np.ndarray] = []
    push = pitched.PitchedVocoder.push

    def recording(self, frames):
        pushed.append(frames.detach().float().numpy().copy())
        return push(self, frames)

    pitched.PitchedVocoder.push = recording  # type: ignore[method-assign]
    try:
        narrator = Narrator.load(voice=voice, settings=NarrateSettings(vocoder_process=False, vocoder="source-filter"))
        out = []
        for text in sentences:
            pushed.clear()
            for _ in narrator.narrate([text]):
                pass
            out.append(np.concatenate(pushed))
        pitch = narrator.pitches[None]
        narrator.close()
        return out, pitch
    finally:
        pitched.PitchedVocoder.push = push  # type: ignore[method-assign]


def main() -> None:
    from bench.quality import embed, sim
    from bench.source_filter_eval import score, single_threaded, summarise
    from narrate.codec.pitched import PitchedVocoder
    from narrate.codec.post_net import load
    from narrate.hub import POST_NET_FILE, from_pretrained
    from narrate.voices import load_voice

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--texts", choices=("bench", "pool"), default="bench")
    ap.add_argument("--voice", default=None, help="a voice name or recording (default: the model's)")
    ap.add_argument("--sentences", default="0:110:1", help="a:b:step")
    ap.add_argument("--post-net", nargs="*", type=Path, default=None, help="weights files (default: the model's)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    a.out.mkdir(parents=True, exist_ok=True)
    loaded = from_pretrained(None, vocoder="source-filter")
    codec = loaded.codec
    files = a.post_net if a.post_net is not None else [loaded.path / POST_NET_FILE]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise SystemExit(f"no post-net at {', '.join(missing)} (the bundled model has none: give --post-net FILE)")
    voice = load_voice(a.voice, loaded.config.default_voice)
    cache = a.out / f"frames-{a.texts}-{Path(voice.name).stem}.pkl"
    if cache.exists():
        data = pickle.loads(cache.read_bytes())
    else:
        sentences = texts(a.texts)
        frames, pitch = model_frames(a.voice, sentences)
        data = {"texts": sentences, "frames": frames, "pitch": pitch}
        cache.write_bytes(pickle.dumps(data))
    first, last, step = (int(x) for x in a.sentences.split(":"))
    chosen = range(first, min(last, len(data["texts"])), step)
    conditions = {"as-is": None, **{f.stem if f.name != POST_NET_FILE else "post-net": load(str(f)) for f in files}}
    single_threaded()
    if voice.audio is None:
        raise SystemExit(f"voice {voice.name} has no recording to compare with")
    ref = embed(voice.audio, voice.sample_rate)
    results = {}
    for name, net in conditions.items():
        rows, wavs = [], []
        for i in chosen:
            v = PitchedVocoder(codec.pitch_track, codec.mel_cfg, pitch=data["pitch"], post_net=net)
            wav = v.vocode(torch.from_numpy(data["frames"][i]))
            rows.append(score(wav, data["texts"][i]))
            wavs.append(wav)
        s = summarise(rows)
        s["similarity"] = round(sim(embed(np.concatenate(wavs), SR), ref), 3)
        s["peak"] = round(float(max(np.abs(w).max() for w in wavs)), 2)
        results[name] = s
        print(name, json.dumps(s), file=sys.stderr, flush=True)
    (a.out / f"scores-{a.texts}-{Path(voice.name).stem}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
