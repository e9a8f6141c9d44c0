import json

import numpy as np
import pytest
from conftest import synth_signal, write_clip

from emotion_cnn.cli import main
from emotion_cnn.features import AudioError
from emotion_cnn.predict import load_classifier, predict_file


@pytest.fixture
def clips(tmp_path, rng):
    """Good clips in several formats and rates, and bad files."""
    d = tmp_path / "clips"
    good = {
        "angry_48k.wav": (synth_signal(rng, emotion=5, sr=48000, seconds=1.0), 48000),
        "angry_8k.flac": (synth_signal(rng, emotion=5, sr=8000, seconds=1.0), 8000),
        "angry_stereo.wav": (synth_signal(rng, emotion=5, sr=22050, seconds=1.0, channels=2), 22050),
        "angry_long.wav": (synth_signal(rng, emotion=5, sr=16000, seconds=3.6), 16000),
    }
    for name, (signal, sr) in good.items():
        write_clip(d / name, signal, sr=sr)
    (d / "notes.wav").write_text("this is not audio")
    (d / "empty.wav").write_bytes(b"")
    write_clip(d / "silent.wav", np.zeros((16000, 1), np.float32), sr=16000)
    write_clip(d / "short.wav", synth_signal(rng, emotion=5, sr=16000, seconds=0.2, silence=0.0), sr=16000)
    return d


def test_predicts_the_tone_class_in_any_format(tiny_model, clips):
    model_path, _ = tiny_model
    classifier = load_classifier(model_path)
    for name in ("angry_48k.wav", "angry_8k.flac", "angry_stereo.wav", "angry_long.wav"):
        pred = predict_file(clips / name, classifier=classifier)
        assert pred.label == "angry", (name, pred.top())
        assert abs(sum(pred.probabilities.values()) - 1) < 1e-4
        assert list(pred.probabilities) == classifier.labels


def test_long_clip_is_windowed(tiny_model, clips):
    pred = predict_file(clips / "angry_long.wav", model_path=tiny_model[0])
    assert pred.windows >= 5  # 3.6 s of tone, 1 s windows, half overlap
    assert len(pred.window_labels) == pred.windows
    np.testing.assert_allclose(pred.window_probabilities.mean(axis=0),
                               list(pred.probabilities.values()), atol=1e-6)


@pytest.mark.parametrize("name, message", [
    ("notes.wav", "not readable audio"), ("empty.wav", "empty file"),
    ("silent.wav", "silent"), ("short.wav", "too short"), ("missing.wav", "no such file")])
def test_bad_input_names_file_and_problem(tiny_model, clips, name, message):
    with pytest.raises(AudioError, match=message) as err:
        predict_file(clips / name, model_path=tiny_model[0])
    assert name in str(err.value)


def test_cli_json_and_exit_codes(tiny_model, clips, capsys, tmp_path):
    model = str(tiny_model[0])
    assert main(["predict", str(clips / "angry_48k.wav"), "--model", model, "--json"]) == 0
    record = json.loads(capsys.readouterr().out.strip())
    assert set(record) == {"path", "label", "probabilities", "windows", "window_labels", "duration"}
    assert record["label"] == "angry" and len(record["probabilities"]) == 8

    csv = tmp_path / "out.csv"
    code = main(["predict", str(clips), "--model", model, "--csv", str(csv)])
    captured = capsys.readouterr()
    assert code == 1  # some files in the folder are bad
    assert "notes.wav" in captured.err and "4 of 8 files failed" in captured.err
    assert "angry" in captured.out
    import pandas as pd

    table = pd.read_csv(csv)
    assert len(table) == 4 and set(table["label"]) == {"angry"}



def test_a_folder_gets_a_csv_by_default(tiny_model, clips, tmp_path, monkeypatch, capsys):
    import pandas as pd

    monkeypatch.chdir(tmp_path)
    main(["predict", str(clips), "--model", str(tiny_model[0])])
    assert "wrote emotion_predictions.csv" in capsys.readouterr().err
    table = pd.read_csv(tmp_path / "emotion_predictions.csv")
    assert len(table) == 4 and set(table["label"]) == {"angry"}
