"""Tests of emotion_cnn.config: defaults, YAML + dotted overrides, paths."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from emotion_cnn import config
from emotion_cnn.config import (
    EMOTIONS,
    Config,
    FeatureConfig,
    config_from_dict,
    load_config,
    paths,
    resolve_data_dir,
    save_config,
)


def _write_yaml(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


# --------------------------------------------------------------------------- defaults


def test_defaults():
    cfg = Config()
    assert cfg.seed == 42
    assert cfg.data_dir == ""
    assert cfg.keep_duplicates is False
    assert cfg.limit_actors == 0
    assert cfg.workers == 0
    f = cfg.features
    assert (f.sr, f.duration, f.trim_top_db) == (16000, 3.0, 30.0)
    assert (f.n_fft, f.hop_length, f.win_length, f.n_mels) == (512, 320, 400, 64)
    assert (f.fmin, f.fmax, f.top_db) == (20.0, 8000.0, 80.0)
    assert cfg.split.protocol == "emobox" and cfg.split.fold == 1
    assert cfg.split.test_actors == [] and cfg.split.val_actors == []
    assert cfg.split.test_fraction == pytest.approx(1 / 6)
    assert cfg.model.filters == [16, 32, 64, 128]
    assert cfg.train.epochs == 50 and cfg.train.batch_size == 32 and cfg.train.fused_batchnorm is True
    assert cfg.train.learning_rate == pytest.approx(3e-3)
    assert cfg.train.schedule == "cosine" and cfg.train.ensemble >= 1
    assert EMOTIONS == ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust",
                        "surprised")


def test_default_lists_are_not_shared():
    a, b = Config(), Config()
    a.model.filters.append(256)
    a.split.test_actors.append(1)
    assert b.model.filters == [16, 32, 64, 128]
    assert b.split.test_actors == []


def test_to_dict_is_nested_plain_data():
    d = Config().to_dict()
    assert d["features"]["n_mels"] == 64
    assert d["split"]["protocol"] == "emobox"
    assert d["train"]["epochs"] == 50
    assert set(d) == {"seed", "data_dir", "keep_duplicates", "limit_actors", "workers",
                      "features", "split", "model", "train"}


# --------------------------------------------------------------------------- load_config


def test_load_config_without_file_is_defaults():
    assert load_config() == Config()


def test_load_config_nested_override(tmp_path):
    path = _write_yaml(tmp_path / "c.yaml", {
        "seed": 7,
        "features": {"n_mels": 40, "duration": 2},  # int for a float setting
        "train": {"epochs": 5, "learning_rate": 1},
        "split": {"protocol": "actors", "test_actors": [1, 2], "val_actors": [3]},
    })
    cfg = load_config(path)
    assert cfg.seed == 7
    assert cfg.features.n_mels == 40
    assert cfg.features.duration == 2.0 and isinstance(cfg.features.duration, float)
    assert cfg.train.learning_rate == 1.0 and isinstance(cfg.train.learning_rate, float)
    assert cfg.train.epochs == 5
    assert cfg.split.test_actors == [1, 2] and cfg.split.val_actors == [3]
    # untouched settings keep their defaults
    assert cfg.features.hop_length == 320
    assert cfg.train.batch_size == 32
    assert cfg.features.n_samples == 32000


def test_dotted_overrides_beat_the_file_and_none_is_ignored(tmp_path):
    path = _write_yaml(tmp_path / "c.yaml", {"train": {"epochs": 5, "batch_size": 8}, "seed": 3})
    cfg = load_config(path, train__epochs=3, seed=None, train__batch_size=None,
                      features__n_mels=None, split__fold=4)
    assert cfg.train.epochs == 3  # override beats file
    assert cfg.train.batch_size == 8  # None: the file's value stays
    assert cfg.seed == 3
    assert cfg.features.n_mels == 64  # None: the default stays
    assert cfg.split.fold == 4


def test_dotted_override_int_for_float():
    cfg = load_config(features__duration=2, train__mixup_alpha=0)
    assert cfg.features.duration == 2.0 and isinstance(cfg.features.duration, float)
    assert cfg.train.mixup_alpha == 0.0 and isinstance(cfg.train.mixup_alpha, float)


def test_empty_yaml_is_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path) == Config()


@pytest.mark.parametrize("data, name", [
    ({"epochs": 3}, "epochs"),
    ({"train": {"epoch": 3}}, "epoch"),
    ({"features": {"nmels": 3}}, "nmels"),
])
def test_unknown_key_in_file_names_it(tmp_path, data, name):
    path = _write_yaml(tmp_path / "c.yaml", data)
    with pytest.raises(ValueError, match=f"'{name}'"):
        load_config(path)


def test_unknown_dotted_key_names_it():
    with pytest.raises(ValueError, match="'epoch'"):
        load_config(train__epoch=3)
    with pytest.raises(ValueError, match="'bogus'"):
        load_config(bogus=1)


def test_section_must_be_a_mapping(tmp_path):
    path = _write_yaml(tmp_path / "c.yaml", {"train": 5})
    with pytest.raises(ValueError, match="'train' must be a mapping"):
        load_config(path)


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "just a string\n", "42\n"])
def test_non_mapping_yaml_raises(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match="mapping"):
        load_config(path)


def test_config_from_dict_none_is_defaults():
    assert config_from_dict(None) == Config()
    assert config_from_dict({"seed": 1}).seed == 1


# --------------------------------------------------------------------------- FeatureConfig


def test_feature_key_is_stable_and_changes_with_each_setting():
    base = FeatureConfig()
    key = base.key()
    assert key == FeatureConfig().key()
    assert len(key) == 12 and all(c in "0123456789abcdef" for c in key)
    seen = {key}
    for f in dataclasses.fields(FeatureConfig):
        value = getattr(base, f.name)
        changed = dataclasses.replace(base, **{f.name: value * 2 if value else 1})
        assert changed.key() != key, f.name
        seen.add(changed.key())
    assert len(seen) == 1 + len(dataclasses.fields(FeatureConfig))


def test_n_samples_and_n_frames_arithmetic():
    assert FeatureConfig().n_samples == 48000
    assert FeatureConfig().n_frames == 151
    cfg = FeatureConfig(sr=16000, duration=1.0, hop_length=256)
    assert cfg.n_samples == 16000
    assert cfg.n_frames == 1 + 16000 // 256 == 63
    cfg = FeatureConfig(sr=22050, duration=2.5, hop_length=512)
    assert cfg.n_samples == 55125
    assert cfg.n_frames == 1 + 55125 // 512 == 108


# --------------------------------------------------------------------------- save_config


def test_save_config_round_trips(tmp_path):
    cfg = load_config(seed=9, features__n_mels=48, split__protocol="actors",
                      split__test_actors=[5, 6], split__val_actors=[7], train__epochs=2,
                      model__filters=[4, 8], keep_duplicates=True)
    out = tmp_path / "deep" / "config.yaml"
    save_config(cfg, out)
    assert out.is_file()
    assert [p.name for p in out.parent.iterdir()] == ["config.yaml"]  # no temp files left
    again = load_config(out)
    assert again == cfg
    assert again.split.test_actors == [5, 6]
    assert yaml.safe_load(out.read_text())["features"]["n_mels"] == 48


# --------------------------------------------------------------------------- paths


def test_resolve_data_dir_order(tmp_path, monkeypatch, project_root):
    monkeypatch.delenv("RAVDESS_DIR", raising=False)
    assert resolve_data_dir(Config()) == project_root.resolve() / "dataset"
    env_dir = tmp_path / "from-env"
    monkeypatch.setenv("RAVDESS_DIR", str(env_dir))
    assert resolve_data_dir(Config()) == env_dir.resolve()
    cfg_dir = tmp_path / "from-config"
    assert resolve_data_dir(Config(data_dir=str(cfg_dir))) == cfg_dir.resolve()


def test_resolve_data_dir_expands_user(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_data_dir(Config(data_dir="~/ravdess")) == (tmp_path / "ravdess").resolve()


def test_paths_follow_emotion_cnn_root(tmp_path, monkeypatch, project_root):
    p = paths()
    assert p.root == project_root.resolve()
    assert p.dataset == p.root / "dataset"
    assert p.spectrograms == p.root / "spectrograms"
    assert p.splits == p.root / "splits"
    assert p.runs == p.root / "runs"
    assert p.reports == p.root / "reports"
    assert p.model == p.root / "emotion_cnn_model.keras"
    assert p.model_info == p.root / "emotion_cnn_model.json"
    assert p.cache == p.root / "spectrograms" / ".cache"
    other = tmp_path / "elsewhere"
    monkeypatch.setenv("EMOTION_CNN_ROOT", str(other))
    assert paths().root == other.resolve()
    assert paths().splits == other.resolve() / "splits"


def test_cache_follows_emotion_cnn_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTION_CNN_CACHE", str(tmp_path / "cache"))
    assert paths().cache == tmp_path / "cache"


def test_project_root_without_env_is_the_checkout(monkeypatch):
    monkeypatch.delenv("EMOTION_CNN_ROOT")
    root = paths().root
    assert (root / "pyproject.toml").is_file()
    assert (root / "src" / "emotion_cnn" / "config.py").samefile(config.__file__)


def test_override_of_the_wrong_type_is_refused():
    from emotion_cnn.config import load_config

    with pytest.raises(ValueError, match="train.epochs: expected int"):
        load_config(None, train__epochs="ten")
    with pytest.raises(ValueError, match="model.filters: expected list"):
        load_config(None, model__filters=32)


def test_yaml_error_names_the_file(tmp_path):
    import yaml

    from emotion_cnn.config import load_config

    bad = tmp_path / "broken.yaml"
    bad.write_text("train: {epochs: [1, 2\n")
    with pytest.raises(yaml.YAMLError, match="broken.yaml"):
        load_config(bad)


def test_a_record_missing_newer_settings_reads_as_it_ran():
    from emotion_cnn.config import Config, config_from_record

    record = Config().to_dict()
    record["train"]["fused_batchnorm"] = True
    del record["model"]["recurrent_units"], record["train"]["train_on_val"], record["features"]["top_db"]
    ran = config_from_record(record)
    assert ran.model.recurrent_units == 0 and ran.train.train_on_val is False  # their old values
    assert ran.train.fused_batchnorm is True  # recorded: taken as it ran
    del record["train"]["fused_batchnorm"]
    assert config_from_record(record).train.fused_batchnorm is False  # before it existed
    assert ran.features.top_db == Config().features.top_db  # not listed: the default
    del record["train"]["average"], record["train"]["temporal_members"]
    assert config_from_record(record).train.average == "probabilities"  # before round 42, whatever the default
    assert config_from_record(record).train.temporal_members == 0
    assert config_from_record(Config().to_dict()) == Config()  # a complete record is taken as it is
    with pytest.raises(ValueError, match="reference"):
        config_from_record({"features": {"reference": "peak"}})
