"""Tests of the prepare stage: dataset folder -> features, PNGs, metadata and .npy splits."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import make_dataset, ravdess_name, small_config, synth_signal, write_clip
from emotion_cnn import data, features, prepare as prepare_module
from emotion_cnn.config import EMOTIONS, config_from_dict, load_config, paths
from emotion_cnn.prepare import latest_split_dir, prepare

SPLIT_FILES = [f"{kind}_{split}.npy" for split in ("train", "val", "test") for kind in ("X", "y")]


# --------------------------------------------------------------------------- helpers


def _small_dataset(root: Path, rng, *, actors=(1, 2, 3), emotions=(1, 2, 3, 4), **kwargs) -> Path:
    """A quick tree: 3 actors x 4 emotions x 1 take = 12 clips of 1 s."""
    kwargs.setdefault("repetitions", (1,))
    kwargs.setdefault("seconds", 0.6)
    return make_dataset(root, rng, actors=actors, emotions=emotions, **kwargs)


def _load_split(split_dir: Path) -> dict[str, np.ndarray]:
    return {name[:-4]: np.load(split_dir / name) for name in SPLIT_FILES}


def _assert_same_split(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


class Spy:
    """Counts calls to features.load_mono / features.clip_features (or makes them raise)."""

    def __init__(self, monkeypatch, *, fail: bool = False):
        self.loaded: list[Path] = []
        self.featurised = 0
        real_load, real_features = features.load_mono, features.clip_features

        def load_mono(path, *, sr):
            if fail:
                raise AssertionError(f"load_mono called for {path}")
            self.loaded.append(Path(path))
            return real_load(path, sr=sr)

        def clip_features(y, cfg):
            if fail:
                raise AssertionError("clip_features called")
            self.featurised += 1
            return real_features(y, cfg)

        monkeypatch.setattr(features, "load_mono", load_mono)
        monkeypatch.setattr(features, "clip_features", clip_features)


def _expected_features(path: Path, cfg) -> np.ndarray:
    y, _, _ = features.load_mono(path, sr=cfg.features.sr)
    return features.clip_features(y, cfg.features)


# --------------------------------------------------------------------------- end to end


def test_prepare_end_to_end(synthetic_dataset, project_root, capsys):
    cfg = small_config(synthetic_dataset)
    result = prepare(cfg, progress=False)
    split_dir = project_root / "splits" / "actors-test1"
    assert result.split_dir == split_dir
    assert sorted(p.name for p in split_dir.iterdir()) == sorted(
        SPLIT_FILES + ["labels.json", "manifest.csv", "config.yaml", "summary.json",
                       "split.json", "skipped.csv", "content-key.json"])

    arrays = _load_split(split_dir)
    assert arrays["X_train"].shape == (64, 32, 63)
    assert arrays["X_val"].shape == (16, 32, 63)
    assert arrays["X_test"].shape == (16, 32, 63)
    for split in ("train", "val", "test"):
        assert arrays[f"X_{split}"].dtype == np.float32
        assert arrays[f"y_{split}"].dtype == np.int64
        assert np.bincount(arrays[f"y_{split}"], minlength=8).tolist() == [len(arrays[f"y_{split}"]) // 8] * 8
    assert arrays["X_train"].max() == 0.0 and arrays["X_train"].min() >= -80.0

    labels = json.loads((split_dir / "labels.json").read_text())
    assert labels == {str(i): e for i, e in enumerate(EMOTIONS)}

    manifest = pd.read_csv(split_dir / "manifest.csv")
    assert len(manifest) == 96
    assert manifest["clip_id"].is_unique
    assert manifest["path"].is_unique
    assert set(manifest["path"]) == {str(p.relative_to(synthetic_dataset))
                                     for p in synthetic_dataset.rglob("*.wav")}
    expected_split = manifest["actor"].map(lambda a: {1: "test", 2: "val"}.get(a, "train"))
    assert (manifest["split"] == expected_split).all()
    assert (manifest.groupby("actor")["split"].nunique() == 1).all()
    for split, part in manifest.groupby("split"):
        assert part["index_in_split"].tolist() == list(range(len(part)))
        y = arrays[f"y_{split}"]
        assert [EMOTIONS[i] for i in y] == part["emotion"].tolist()
    assert set(manifest["gender"]) == {"male", "female"}
    assert (manifest["gender"] == manifest["actor"].map(lambda a: "female" if a % 2 == 0 else "male")).all()
    assert set(manifest["orig_sr"]) == {16000} and set(manifest["channels"]) == {1}
    assert manifest["duration"].tolist() == pytest.approx([1.6] * 96, abs=1e-3)

    # each row of X is the feature of the clip the manifest names
    for split in ("test", "val"):
        part = manifest[manifest["split"] == split]
        for _, row in part.iloc[[0, -1]].iterrows():
            expected = _expected_features(synthetic_dataset / row["path"], cfg)
            np.testing.assert_array_equal(arrays[f"X_{split}"][row["index_in_split"]], expected)

    assert load_config(split_dir / "config.yaml") == cfg
    summary = json.loads((split_dir / "summary.json").read_text())
    assert summary["kept"] == 96 and summary["skipped"] == {}
    assert summary["left_out_not_speech"] == 0
    assert summary["clips_per_split"] == {"train": 64, "val": 16, "test": 16}
    assert summary["protocol"] == "actors"
    assert summary["split_dir"] == str(split_dir)
    assert summary["data_dir"] == str(synthetic_dataset.resolve())
    assert result.summary["kept"] == 96

    info = json.loads((split_dir / "split.json").read_text())
    assert info["protocol"] == "actors" and info["leaky"] is False and info["warning"] == ""
    assert info["actors"] == {"train": [3, 4, 5, 6], "val": [2], "test": [1]}
    assert info["x_shape"] == [32, 63]
    assert info["features"]["n_mels"] == 32

    pngs = sorted((project_root / "spectrograms").rglob("*.png"))
    assert len(pngs) == 96
    assert {p.relative_to(project_root / "spectrograms").as_posix() for p in pngs} == {
        f"{e}/{c}.png" for e, c in zip(manifest["emotion"], manifest["clip_id"])}
    with Image.open(pngs[0]) as image:
        assert image.size == (63, 32)
    meta = pd.read_csv(project_root / "spectrograms" / "metadata.csv")
    assert len(meta) == 96 and meta["clip_id"].tolist() == manifest["clip_id"].tolist()
    assert (meta["split"] == manifest["split"]).all()

    assert (project_root / "splits" / "LATEST").read_text().strip() == str(split_dir)
    assert latest_split_dir() == split_dir
    assert len(result.metadata) == 96 and result.skipped == []
    assert list(result.metadata["clip_id"]) == list(manifest["clip_id"])

    err = capsys.readouterr().err
    assert f"prepare: 96 clips kept from {synthetic_dataset.resolve()}" in err
    assert "split actors-test1: train 64, val 16, test 16" in err
    assert "WARNING" not in err


def test_latest_split_dir_before_prepare_raises():
    with pytest.raises(FileNotFoundError, match="emotion-cnn prepare"):
        latest_split_dir()


def test_prepare_custom_out_dir_and_emobox_default(tmp_path, rng, project_root):
    root = _small_dataset(tmp_path / "ds", rng, actors=(1, 2, 3, 4, 11))
    cfg = small_config(root, split={"protocol": "emobox", "fold": 1})
    out = tmp_path / "my-split"
    result = prepare(cfg, progress=False, out_dir=out)
    assert result.split_dir == out
    assert latest_split_dir() == out
    info = json.loads((out / "split.json").read_text())
    assert info["actors"] == {"train": [2], "val": [3, 4], "test": [1, 11]}
    assert not (project_root / "splits" / "emobox-fold1").exists()


def test_prepare_missing_dataset_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="emotion-cnn fetch"):
        prepare(small_config(tmp_path / "absent"), progress=False)


def test_prepare_without_usable_clips_raises(tmp_path):
    root = tmp_path / "ds"
    (root / "Actor_01").mkdir(parents=True)
    (root / "Actor_01" / "notes.txt").write_text("nothing")
    with pytest.raises(RuntimeError, match="no usable RAVDESS speech clips"):
        prepare(small_config(root), progress=False)


# --------------------------------------------------------------------------- bad inputs


def test_prepare_reports_bad_inputs_and_goes_on(tmp_path, rng, project_root, capsys):
    root = _small_dataset(tmp_path / "ds", rng)
    signal = synth_signal(rng, emotion=3, sr=16000, seconds=0.5, silence=0.1)
    bad = {
        "Actor_01/03-01-05-01-01-01.wav": data.BAD_NAME,
        "Actor_01/03-01-09-01-01-01-01.wav": data.UNKNOWN_CODE,
        "Actor_02/03-01-05-01-01-01-01.wav": data.ACTOR_MISMATCH,
        "Actor_03/03-01-06-01-01-01-03.wav": data.EMPTY_FILE,
        "Actor_03/03-01-07-01-01-01-03.wav": data.UNDECODABLE,
        "Actor_03/03-01-08-01-01-01-03.wav": data.SILENT,
        "Actor_03/03-01-08-02-01-01-03.wav": data.SILENT,  # not zero, but below the silence peak
        "Actor_03/03-01-08-02-02-01-03.wav": data.TOO_SHORT,
    }
    for rel in list(bad)[:3]:
        write_clip(root / rel, signal, sr=16000)
    (root / "Actor_03" / "03-01-06-01-01-01-03.wav").write_bytes(b"")
    (root / "Actor_03" / "03-01-07-01-01-01-03.wav").write_bytes(rng.bytes(3000))
    write_clip(root / "Actor_03" / "03-01-08-01-01-01-03.wav", np.zeros(8000), sr=16000)
    write_clip(root / "Actor_03" / "03-01-08-02-01-01-03.wav", signal / np.abs(signal).max() * 5e-4, sr=16000)
    write_clip(root / "Actor_03" / "03-01-08-02-02-01-03.wav", signal[:4000], sr=16000)
    write_clip(root / "Actor_03" / "03-02-05-01-01-01-03.wav", signal, sr=16000)  # song
    (root / "Actor_03" / ".DS_Store").write_bytes(b"junk")
    (root / "readme.txt").write_text("hello")

    result = prepare(small_config(root), progress=False)

    got = {p.path.relative_to(root).as_posix(): p.reason for p in result.skipped}
    assert got == bad
    assert len(result.metadata) == 12
    assert set(result.metadata["path"]) == {p.relative_to(root).as_posix()
                                            for p in root.rglob("*.wav") if p.name[3:5] == "01"
                                            and p.relative_to(root).as_posix() not in bad}
    summary = json.loads((result.split_dir / "summary.json").read_text())
    assert summary["kept"] == 12
    assert summary["left_out_not_speech"] == 1
    assert summary["skipped"] == {data.ACTOR_MISMATCH: 1, data.BAD_NAME: 1, data.EMPTY_FILE: 1,
                                  data.SILENT: 2, data.UNDECODABLE: 1, data.UNKNOWN_CODE: 1,
                                  data.TOO_SHORT: 1}
    skipped_csv = pd.read_csv(result.split_dir / "skipped.csv")
    assert dict(zip(skipped_csv["path"], skipped_csv["reason"])) == bad
    assert skipped_csv["detail"].notna().all()
    assert _load_split(result.split_dir)["X_train"].shape == (4, 32, 63)

    err = capsys.readouterr().err
    for rel, reason in bad.items():
        assert f"skipped {rel}: {reason} (" in err, rel
    assert "left out 1 song/video files" in err
    for reason in set(bad.values()):
        assert f"skipped {list(bad.values()).count(reason)}: {reason}" in err
    # no picture for a file that was not kept
    assert len(list((project_root / "spectrograms").rglob("*.png"))) == 12
    assert not (project_root / "spectrograms" / "surprised").exists()


# --------------------------------------------------------------------------- duplicates


def _kaggle_layout(root: Path, rng) -> Path:
    """``root/Actor_XX/...`` and an identical ``root/audio_speech_actors_01-24/Actor_XX/...``."""
    _small_dataset(root, rng)
    shutil.copytree(root, root / "audio_speech_actors_01-24",
                    ignore=shutil.ignore_patterns("audio_speech*"))
    return root


def test_prepare_doubled_layout_keeps_one_copy(tmp_path, rng, capsys):
    root = _kaggle_layout(tmp_path / "kaggle", rng)
    assert len(list(root.rglob("*.wav"))) == 24
    result = prepare(small_config(root), progress=False)
    assert len(result.metadata) == 12
    assert result.metadata["clip_id"].is_unique
    assert all(not p.startswith("audio_speech") for p in result.metadata["path"])
    dups = [s for s in result.skipped if s.reason == data.DUPLICATE]
    assert len(dups) == len(result.skipped) == 12
    for s in dups:
        rel = s.path.relative_to(root)
        assert rel.parts[0] == "audio_speech_actors_01-24"
        twin = Path(*rel.parts[1:]).as_posix()
        assert s.detail == f"same samples as {twin}"
    assert result.summary["skipped"] == {data.DUPLICATE: 12}
    err = capsys.readouterr().err
    assert ("skipped audio_speech_actors_01-24/Actor_01/03-01-01-01-01-01-01.wav: duplicate "
            "recording (same samples as Actor_01/03-01-01-01-01-01-01.wav)") in err
    assert sum(len(v) for v in _load_split(result.split_dir).values() if v.ndim == 1) == 12


def test_prepare_identical_samples_under_two_names(tmp_path, rng, project_root, monkeypatch):
    root = _small_dataset(tmp_path / "ds", rng)
    shutil.copy(root / "Actor_03" / "03-01-02-01-01-01-03.wav",
                root / "Actor_03" / "03-01-02-01-01-02-03.wav")
    result = prepare(small_config(root), progress=False)
    assert len(result.metadata) == 12
    [dup] = result.skipped
    assert dup.reason == data.DUPLICATE
    assert dup.path == root / "Actor_03" / "03-01-02-01-01-02-03.wav"
    assert dup.detail == "same samples as Actor_03/03-01-02-01-01-01-03.wav"
    assert "03-01-02-01-01-01-03" in set(result.metadata["clip_id"])
    pngs = {p.name for p in (project_root / "spectrograms" / "calm").iterdir()}
    assert "03-01-02-01-01-02-03.png" not in pngs  # no picture for the dropped copy
    assert "03-01-02-01-01-01-03.png" in pngs

    Spy(monkeypatch, fail=True)  # a second run does no work: the dropped copy is not redrawn
    drawn = []
    monkeypatch.setattr(features, "save_png", lambda logmel, path, **kw: drawn.append(path))
    again = prepare(small_config(root), progress=False)
    assert [s.path for s in again.skipped] == [dup.path]
    assert drawn == []
    assert "03-01-02-01-01-02-03.png" not in {p.name for p in (project_root / "spectrograms" / "calm").iterdir()}


def test_prepare_keep_duplicates_keeps_all(tmp_path, rng, project_root, capsys):
    root = _kaggle_layout(tmp_path / "kaggle", rng)
    result = prepare(small_config(root, keep_duplicates=True), progress=False)
    assert result.split_dir == project_root / "splits" / "actors-test1-with-duplicates"
    assert len(result.metadata) == 24 and result.skipped == []
    assert result.metadata["pcm_sha256"].nunique() == 12
    arrays = _load_split(result.split_dir)
    assert arrays["X_train"].shape == (8, 32, 63)
    info = json.loads((result.split_dir / "split.json").read_text())
    assert info["leaky"] is True
    assert "duplicate recordings kept" in capsys.readouterr().err


# --------------------------------------------------------------------------- formats


def test_prepare_stereo_and_odd_sample_rates(tmp_path, rng):
    root = tmp_path / "ds"
    clips = {  # actor: (sr, channels)
        1: (22050, 1), 2: (8000, 1), 3: (16000, 2), 4: (44100, 2),
    }
    for actor, (sr, channels) in clips.items():
        for emotion in (1, 5):
            write_clip(root / f"Actor_{actor:02d}" / f"{ravdess_name(emotion=emotion, actor=actor)}.flac",
                       synth_signal(rng, emotion=emotion, sr=sr, seconds=0.5, silence=0.1,
                                    channels=channels), sr=sr)
    cfg = small_config(root)
    result = prepare(cfg, progress=False)
    assert result.skipped == []
    meta = result.metadata.set_index("actor")
    for actor, (sr, channels) in clips.items():
        assert set(meta.loc[actor, "orig_sr"]) == {sr}
        assert set(meta.loc[actor, "channels"]) == {channels}
        assert meta.loc[actor, "duration"].tolist() == pytest.approx([0.7, 0.7], abs=1e-3)
    arrays = _load_split(result.split_dir)
    assert arrays["X_test"].shape == (2, 32, 63)
    manifest = pd.read_csv(result.split_dir / "manifest.csv")
    for _, row in manifest.iterrows():
        X = arrays[f"X_{row['split']}"][row["index_in_split"]]
        np.testing.assert_array_equal(X, _expected_features(root / row["path"], cfg))
        assert X.max() == 0.0


# --------------------------------------------------------------------------- cache


def test_second_prepare_does_no_work(tmp_path, rng, monkeypatch, project_root):
    root = _small_dataset(tmp_path / "ds", rng)
    cfg = small_config(root)
    first = prepare(cfg, progress=False)
    before = _load_split(first.split_dir)
    png = project_root / "spectrograms" / "neutral" / "03-01-01-01-01-01-01.png"
    png_stamp = _stamp(png)
    Spy(monkeypatch, fail=True)
    second = prepare(cfg, progress=False)
    _assert_same_split(before, _load_split(second.split_dir))
    pd.testing.assert_frame_equal(first.metadata, second.metadata)
    assert _stamp(png) == png_stamp  # pictures not redrawn


def test_pictures_of_clips_gone_from_the_dataset_are_deleted(tmp_path, rng, project_root):
    root = _small_dataset(tmp_path / "ds", rng)
    prepare(small_config(root), progress=False)
    gone = project_root / "spectrograms" / "neutral" / "03-01-01-01-01-01-01.png"
    assert gone.exists()
    (root / "Actor_01" / "03-01-01-01-01-01-01.wav").unlink()
    (project_root / "spectrograms" / "notes.png").write_bytes(b"not ours")
    second = prepare(small_config(root), progress=False)
    assert not gone.exists()
    pngs = sorted(p.stem for p in (project_root / "spectrograms").glob("*/*.png"))
    assert pngs == sorted(second.metadata["clip_id"])
    assert (project_root / "spectrograms" / "notes.png").exists()


def test_changing_a_feature_setting_recomputes(tmp_path, rng, monkeypatch):
    root = _small_dataset(tmp_path / "ds", rng)
    prepare(small_config(root), progress=False)
    spy = Spy(monkeypatch)
    cfg = small_config(root, features={"n_mels": 24})
    result = prepare(cfg, progress=False)
    assert spy.featurised == 12
    arrays = _load_split(result.split_dir)
    assert arrays["X_train"].shape == (4, 24, 63)
    row = result.metadata.iloc[0]
    np.testing.assert_array_equal(arrays["X_test"][0], _expected_features(root / row["path"], cfg))
    # and back: those features are cached, nothing decoded again
    spy2 = Spy(monkeypatch, fail=True)
    assert _load_split(prepare(small_config(root), progress=False).split_dir)["X_train"].shape == (4, 32, 63)
    assert spy2.featurised == 0


def test_force_recomputes(tmp_path, rng, monkeypatch):
    root = _small_dataset(tmp_path / "ds", rng)
    cfg = small_config(root)
    first = prepare(cfg, progress=False)
    before = _load_split(first.split_dir)
    x_train = first.split_dir / "X_train.npy"
    stamp = _stamp(x_train)
    spy = Spy(monkeypatch)
    prepare(cfg, progress=False, force=True)
    assert len(spy.loaded) == 12 and spy.featurised == 12
    assert _stamp(x_train) != stamp  # split rewritten
    _assert_same_split(before, _load_split(first.split_dir))


def test_touched_file_is_decoded_again_alone(tmp_path, rng, monkeypatch):
    root = _small_dataset(tmp_path / "ds", rng)
    cfg = small_config(root)
    first = prepare(cfg, progress=False)
    before = _load_split(first.split_dir)
    touched = root / "Actor_03" / "03-01-02-01-01-01-03.wav"
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    spy = Spy(monkeypatch)
    second = prepare(cfg, progress=False)
    assert spy.loaded == [touched]
    assert spy.featurised == 0  # same samples: the cached features serve
    _assert_same_split(before, _load_split(second.split_dir))
    # the index now knows the new time: a third run decodes nothing
    spy3 = Spy(monkeypatch, fail=True)
    prepare(cfg, progress=False)
    assert spy3.loaded == []


def test_changed_samples_are_featurised_again(tmp_path, rng, monkeypatch):
    root = _small_dataset(tmp_path / "ds", rng)
    cfg = small_config(root)
    prepare(cfg, progress=False)
    changed = root / "Actor_01" / "03-01-03-01-01-01-01.wav"
    write_clip(changed, synth_signal(rng, emotion=8, sr=16000, seconds=0.9, silence=0.1), sr=16000)
    spy = Spy(monkeypatch)
    result = prepare(cfg, progress=False)
    assert spy.loaded == [changed] and spy.featurised == 1
    manifest = pd.read_csv(result.split_dir / "manifest.csv").set_index("clip_id")
    row = manifest.loc["03-01-03-01-01-01-01"]
    np.testing.assert_array_equal(np.load(result.split_dir / "X_test.npy")[row["index_in_split"]],
                                  _expected_features(changed, cfg))
    assert row["duration"] == pytest.approx(1.1)


def test_split_not_rewritten_when_nothing_changed(tmp_path, rng):
    root = _small_dataset(tmp_path / "ds", rng)
    cfg = small_config(root)
    result = prepare(cfg, progress=False)
    stamps = {name: _stamp(result.split_dir / name) for name in SPLIT_FILES}
    prepare(cfg, progress=False)
    assert {name: _stamp(result.split_dir / name) for name in SPLIT_FILES} == stamps


def test_split_rewritten_when_protocol_or_seed_changes(tmp_path, rng, project_root):
    root = _small_dataset(tmp_path / "ds", rng, actors=(1, 2, 3, 4))
    result = prepare(small_config(root), progress=False)
    x_train = result.split_dir / "X_train.npy"
    stamp = _stamp(x_train)

    # other validation actors: same folder (actors-test1), new content
    moved = prepare(small_config(root, split={"val_actors": [3]}), progress=False)
    assert moved.split_dir == result.split_dir
    assert _stamp(x_train) != stamp
    assert json.loads((moved.split_dir / "split.json").read_text())["actors"] == {
        "train": [2, 4], "val": [3], "test": [1]}
    assert np.load(x_train).shape == (8, 32, 63)

    # a new seed is written even when it does not move any clip of this protocol
    stamp = _stamp(x_train)
    prepare(small_config(root, split={"val_actors": [3]}, seed=7), progress=False)
    assert _stamp(x_train) != stamp
    assert yaml.safe_load((moved.split_dir / "config.yaml").read_text())["seed"] == 7

    # random protocol: a folder per seed, different assignments
    a = prepare(small_config(root, split={"protocol": "random", "test_fraction": 0.25,
                                          "val_fraction": 0.25}, seed=1), progress=False)
    b = prepare(small_config(root, split={"protocol": "random", "test_fraction": 0.25,
                                          "val_fraction": 0.25}, seed=2), progress=False)
    assert a.split_dir.name == "random-seed1" and b.split_dir.name == "random-seed2"
    assert (a.metadata["split"] != b.metadata["split"]).any()
    info = json.loads((a.split_dir / "split.json").read_text())
    assert info["leaky"] is True and "leaky" in info["warning"]
    assert latest_split_dir() == b.split_dir


def test_relabelled_file_rewrites_the_split(tmp_path, rng):
    root = _small_dataset(tmp_path / "ds", rng)
    cfg = small_config(root)
    prepare(cfg, progress=False)
    old = root / "Actor_03" / "03-01-04-01-01-01-03.wav"  # sad, the last clip of actor 3
    old.rename(old.with_name("03-01-05-01-01-01-03.wav"))  # really angry
    result = prepare(cfg, progress=False)
    assert result.metadata["emotion"].tolist()[-1] == "angry"
    assert np.load(result.split_dir / "y_train.npy")[-1] == EMOTIONS.index("angry")


# --------------------------------------------------------------------------- atomic output


def _interrupt_x_test(monkeypatch):
    """Make numpy.save write half of X_test.npy's bytes, then raise KeyboardInterrupt."""
    real_save, real_atomic_save = np.save, prepare_module.atomic_save_npy
    target: list[Path] = []

    def atomic_save_npy(path, array):  # remembers which file numpy.save is writing
        target[:] = [Path(path)]
        return real_atomic_save(path, array)

    def save(file, arr, *args, **kwargs):
        if target and target[0].name == "X_test.npy":
            buffer = io.BytesIO()
            real_save(buffer, arr, *args, **kwargs)
            blob = buffer.getvalue()
            file.write(blob[:len(blob) // 2])
            file.flush()
            raise KeyboardInterrupt
        return real_save(file, arr, *args, **kwargs)

    monkeypatch.setattr(prepare_module, "atomic_save_npy", atomic_save_npy)
    monkeypatch.setattr(np, "save", save)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".tmp")


def test_interrupted_first_write_leaves_no_x_test(tmp_path, rng, monkeypatch, project_root):
    root = _small_dataset(tmp_path / "ds", rng)
    cfg = small_config(root)
    with monkeypatch.context() as patch:
        _interrupt_x_test(patch)
        with pytest.raises(KeyboardInterrupt):
            prepare(cfg, progress=False)
    split_dir = project_root / "splits" / "actors-test1"
    assert not (split_dir / "X_test.npy").exists()
    assert _leftovers(split_dir) == []
    assert not (split_dir / "content-key.json").exists()
    result = prepare(cfg, progress=False)
    arrays = _load_split(result.split_dir)
    assert arrays["X_test"].shape == (4, 32, 63)
    assert _leftovers(split_dir) == []


def test_interrupted_rewrite_keeps_old_x_test(tmp_path, rng, monkeypatch):
    root = _small_dataset(tmp_path / "ds", rng)
    first = prepare(small_config(root), progress=False)
    x_test = first.split_dir / "X_test.npy"
    old_bytes = x_test.read_bytes()
    new_cfg = small_config(root, features={"n_mels": 16})
    with monkeypatch.context() as patch:
        _interrupt_x_test(patch)
        with pytest.raises(KeyboardInterrupt):
            prepare(new_cfg, progress=False)
    assert x_test.read_bytes() == old_bytes
    assert np.load(x_test).shape == (4, 32, 63)
    assert _leftovers(first.split_dir) == []
    result = prepare(new_cfg, progress=False)
    assert np.load(result.split_dir / "X_test.npy").shape == (4, 16, 63)
    assert np.load(result.split_dir / "X_train.npy").shape == (4, 16, 63)


def test_interrupted_rewrite_then_old_settings_give_a_consistent_split(tmp_path, rng, monkeypatch):
    root = _small_dataset(tmp_path / "ds", rng)
    cfg = small_config(root)
    first = prepare(cfg, progress=False)
    with monkeypatch.context() as patch:
        _interrupt_x_test(patch)
        with pytest.raises(KeyboardInterrupt):
            prepare(small_config(root, features={"n_mels": 16}), progress=False)
    result = prepare(cfg, progress=False)
    assert result.split_dir == first.split_dir
    arrays = _load_split(result.split_dir)
    assert arrays["X_test"].shape == (4, 32, 63)
    assert arrays["X_train"].shape == (4, 32, 63)


# --------------------------------------------------------------------------- worker pool


def test_worker_pool_gives_the_same_arrays(synthetic_dataset, tmp_path, monkeypatch):
    one = prepare(small_config(synthetic_dataset, workers=1), progress=False)
    arrays_one = _load_split(one.split_dir)

    monkeypatch.setenv("EMOTION_CNN_ROOT", str(tmp_path / "second-project"))
    warmed = []
    real_warm_up = prepare_module._warm_up
    monkeypatch.setattr(prepare_module, "_warm_up", lambda c: (warmed.append(c), real_warm_up(c)))
    two = prepare(small_config(synthetic_dataset, workers=2), progress=False)
    assert warmed, "the pool path was not taken"
    assert two.split_dir == tmp_path / "second-project" / "splits" / "actors-test1"
    _assert_same_split(arrays_one, _load_split(two.split_dir))
    pd.testing.assert_frame_equal(one.metadata, two.metadata)
    assert len(list((tmp_path / "second-project" / "spectrograms").rglob("*.png"))) == 96


# --------------------------------------------------------------------------- real data


@pytest.mark.real_data
def test_prepare_real_data_four_actors(real_data_dir, shared_cache, monkeypatch, project_root):
    monkeypatch.setenv("EMOTION_CNN_CACHE", str(shared_cache))
    cfg = config_from_dict({"data_dir": str(real_data_dir), "limit_actors": 4, "workers": 2})
    assert cfg.split.protocol == "emobox" and cfg.split.fold == 1
    result = prepare(cfg, progress=False)
    assert result.split_dir == project_root / "splits" / "emobox-fold1"
    meta = result.metadata
    assert len(meta) == 240
    assert meta.groupby("actor").size().to_dict() == {1: 60, 2: 60, 3: 60, 11: 60}
    assert (meta.groupby("actor")["split"].nunique() == 1).all()
    assert meta.groupby("split")["actor"].unique().map(sorted).to_dict() == {
        "test": [1, 11], "train": [2], "val": [3]}
    assert result.skipped == []
    assert meta.loc[meta["clip_id"] == "03-01-02-01-01-02-01", "channels"].item() == 2
    assert set(meta["orig_sr"]) == {48000}
    manifest = pd.read_csv(real_data_dir / "MANIFEST.csv")
    expected = dict(zip(manifest["path"], manifest["pcm_sha256"]))
    assert all(expected[p] == s for p, s in zip(meta["path"], meta["pcm_sha256"]))
    arrays = _load_split(result.split_dir)
    assert arrays["X_train"].shape == (60, 64, 151)
    assert arrays["X_val"].shape == (60, 64, 151)
    assert arrays["X_test"].shape == (120, 64, 151)
    assert np.bincount(arrays["y_test"]).tolist() == [8, 16, 16, 16, 16, 16, 16, 16]
    assert arrays["X_test"].max() == 0.0 and arrays["X_test"].min() >= -80.0


@pytest.mark.real_data
def test_prepare_real_kaggle_doubled_layout(real_data_dir, shared_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("EMOTION_CNN_CACHE", str(shared_cache))
    root = tmp_path / "kaggle"
    for actor in (1, 7):
        folder = f"Actor_{actor:02d}"
        for target in (root / folder, root / "audio_speech_actors_01-24" / folder):
            target.mkdir(parents=True)
            for flac in sorted((real_data_dir / folder).glob("*.flac")):
                os.symlink(flac, target / flac.name)
    assert len(list(root.rglob("*.flac"))) == 240
    cfg = config_from_dict({"data_dir": str(root), "workers": 2,
                            "split": {"protocol": "random"}})
    result = prepare(cfg, progress=False)
    assert len(result.metadata) == 119
    dups = [s for s in result.skipped if s.reason == data.DUPLICATE]
    assert len(dups) == len(result.skipped) == 121
    assert result.summary["skipped"] == {data.DUPLICATE: 121}
    assert all(not p.startswith("audio_speech") for p in result.metadata["path"])
    pair = {s.path.relative_to(root).as_posix(): s.detail for s in dups
            if s.path.name == "03-01-03-01-02-02-07.flac"}
    assert pair == {
        "Actor_07/03-01-03-01-02-02-07.flac": "same samples as Actor_07/03-01-03-01-02-01-07.flac",
        "audio_speech_actors_01-24/Actor_07/03-01-03-01-02-02-07.flac":
            "same samples as Actor_07/03-01-03-01-02-01-07.flac",
    }
    assert result.metadata.groupby("actor").size().to_dict() == {1: 60, 7: 59}
    assert paths().cache == shared_cache
