"""The web app: Streamlit's AppTest for the logic, then a real headless Chromium."""

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import synth_signal

from emotion_cnn.serve import APP, CHROMIUM_ARGS, serving_app, show_prediction

ARTIFACTS = Path(os.environ.get("EMOTION_CNN_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))


def wav_bytes(signal, sr, fmt="WAV"):
    buffer = io.BytesIO()
    sf.write(buffer, signal, sr, format=fmt, subtype="VORBIS" if fmt == "OGG" else "PCM_16")
    return buffer.getvalue()


@pytest.fixture
def app(tiny_model, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("EMOTION_CNN_MODEL", str(tiny_model[0]))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception
    return at


def test_sidebar_names_model_and_warns(app, tiny_model):
    sidebar = " ".join(m.value for m in app.sidebar.markdown)
    assert str(tiny_model[0]) in sidebar
    assert "actors protocol" in sidebar and "Held-out test actors [1]" in sidebar
    assert "North-American English" in app.sidebar.warning[0].value
    assert "Upload a file or record" in app.info[0].value


@pytest.mark.parametrize("fmt, name", [("WAV", "angry.wav"), ("FLAC", "angry.flac"), ("OGG", "angry.ogg")])
def test_upload_shows_prediction(app, rng, fmt, name):
    data = wav_bytes(synth_signal(rng, emotion=5, sr=16000, seconds=1.5), 16000, fmt)
    app.file_uploader[0].upload(name, data, "audio/" + fmt.lower()).run()
    assert not app.exception
    assert not app.error
    assert app.subheader[0].value.startswith("Predicted emotion: angry")


def test_recording_shows_prediction_and_timeline(app, rng):
    data = wav_bytes(synth_signal(rng, emotion=5, sr=16000, seconds=3.5), 16000)
    app.audio_input[0].upload("recording.wav", data).run()
    assert not app.exception
    assert app.subheader[0].value.startswith("Predicted emotion: angry")
    assert "Timeline" in " ".join(m.value for m in app.markdown)
    assert len(app.dataframe[0].value) >= 5


@pytest.mark.parametrize("name, data, message", [
    ("empty.wav", b"", "empty"),
    ("notes.wav", b"this is not audio at all" * 10, "not an audio file"),
    ("big.wav", b"\0" * (20 * 1024 * 1024 + 1), "over the 20 MB limit"),
    ("silent.wav", "silent", "silent"),
    ("long.wav", "long", "over the 60 s limit"),
    ("short.wav", "short", "too short"),
])
def test_bad_input_gets_a_message_not_a_trace(app, rng, name, data, message):
    if data == "silent":
        data = wav_bytes(np.zeros(16000, np.float32), 16000)
    elif data == "long":
        data = wav_bytes(synth_signal(rng, emotion=1, sr=8000, seconds=61, silence=0), 8000)
    elif data == "short":
        data = wav_bytes(synth_signal(rng, emotion=1, sr=16000, seconds=0.2, silence=0), 16000)
    app.file_uploader[0].upload(name, data).run()
    assert not app.exception
    assert message in app.error[0].value and name in app.error[0].value
    assert not app.subheader  # no prediction shown


def test_analyse_a_48k_4_second_clip(tiny_model, rng):
    from emotion_cnn.app import analyse
    from emotion_cnn.predict import load_classifier

    classifier = load_classifier(tiny_model[0])
    data = wav_bytes(synth_signal(rng, emotion=5, sr=48000, seconds=4.0, silence=0.1), 48000)
    analysis = analyse(data, "clip.wav", classifier)
    assert analysis.prediction.label == "angry"
    assert analysis.sr == classifier.features.sr
    assert analysis.features.shape == (classifier.features.n_mels, classifier.features.n_frames)


def _chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is not installed (.ci/run installs it)")
        pytest.skip("Debian's chromium is not installed: apt-get install chromium")
    return path


@pytest.mark.slow
@pytest.mark.real_data
def test_app_in_a_real_browser(tiny_model, real_data_dir, tmp_path):
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    clip = next(real_data_dir.glob("Actor_01/03-01-05-02-*.flac"))
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with serving_app(model=tiny_model[0]) as url:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=list(CHROMIUM_ARGS))
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            show_prediction(page, url, clip)
            page.screenshot(path=str(ARTIFACTS / "app_prediction.png"), full_page=True)
            assert "Predicted emotion:" in page.content()

            page.locator("input[type=file]").first.set_input_files(str(bad))
            page.get_by_text("not an audio file").wait_for(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "app_bad_input.png"), full_page=True)
            assert "Traceback" not in page.content()
            browser.close()
