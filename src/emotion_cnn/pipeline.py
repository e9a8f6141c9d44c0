"""The main job: get the data if needed, then execute both notebooks headless.

Executed copies of the notebooks go to ``runs/notebooks/``; the model to
``emotion_cnn_model.keras``; the run folder to ``runs/``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from emotion_cnn.config import paths

NOTEBOOKS = ("01_audio_to_spectrogram.ipynb", "02_cnn_model_training.ipynb")


def ensure_dataset() -> Path:
    """``$RAVDESS_DIR`` if set, else ``dataset/`` (downloaded from Zenodo if empty)."""
    if env := os.environ.get("RAVDESS_DIR"):
        return Path(env)
    from emotion_cnn.fetch import fetch

    return fetch(paths().dataset)


def execute_notebook(name: str, parameters: dict, *, out_dir: Path) -> Path:
    import papermill

    source = paths().root / name
    target = out_dir / name
    print(f"running {name} -> {target}", file=sys.stderr)
    papermill.execute_notebook(str(source), str(target), parameters=parameters,
                               cwd=str(paths().root), kernel_name="python3", progress_bar=True)
    return target


def run_pipeline(*, epochs: int | None = None, limit_actors: int = 0, fold: int = 1) -> None:
    started = time.perf_counter()
    data_dir = ensure_dataset()
    out_dir = paths().runs / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    execute_notebook(NOTEBOOKS[0], {"data_dir": str(data_dir), "protocol": "emobox", "fold": fold,
                                    "limit_actors": limit_actors}, out_dir=out_dir)
    execute_notebook(NOTEBOOKS[1], {"epochs": epochs or 0}, out_dir=out_dir)
    minutes = (time.perf_counter() - started) / 60
    print(f"done in {minutes:.1f} min: {paths().model}, executed notebooks in {out_dir}", file=sys.stderr)
