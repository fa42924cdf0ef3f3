"""Build the tiny model the tests use: the real architecture and file layout, random weights,
a few kB, a tiny random neural vocoder (vocoder.safetensors; vocoder=False leaves it out,
so Griffin-Lim vocodes) and a tiny random pitch track for the source-filter vocoder
(pitch_track.safetensors; pitch_track=False leaves it out). Its progress head is biased to advance one text token per step and
to stop at the end, so it speaks (noise) for a length proportional to the text, deterministically.

    python tests/make_tiny_model.py OUT_DIR
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import torch

from narrate.codec.mel import MelConfig
from narrate.codec.mel_rvq import MelRVQCodec
from narrate.codec.frame_net import FrameNetConfig
from narrate.codec.pitch_track import PitchTrack, save
from narrate.codec.vocos import VocoderConfig, Vocos
from narrate.engine.config import ModelConfig
from narrate.engine.model import NarrateModel
from narrate.hub import PITCH_TRACK_FILE, save_pretrained, save_vocoder

TINY_VOCODER = VocoderConfig(dim=16, intermediate=32, layers=2)
TINY_PITCH_TRACK = FrameNetConfig(channels=8, dilations=(1, 2), lookahead=2)


def make_tiny_model(out: Path, seed: int = 0, vocoder: bool = True, pitch_track: bool = True) -> Path:
    from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP

    torch.manual_seed(seed)
    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=2, enc_convs=1, enc_layers=1, n_codebooks=4, codebook_size=16,
                      codebook_groups=[1, 3], speaker_tokens=2, prompt_tokens=2, prenet_dropout=0.0)
    # codebooks: a quiet spectrum in the first stage, small residuals after it
    books = torch.randn(4, 16, 80) * torch.tensor([1.0, 0.3, 0.2, 0.1]).view(4, 1, 1)
    books[0] += -6.0
    model = NarrateModel(cfg, books)
    with torch.no_grad():
        model.semantic_head.weight.mul_(0.01)
        model.semantic_head.bias.copy_(torch.tensor([0.0, 6.0, 0.0, -4.0, 8.0]))
    codec = MelRVQCodec(MelConfig(gl_iters=4), books)
    config = {"model": cfg.to_dict(), "codec": {**codec.config(), "mel": asdict(MelConfig(gl_iters=4))},
              "text": {"phonemizer": "espeak", "espeak_voice": "en-us", "id_map": dict(DEFAULT_PHONEME_ID_MAP)},
              "default_voice": "joe"}
    save_pretrained(out, config, model, codec, dtype=torch.float32)
    if vocoder:
        save_vocoder(out, Vocos(TINY_VOCODER), {"teacher": "none (random weights, for tests)"}, dtype=torch.float32)
    if pitch_track:
        save(PitchTrack(TINY_PITCH_TRACK), str(out / PITCH_TRACK_FILE))
    return out


if __name__ == "__main__":
    print(make_tiny_model(Path(sys.argv[1])))
