"""A model folder's config.json is typed and checked once, at load: every malformed one is a
one-line ModelError naming the field (and, through the command, one line and exit status 1)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import error_line
from narrate import hub
from narrate.errors import ModelError
from narrate.model_folder import ModelFolderConfig


def _edited(tiny_model: Path, tmp_path: Path, edit) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _put(path: str, value):
    *parents, key = path.split(".")

    def edit(config):
        for part in parents:
            config = config[part]
        config[key] = value
    return edit


def _drop(path: str):
    *parents, key = path.split(".")

    def edit(config):
        for part in parents:
            config = config[part]
        del config[key]
    return edit


def _id_map_without(symbol: str):
    def edit(config):
        del config["text"]["id_map"][symbol]
    return edit


MALFORMED = [
    (_drop("text"), "'text' is missing"),
    (_drop("codec"), "'codec' is missing"),
    (_put("codec.mel.hopp", 256), r"codec.mel has unknown keys \['hopp'\]"),
    (_put("codec.mel", None), "codec.mel is not an object"),
    (_put("codec.name", "wav"), "codec.name 'wav' is not one of mel_rvq, encodec"),
    (_put("codec.bitrate", 6), r"codec has unknown keys \['bitrate'\]"),
    (_put("codec.n_codebooks", 5), r"codec.n_codebooks \(5\) is not model.n_codebooks \(4\)"),
    (_put("codec.codebook_size", 32), r"codec.codebook_size \(32\) is not model.codebook_size \(16\)"),
    (_put("codec.mel.n_mels", 40), r"codec.mel.n_mels \(40\) is not model.feature_dim \(80\)"),
    (_put("model.d_modell", 32), r"model has unknown keys \['d_modell'\]"),
    (_put("model.codebook_groups", [2, 3]), "model: codebook_groups must add up to n_codebooks"),
    (_put("model.vocab_size", 10), "beyond model.vocab_size"),
    (_id_map_without("_"), "no padding symbol '_'"),
    (_id_map_without(" "), "no word space symbol ' '"),
    (_put("text.phonemizer", "gruut"), "text.phonemizer 'gruut' is not 'espeak'"),
    (_put("speed_range", [2, 3]), "speed_range is not"),
    (_put("default_voice", 7), "default_voice is not a voice name"),
    (_put("default_voice", " "), "default_voice is not a voice name"),
    (_put("mean_temperature", 0), "mean_temperature is not a number from 0.05 to 2"),
    (_put("mean_temperature", "sharp"), "mean_temperature is not a number from 0.05 to 2"),
    (_put("vocoder.arch", "hifigan"), "unknown vocoder architecture 'hifigan'"),
    (_put("vocoder.dim", -1), "vocoder.dim = -1"),
    (_put("vocoder.n_mels", 40), r"vocoder.n_mels \(40\) is not codec.mel.n_mels \(80\)"),
]


@pytest.mark.parametrize("edit, why", MALFORMED)
def test_a_malformed_model_folder_is_one_model_error_naming_the_field(tiny_model, tmp_path, edit, why):
    folder = _edited(tiny_model, tmp_path, edit)
    with pytest.raises(ModelError, match=why) as e:
        hub.from_pretrained(str(folder))
    assert "\n" not in str(e.value)
    assert str(e.value).startswith(f"model config '{folder / 'config.json'}' is invalid (")


def test_the_command_says_a_malformed_folder_in_one_line(tiny_model, tmp_path, narrate_cmd):
    folder = _edited(tiny_model, tmp_path, _put("codec.mel.hopp", 256))
    (tmp_path / "book.txt").write_text("One sentence.\n")
    proc = narrate_cmd(tmp_path / "book.txt", "-o", tmp_path / "out.wav", "--model", folder, model=False)
    assert proc.returncode == 1
    assert "codec.mel has unknown keys ['hopp']" in error_line(proc.stderr)
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.parametrize("folder", ["bundled", "tiny"])
def test_the_typed_config_reads_every_section(tiny_model, folder):
    path = hub.resolve(None) if folder == "bundled" else tiny_model
    source = json.loads((path / "config.json").read_text())
    config = ModelFolderConfig.from_dict(source)
    assert config.to_dict() == source  # what is written back beside re-exported weights
    assert config.model.to_dict() == {**config.model.to_dict(), **source["model"]}
    assert config.codec.name == source["codec"]["name"] and config.codec.mel.hop == source["codec"]["mel"]["hop"]
    assert config.text.id_map == {k: tuple(v) for k, v in source["text"]["id_map"].items()}
    assert config.text.espeak_voice == source["text"]["espeak_voice"]
    assert config.default_voice == source["default_voice"] == "joe"
    assert config.default_vocoder == source.get("default_vocoder", "auto")
    assert config.speed_range == tuple(source.get("speed_range", (0.25, 4.0)))
    assert config.mean_temperature == source.get("mean_temperature", 1.0)
    assert (config.vocoder is None) == ("vocoder" not in source)
    if config.vocoder is not None:
        assert config.vocoder.dim == source["vocoder"]["dim"]


def test_not_an_object_is_refused():
    for value in ([], "config", None):
        with pytest.raises(ValueError, match="not a JSON object"):
            ModelFolderConfig.from_dict(value)


def test_a_narrator_takes_the_models_mean_temperature_unless_told_another(tiny_model, tmp_path):
    from narrate.runtime.narrator import Narrator, NarrateSettings

    folder = _edited(tiny_model, tmp_path, _put("mean_temperature", 0.5))

    def mean_temperature(path, **settings) -> float | None:
        n = Narrator.load(str(path), settings=NarrateSettings(vocoder_process=False, **settings))
        n.close()
        return n.settings.mean_temperature

    assert mean_temperature(folder) == 0.5
    assert mean_temperature(folder, mean_temperature=0.9) == 0.9
    assert mean_temperature(tiny_model) == 1.0  # a config without it
    # and it reaches the decoder: the same text at another temperature is other audio
    audio = []
    for settings in (NarrateSettings(mean_temperature=1.0, vocoder_process=False), NarrateSettings(vocoder_process=False)):
        n = Narrator.load(str(folder), settings=settings)
        audio.append(np.concatenate([c.samples for c in n.narrate(["Hello there."])]))
        n.close()
    a, b = audio
    assert not (len(a) == len(b) and np.array_equal(a, b))
