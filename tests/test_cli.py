import json
from pathlib import Path

import pytest
from conftest import small_config

from emotion_cnn.cli import main
from emotion_cnn.config import Config


def _write_config(tmp_path, data_dir, **overrides) -> str:
    import yaml

    cfg = small_config(data_dir, **overrides).to_dict()
    path = tmp_path / "quick.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_prepare_train_evaluate_from_the_command_line(synthetic_dataset, project_root, tmp_path, capsys):
    config = _write_config(tmp_path, synthetic_dataset, train={"ensemble": Config().train.ensemble,
                                                               "temporal_members": Config().train.temporal_members})
    assert main(["prepare", "--config", config, "--test-actors", "3", "--val-actors", "4", "--quiet"]) == 0
    split_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert split_dir.name == "actors-test3"  # actor lists imply the actors protocol
    info = json.loads((split_dir / "split.json").read_text())
    assert info["actors"]["test"] == [3] and info["actors"]["val"] == [4]

    assert main(["train", "--config", config, "--epochs", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "test WA" in out and (project_root / "emotion_cnn_model.keras").is_file()
    run_dir = Path(out.split("run ", 1)[1].split()[0])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    default_members = Config().train.ensemble + Config().train.temporal_members
    assert Config().train.temporal_members == 1  # round 41: three 2-D members and one temporal
    assert metrics["models"] == default_members and metrics["epochs_run"] == default_members  # x 1 epoch
    assert metrics["split"] == str(split_dir)

    assert main(["evaluate", str(run_dir)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["wa"] == pytest.approx(metrics["wa"])


def test_sidecar_takes_the_features_the_split_was_made_with(synthetic_dataset, project_root, tmp_path):
    config = _write_config(tmp_path, synthetic_dataset)
    assert main(["prepare", "--config", config, "--set", "features.n_mels=24", "--quiet"]) == 0
    assert main(["train", "--config", config, "--epochs", "1", "--quiet"]) == 0  # config says 32
    info = json.loads((project_root / "emotion_cnn_model.json").read_text())
    assert info["features"]["n_mels"] == 24 and info["input_shape"][0] == 24

    from emotion_cnn.predict import load_classifier

    assert load_classifier().features.n_mels == 24


def test_bad_arguments_get_a_message_not_a_traceback(synthetic_dataset, tmp_path, capsys):
    config = _write_config(tmp_path, synthetic_dataset)
    assert main(["prepare", "--config", config, "--set", "features.n_mels"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["prepare", "--config", config, "--set", "train.epochs=ten"]) == 2
    assert "expected int" in capsys.readouterr().err
    assert main(["prepare", "--config", config, "--protocol", "emobox", "--limit-actors", "2"]) == 2
    assert "at least 3 actors" in capsys.readouterr().err
    assert main(["prepare", "--config", config, "--test-actors", "30", "--val-actors", "4"]) == 2
    assert "test split would be empty" in capsys.readouterr().err
    assert main(["train", "--split", str(tmp_path / "nowhere")]) == 2
    assert "emotion-cnn prepare" in capsys.readouterr().err


def test_fetch_from_a_local_folder_into_ravdess_dir(synthetic_dataset, tmp_path, monkeypatch, capsys):
    target = tmp_path / "copy"
    monkeypatch.setenv("RAVDESS_DIR", str(target))
    assert main(["fetch", "--from", str(synthetic_dataset)]) == 0
    assert len(list(target.rglob("*.wav"))) == 96
    assert "now holds 96 audio files" in capsys.readouterr().out


def test_cv_from_exported_features_needs_no_audio(tmp_path, rng, project_root, monkeypatch, capsys):
    import dataclasses
    import shutil

    import numpy as np
    from conftest import make_dataset

    from emotion_cnn.cv import load_features

    data = make_dataset(tmp_path / "ravdess", rng, actors=range(1, 25), repetitions=(1,), seconds=1.0)
    config = _write_config(tmp_path, data, split={"protocol": "emobox"})
    from emotion_cnn.config import load_config

    cfg = load_config(config)
    X, meta = load_features(cfg)
    np.savez(tmp_path / "f.npz", X=X.astype("float16"), features=json.dumps(dataclasses.asdict(cfg.features)),
             selection=json.dumps({"keep_duplicates": False, "limit_actors": 0}))
    meta.to_csv(tmp_path / "f.csv", index=False)
    shutil.rmtree(data)  # as on a machine without the audio
    monkeypatch.setenv("RAVDESS_DIR", str(tmp_path / "nowhere"))
    assert main(["cv", "--config", config, "--features", str(tmp_path / "f.npz"), "--folds", "2",
                 "--epochs", "1", "--out", str(tmp_path / "report")]) == 0
    saved = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert [r["actors"] for r in saved["folds"]] == [[4, 10, 12, 14]] and sum(map(sum, saved["pooled_confusion"])) == 32
    assert saved["features_file"] == str(tmp_path / "f.npz")
    assert "not the audio" in (tmp_path / "report" / "results.md").read_text()
    capsys.readouterr()
    refused = {("--set", "features.n_mels=24"): "f.npz holds features made with",
               ("--set", "limit_actors=3"): "f.npz holds the clips of",
               ("--data", str(tmp_path)): "--data cannot choose others"}
    for flags, message in refused.items():
        assert main(["cv", "--config", config, "--features", str(tmp_path / "f.npz"), *flags, "--folds", "2",
                     "--epochs", "1"]) == 2
        assert message in capsys.readouterr().err
    np.savez(tmp_path / "other.npz", Y=X[:2])
    meta.to_csv(tmp_path / "other.csv", index=False)
    assert main(["cv", "--config", config, "--features", str(tmp_path / "other.npz"), "--folds", "2"]) == 2
    assert "other.npz: no features array 'X'" in capsys.readouterr().err
