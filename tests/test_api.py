"""The public API (narrate/__init__.py): every name it lists is there, importing narrate stays
light (the command's start), and the README's "Using narrate from Python" example runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

import narrate

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_public_name_resolves_to_its_module():
    for name in narrate.__all__:
        value = getattr(narrate, name)
        if name != "__version__":
            assert value.__module__.startswith("narrate."), name
    assert set(narrate.__all__) <= set(dir(narrate))


def test_importing_narrate_loads_neither_torch_nor_the_engine():
    code = "import sys, narrate; print(sorted(m for m in ('torch', 'narrate.runtime.narrator') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_readme_example_runs(tmp_path, tiny_model, monkeypatch):
    section = README.read_text().split("## Using narrate from Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    (tmp_path / "book.md").write_text("# One\n\nThe first chapter has a sentence. And another.\n\n# Two\n\nMore.\n")
    monkeypatch.chdir(tmp_path)
    # the example as written, with the tiny test model in place of the bundled one
    code = code.replace("Narrator.load(", f"Narrator.load({str(tiny_model)!r}, ", 1)
    namespace: dict = {}
    exec(compile(code, "README example", "exec"), namespace)
    audio, rate = namespace["audio"], namespace["narrator"].sample_rate
    assert audio.dtype == np.float32 and len(audio) > rate // 10
    import soundfile as sf

    written, written_rate = sf.read(str(tmp_path / "chapter1.wav"), dtype="float32")
    assert written_rate == rate and len(written) == len(audio)
