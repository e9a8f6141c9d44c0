"""Try the classifier on your own voice: ``emotion-cnn app`` (or ``make app``).

Upload a wav/flac/mp3/ogg file or record one; the page plays it back, shows the waveform and
the log-mel spectrogram the model sees, the predicted emotion with all probabilities, and
for clips longer than the model's window a timeline of each window's top emotion.

The model path comes from ``--model`` after ``--`` on the streamlit command line, else
``$EMOTION_CNN_MODEL``, else the project's ``emotion_cnn_model.keras``.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotion_cnn import features
from emotion_cnn.predict import (
    AUDIO_TYPES,
    Classifier,
    Prediction,
    load_classifier,
    predict_signal,
    prepare_signal,
)

MAX_BYTES = 20 * 1024 * 1024
MAX_SECONDS = 60.0
CAVEAT = ("Trained on RAVDESS: 24 professional actors speaking two fixed English sentences "
          "with acted emotions, in North-American English. Results on other voices, languages, "
          "recording conditions or spontaneous speech are less certain.")


@dataclass
class Analysis:
    name: str
    signal: np.ndarray  # mono at the model's rate, as recorded (not trimmed)
    sr: int
    features: np.ndarray  # (n_mels, n_frames) of the first window: what the model sees
    prediction: Prediction


def analyse(data: bytes, name: str, classifier: Classifier) -> Analysis:
    """Check and classify an uploaded or recorded clip.

    Raises
    ------
    features.AudioError
        Empty, over 20 MB, not decodable audio, over 60 s, shorter than 0.5 s, or silent;
        the message is meant for the page.
    """
    if not data:
        raise features.AudioError(f"{name}: the file is empty")
    if len(data) > MAX_BYTES:
        raise features.AudioError(f"{name}: {len(data) / 2**20:.1f} MB is over the 20 MB limit")
    try:
        samples, sr = features.decode(io.BytesIO(data))
    except features.AudioError:
        raise features.AudioError(f"{name}: not an audio file this app can read "
                                  f"(wav, flac, mp3 or ogg)") from None
    seconds = len(samples) / sr
    if seconds > MAX_SECONDS:
        raise features.AudioError(f"{name}: {seconds:.0f} s is over the {MAX_SECONDS:.0f} s limit")
    cfg = classifier.features
    y = prepare_signal(samples, sr, name=name, cfg=cfg)
    prediction = predict_signal(y, classifier, name=name, duration=seconds)
    return Analysis(name, y, cfg.sr, prediction.window_features[0], prediction)


def model_summary(classifier: Classifier) -> list[str]:
    """Lines for the sidebar: which model, how it was trained, how well it does."""
    info = classifier.info
    lines = [f"**Model:** `{classifier.path}`"]
    if info.get("protocol"):
        lines.append(f"**Trained with:** {info['protocol']} protocol ({info.get('split', '')}), seed {info.get('seed')}")
    cv = info.get("cv_metrics") or {}
    if cv.get("mean"):
        lines.append(f"**Cross-validated ({cv.get('folds')} folds, unseen speakers):** "
                     f"UA {cv['mean']['ua']:.1f} %, WA {cv['mean']['wa']:.1f} %")
    if info.get("test_metrics"):
        m = info["test_metrics"]
        lines.append(f"**Held-out test actors {info.get('test_actors')}:** UA {100 * m['ua']:.1f} %, "
                     f"WA {100 * m['wa']:.1f} %")
    if not info:
        lines.append("No metadata file beside the model: default labels and feature settings assumed.")
    return lines


def _waveform_figure(analysis: Analysis):
    import matplotlib.pyplot as plt

    wave, ax = plt.subplots(figsize=(8, 2))
    t = np.arange(len(analysis.signal)) / analysis.sr
    ax.plot(t, analysis.signal, linewidth=0.5)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("amplitude")
    ax.set_title("Waveform")
    wave.tight_layout()
    return wave


def render(analysis: Analysis, classifier: Classifier) -> None:
    """The result section of the page."""
    import pandas as pd
    import streamlit as st

    from emotion_cnn import plots

    pred = analysis.prediction
    top_label, top_p = pred.top(1)[0]
    st.subheader(f"Predicted emotion: {top_label} ({top_p:.0%})")
    probs = pd.DataFrame({"emotion": list(pred.probabilities), "probability": list(pred.probabilities.values())})
    st.bar_chart(probs, x="emotion", y="probability", horizontal=True, sort=False)
    import matplotlib.pyplot as plt

    f = classifier.features
    for fig in (_waveform_figure(analysis),
                plots.spectrogram(analysis.features, sr=f.sr, hop_length=f.hop_length, fmin=f.fmin,
                                  fmax=f.fmax, top_db=f.top_db,
                                  title="Log-mel spectrogram the model sees (trimmed, first window)")):
        st.pyplot(fig)
        plt.close(fig)  # streamlit reruns the script on every interaction
    if pred.windows > 1:
        st.markdown(f"**Timeline:** {pred.windows} windows of {f.duration:g} s, half overlapping, "
                    "times from the first sound")
        st.dataframe(pd.DataFrame({
            "window start (s)": pred.window_starts.round(2),
            "top emotion": pred.window_labels,
            "probability": pred.window_probabilities.max(axis=1).round(3),
        }), hide_index=True)


def model_path_from_argv(argv: list[str]) -> Path | None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model")
    known, _ = parser.parse_known_args(argv)
    chosen = known.model or os.environ.get("EMOTION_CNN_MODEL")
    return Path(chosen) if chosen else None


def main() -> None:
    import streamlit as st

    st.set_page_config(page_title="emotion-cnn", page_icon="🎙️")
    st.title("What emotion does the model hear?")

    @st.cache_resource(show_spinner="Loading the model…")
    def cached_classifier(path: str | None) -> Classifier:
        return load_classifier(path)

    model_path = model_path_from_argv(sys.argv[1:])
    try:
        classifier = cached_classifier(str(model_path) if model_path else None)
    except (FileNotFoundError, ValueError, OSError) as err:
        st.error(f"Could not load the model: {err}")
        return
    with st.sidebar:
        st.header("Model")
        for line in model_summary(classifier):
            st.markdown(line)
        st.warning(CAVEAT)

    uploaded = st.file_uploader("Upload a recording (wav, flac, mp3, ogg; up to 60 s, 20 MB)",
                                type=list(AUDIO_TYPES))
    recorded = st.audio_input("…or record yourself")
    clip = uploaded or recorded
    if clip is None:
        st.info("Upload a file or record a few seconds of speech.")
        return
    data = clip.getvalue()
    try:
        analysis = analyse(data, clip.name, classifier)
    except features.AudioError as err:
        st.error(str(err))
        return
    st.audio(data)
    render(analysis, classifier)


if __name__ == "__main__":
    main()
