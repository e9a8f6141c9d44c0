"""Both notebooks executed headless with papermill, as the main job runs them."""

import json

import pytest
from conftest import make_dataset

pytestmark = pytest.mark.slow


def _execute(name, out_dir, parameters):
    import papermill

    papermill.execute_notebook(str(_source(name)), str(out_dir / name), parameters=parameters,
                               kernel_name="python3", progress_bar=False)
    return json.loads((out_dir / name).read_text())


def _source(name):
    from pathlib import Path

    return Path(__file__).resolve().parents[1] / name


def _outputs(nb):
    return [o for cell in nb["cells"] if cell["cell_type"] == "code" for o in cell.get("outputs", [])]


def test_notebooks_on_a_tiny_synthetic_split(tmp_path, rng, project_root):
    data = make_dataset(tmp_path / "ravdess", rng, actors=range(1, 7), repetitions=(1,))
    nb1 = _execute("01_audio_to_spectrogram.ipynb", tmp_path,
                   {"data_dir": str(data), "protocol": "emobox", "fold": 1, "limit_actors": 0,
                    "config_file": None})
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for o in _outputs(nb1)), "no inline figure in notebook 01"
    nb2 = _execute("02_cnn_model_training.ipynb", tmp_path, {"epochs": 1})
    text = json.dumps(_outputs(nb2))
    assert "reloads with identical predictions: True" in text
    assert sum(o.get("output_type") == "display_data" for o in _outputs(nb2)) >= 4
    assert (project_root / "emotion_cnn_model.keras").is_file()


@pytest.mark.real_data
def test_notebook_01_on_real_data(real_data_dir, tmp_path, shared_cache, monkeypatch):
    monkeypatch.setenv("EMOTION_CNN_CACHE", str(shared_cache))
    nb1 = _execute("01_audio_to_spectrogram.ipynb", tmp_path,
                   {"data_dir": str(real_data_dir), "protocol": "emobox", "fold": 1, "limit_actors": 3})
    text = json.dumps(_outputs(nb1))
    assert "emobox-fold1" in text
