"""Export a training run to a model folder: config.json, model.safetensors (fp16), model card."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from narrate.codec import codec_from_config
from narrate.engine.config import ModelConfig
from narrate.engine.model import NarrateModel
from narrate.hub import save_pretrained
from narrate.train.loop import TrainConfig


def vocoder_card(section: dict | None) -> str:
    """The model card's paragraph on the folder's vocoder (its config.json "vocoder" section)."""
    if not section:
        return "- Vocoder: Griffin-Lim (no neural vocoder in this folder).\n"
    arch = {k: v for k, v in section.items() if k not in ("file", "teacher", "training")}
    lines = [f"- Vocoder: `{section.get('file', 'vocoder.safetensors')}` (float16), architecture {json.dumps(arch)}."]
    if section.get("teacher"):
        lines.append(f"  Distilled from {section['teacher']}.")
    if section.get("training"):
        lines.append(f"  Training: {section['training']}")
    return "\n".join(lines) + "\n"


def export(run: Path, out: Path, card_extra: str = "") -> Path:
    run, out = Path(run), Path(out)
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    model = NarrateModel(ModelConfig.from_dict(config["model"]))
    model.load_state_dict(state["model"])
    codec = codec_from_config(config["codec"], {"codebooks": model.codebooks})
    save_pretrained(out, config, model, codec)  # keeps a neural vocoder already in ``out``
    written = json.loads((out / "config.json").read_text(encoding="utf-8"))
    rows = list(csv.DictReader((run / "log.csv").open())) if (run / "log.csv").exists() else []
    held = [r for r in rows if r["split"] == "heldout"]
    last = held[-1] if held else {}
    n_params = sum(p.numel() for p in model.parameters())
    train_cfg = json.loads((run / "train_config.json").read_text()) if (run / "train_config.json").exists() else {}
    texts = [c / "texts.json" for c in (TrainConfig(**train_cfg).corpora if train_cfg else [])]
    n_sentences = sum(len(json.loads(t.read_text())["train"]) for t in texts if t.exists())
    start = f", starting from the weights of {train_cfg['init']}" if train_cfg.get("init") else ""
    from narrate.train.speakers import training_speakers

    n_speakers = len(training_speakers())
    n_prompt = config["model"].get("prompt_tokens", 0)
    prompt_note = f" and a prompt encoder ({n_prompt} tokens from the prompt's frames)" if n_prompt else ""
    if config["model"].get("voice_stats"):
        prompt_note += (", the prompt's median pitch (Praat, narrate/pitch.py) and its average spectrum; in "
                        "training, each speaker's pitch measured the same way on its readings")
    card = f"""# {out.name}

A narrate model trained on CPU from a corpus made offline (see `narrate prepare`).

- Parameters: {n_params / 1e6:.1f} M (weights stored in float16); codec `{config['codec']['name']}`
  ({config['codec'].get('n_codebooks')} codebooks x {config['codec'].get('codebook_size')}).
- Architecture: {json.dumps(config['model'])}
- Training: {state['step']} steps{start}; settings {json.dumps(train_cfg)}
- Held-out teacher-forced losses at the last evaluation: {json.dumps(last)}
- Data: {n_sentences or 'the'} training sentences of the text pool (our own prose, Python
  standard-library docstrings, then Debian `fortunes`), read by piper's joe voice (MIT; dataset
  CC0) with exact per-phoneme timing; the first of them also by two WORLD pseudo-speakers of joe
  each (pitch, vocal-tract length, tilt, breathiness; joe's timing) and by flite's awb or kal16 or
  Festival's ked, themselves or WORLD pseudo-speakers of them (timing mapped from joe's by DTW):
  {n_speakers} training speakers (`narrate/train/speakers.py`). Conditioning: resemblyzer's
  speaker embedding{prompt_note}. Never trained on: the held-out sentences
  (narrate/train/data/heldout.txt), the voices slt (flite, Festival), rms (flite) and the
  pseudo-speaker family `f-breathy`.
{vocoder_card(written.get("vocoder"))}{card_extra}
"""
    (out / "README.md").write_text(card, encoding="utf-8")
    return out
