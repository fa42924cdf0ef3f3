"""narrate installed from a wheel, away from any checkout: it finds its bundled model, voices and
recipe texts through the package (narrate.assets, package data), and its command narrates."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import soundfile as sf

from conftest import cli_env

REPO = Path(__file__).resolve().parent.parent


def _package_files(*folders: str) -> set[str]:
    return {p.relative_to(REPO).as_posix() for folder in folders for p in (REPO / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def test_a_wheel_installed_elsewhere_finds_its_model_voices_and_texts(tmp_path, tiny_model):
    # A copy of what a clone holds for the build (pip would otherwise write build/ into the tree).
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "narrate", src / "narrate", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    str(src), "-w", str(wheels)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("narrate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = _package_files("narrate/assets", "narrate/train/data") | {
        f"narrate/kernels/{p.name}" for p in (REPO / "narrate" / "kernels").glob("*.cpp")}
    assert {"narrate/assets/models/narrate-joe/model.safetensors", "narrate/assets/voices/joe.wav",
            "narrate/train/data/heldout.txt"} <= wanted
    assert wanted - names == set()

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Only the installed copy on the path (the checkout's editable install would answer otherwise).
    env = {**cli_env(), "PYTHONPATH": str(site)}
    probe = subprocess.run(
        [sys.executable, "-c", "import narrate, narrate.hub as h, narrate.voices as v, narrate.train.texts as t; "
         "m = h.from_pretrained(); print(narrate.__file__); print(m.path / 'model.safetensors'); "
         "print(v.bundled_voices()['joe']); print(t.DATA / 'prose.txt'); print(len(t.heldout_texts()))"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    where, model, voice, prose, n_heldout = probe.stdout.splitlines()
    for path in (where, model, voice, prose):
        assert Path(path).is_relative_to(site) and Path(path).is_file(), path
    assert int(n_heldout) == 100

    # The installed command (its script), from a folder with no narrate in it: the bundled voice
    # by name (its recording and embedding from the install), spoken by the tiny model.
    command = str(site / "bin" / "narrate")
    listing = subprocess.run([command, "voices"], cwd=elsewhere, env={**env, "COLUMNS": "400"},
                             capture_output=True, text=True, timeout=300)
    assert listing.returncode == 0, listing.stderr
    assert str(site / "narrate" / "assets" / "voices" / "joe.wav") in listing.stdout
    run = subprocess.run([command, "-", "-o", "hello.wav", "--voice", "joe", "--model", str(tiny_model)],
                         input=b"The lighthouse keeper climbed the stairs.\n", cwd=elsewhere, env=env,
                         capture_output=True, timeout=600)
    assert run.returncode == 0, run.stderr.decode()
    audio, rate = sf.read(str(elsewhere / "hello.wav"))
    assert rate == 22050 and len(audio) > rate // 4
    assert sorted(os.listdir(elsewhere)) == ["hello.wav"]
