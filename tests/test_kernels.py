"""Where our kernels are built and looked for, and what narrate says when they are missing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import cli_env
from narrate import kernels


@pytest.fixture
def fresh_available():
    kernels.available.cache_clear()
    yield
    kernels.available.cache_clear()  # the next test loads the real library again


def test_the_build_folder_is_in_the_users_cache_and_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("NARRATE_KERNEL_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert kernels.build_dir().parent == tmp_path / "cache" / "narrate" / "kernels"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # not absolute: ignored, as the spec says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert kernels.build_dir().parent == tmp_path / "home" / ".cache" / "narrate" / "kernels"
    monkeypatch.setenv("NARRATE_KERNEL_DIR", str(tmp_path / "mine"))
    assert kernels.build_dir().parent == tmp_path / "mine"


@pytest.mark.skipif(not kernels.cpu_supported(), reason="this CPU cannot run our kernels: nothing to say")
def test_missing_kernels_are_said_once_in_one_line(monkeypatch, tmp_path, capsys, fresh_available):
    monkeypatch.setenv("NARRATE_KERNEL_DIR", str(tmp_path / "empty"))
    assert kernels.available() is False
    assert kernels.available() is False
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("narrate: our CPU kernels are not built"), lines


@pytest.mark.skipif(not kernels.cpu_supported(), reason="this CPU cannot run our kernels: nothing to build")
def test_a_failed_build_exits_non_zero_with_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # the build folder cannot be made under a file
    proc = subprocess.run([sys.executable, "-m", "narrate.kernels"], capture_output=True, text=True, timeout=120,
                          env=cli_env(NARRATE_KERNEL_DIR=str(blocker / "kernels")))
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("narrate: kernels not built ("), proc.stderr
    assert not (blocker.parent / "kernels").exists()
