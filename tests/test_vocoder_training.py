"""The vocoder's distillation trainer (narrate.train.vocoder): it learns, resumes, and exports a
vocoder that a model folder loads, with where it came from in the folder's config and card."""

from __future__ import annotations

import json

import numpy as np
import torch

from narrate.codec.vocos import VocoderConfig
from narrate.train.vocoder import VocoderTrainConfig, load_student, main, train

HOP = 256


def _shards(folder, n_utts=6, seed=0):
    """Two sources of utterances whose 'teacher' waveform is a tone the frames tell (frame energy
    in a band -> a sine there): a mapping a few steps can start to learn."""
    g = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for source in ("a", "b"):
        mels, wavs = [], []
        for _ in range(n_utts):
            t = int(g.integers(70, 110))
            band = int(g.integers(5, 40))
            mel = np.full((t, 80), -8.0, np.float32)
            mel[:, band] = 0.0
            freq = 8000 * band / 80
            wav = (0.3 * np.sin(2 * np.pi * freq * np.arange(t * HOP) / 22050)).astype(np.float32)
            mels.append(mel.astype(np.float16))
            wavs.append(wav)
        np.savez(folder / f"{source}_0000.npz", mel=np.concatenate(mels), mel_len=np.array([len(m) for m in mels]),
                 wav=np.concatenate(wavs))


def test_train_resume_and_export_into_a_model_folder(tmp_path, tiny_model):
    import shutil

    data, run = tmp_path / "shards", tmp_path / "run"
    _shards(data)
    arch = VocoderConfig(dim=16, intermediate=32, layers=2)
    cfg = VocoderTrainConfig(data=str(data), steps=4, batch=2, frames=16, warmup=1)
    train(run, cfg, arch)
    first = torch.load(run / "checkpoint.pt", weights_only=True)
    assert first["step"] == 4
    assert all(torch.isfinite(v).all() for v in first["model"].values())
    # a longer schedule continues from step 4, with the weights it had
    train(run, VocoderTrainConfig(**{**cfg.__dict__, "steps": 6}), arch)
    second = torch.load(run / "checkpoint.pt", weights_only=True)
    assert second["step"] == 6
    assert any(not torch.equal(first["model"][k], second["model"][k]) for k in first["model"])

    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    main(["--run", str(run), "--export", str(folder)])
    section = json.loads((folder / "config.json").read_text())["vocoder"]
    assert "HiFi-GAN V1 universal" in section["teacher"] and "MIT" in section["teacher"]
    assert section["training"].startswith("6 steps of 2 crops x 16 frames") and "8 training utterances" in section["training"]
    from narrate.hub import from_pretrained

    loaded = from_pretrained(str(folder), vocoder="neural")
    student = load_student(run)
    mel = torch.randn(20, 80)
    assert np.allclose(loaded.codec.vocoder.vocode(mel), student.vocode(mel), atol=2e-3)  # fp16 in the folder



def test_the_long_term_mel_term_sees_a_level_or_tilt_bias_that_the_others_spread_thin():
    from narrate.train.vocoder import losses

    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, 64 * HOP, generator=g) * 0.1
    assert float(losses(target, target)["ltas"]) == 0.0
    # half the amplitude: every mel bin's long-term log magnitude falls by log 2
    assert abs(float(losses(0.5 * target, target)["ltas"]) - np.log(2)) < 0.01
    # a tilt: the first difference (a high-pass) leaves the average spectrum tilted, not its frames random
    tilted = torch.nn.functional.pad(target[:, 1:] - target[:, :-1], (1, 0))
    assert float(losses(tilted, target)["ltas"]) > 0.3


def test_init_starts_a_new_run_from_a_checkpoint_and_kept_copies_are_written(tmp_path):
    data = tmp_path / "shards"
    _shards(data)
    arch = VocoderConfig(dim=16, intermediate=32, layers=2)
    cfg = VocoderTrainConfig(data=str(data), steps=4, batch=2, frames=16, warmup=1)
    train(tmp_path / "a", cfg, arch)
    first = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    # a new run from a's weights, with the long-term mel term on: 2 steps move it a little, not far
    cfg_b = VocoderTrainConfig(**{**cfg.__dict__, "steps": 2, "lr": 1e-5, "w_mel": 1.0, "w_ltas": 4.0, "keep_every": 1})
    train(tmp_path / "b", cfg_b, arch, init=tmp_path / "a" / "checkpoint.pt")
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert b["step"] == 2 and b["train"]["w_ltas"] == 4.0
    assert (tmp_path / "b" / "ckpt_1.pt").exists() and (tmp_path / "b" / "ckpt_2.pt").exists()
    drift = max(float((b["model"][k] - first["model"][k]).abs().max()) for k in first["model"])
    assert 0 < drift < 1e-3
    header = (tmp_path / "b" / "log.csv").read_text().splitlines()[0]
    assert header.startswith("step,split,loss,complex,logmag,mag,mel,ltas")


def test_the_adversarial_term_trains_a_discriminator_that_resumes_with_the_student(tmp_path):
    from narrate.train.vocoder import provenance

    data, run = tmp_path / "shards", tmp_path / "run"
    _shards(data)
    arch = VocoderConfig(dim=16, intermediate=32, layers=2)
    plain = VocoderTrainConfig(data=str(data), steps=2, batch=2, frames=16, warmup=1)
    train(tmp_path / "plain", plain, arch)
    assert "disc" not in torch.load(tmp_path / "plain" / "checkpoint.pt", weights_only=True)
    # a run gaining the term from a regression checkpoint starts a new discriminator
    cfg = VocoderTrainConfig(**{**plain.__dict__, "steps": 3, "w_adv": 0.5, "w_fm": 1.0})
    train(run, cfg, arch, init=tmp_path / "plain" / "checkpoint.pt")
    first = torch.load(run / "checkpoint.pt", weights_only=True)
    assert first["step"] == 3 and first["disc"] and first["disc_opt"]["state"]  # it took optimizer steps
    train(run, VocoderTrainConfig(**{**cfg.__dict__, "steps": 4}), arch)
    second = torch.load(run / "checkpoint.pt", weights_only=True)
    assert second["step"] == 4
    assert any(not torch.equal(first["disc"][k], second["disc"][k]) for k in first["disc"])
    rows = (run / "log.csv").read_text().splitlines()
    assert rows[0].split(",")[3:11] == ["complex", "logmag", "mag", "mel", "ltas", "adv", "fm", "disc"]
    assert "multi-period adversarial x0.5; feature matching x1" in provenance(run)["training"]


def test_the_discriminator_losses_pull_the_right_ways():
    from narrate.train.discriminator import MultiPeriodDiscriminator, discriminator_loss, generator_losses

    torch.manual_seed(0)
    disc = MultiPeriodDiscriminator()
    real = torch.randn(2, 4000) * 0.1
    fake = torch.randn(2, 4000) * 0.1
    r, f = disc(real), disc(fake)
    assert len(r) == 5 and all(s.shape[0] == 2 for s, _ in r)
    d = discriminator_loss(r, f)
    adv, fm = generator_losses(r, f)
    assert d > 0 and adv > 0 and fm > 0
    assert float(generator_losses(r, disc(real))[1].detach()) == 0.0  # the teacher's own maps match exactly
    # the student's terms reach the student's waveform, never the discriminator through the real side
    y = fake.clone().requires_grad_(True)
    adv, fm = generator_losses(disc(real), disc(y))
    (adv + fm).backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
