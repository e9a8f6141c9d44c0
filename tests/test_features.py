"""Tests of emotion_cnn.features: decoding, hashing, the log-mel chain, pictures."""

from __future__ import annotations

import csv
import hashlib
import io

import librosa
import numpy as np
import pytest
import soundfile as sf
from matplotlib import colormaps
from PIL import Image

from conftest import synth_signal
from emotion_cnn.config import FeatureConfig
from emotion_cnn.features import (
    AudioError,
    ShortAudioError,
    SilentAudioError,
    check_clip,
    clip_features,
    decode,
    fix_length,
    load_mono,
    log_mel,
    log_mel_from_config,
    pcm_sha256,
    resample,
    save_png,
    spectrogram_image,
    to_mono_float,
    trim_silence,
    windows,
)


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "audio"
    path.mkdir()
    return path


def _int16(rng, n, channels=1):
    return rng.integers(-20000, 20000, size=(n, channels), dtype=np.int16)


def _noise(rng, n, level=0.3):
    return (level * rng.standard_normal(n)).astype(np.float32)


def _magma(x: float) -> np.ndarray:
    return (np.asarray(colormaps["magma"](x)[:3]) * 255).astype(np.uint8)


# --------------------------------------------------------------------------- decode


@pytest.mark.parametrize("channels, suffix, subtype", [
    (1, ".wav", "PCM_16"), (2, ".wav", "PCM_16"), (1, ".flac", "PCM_16"), (2, ".flac", "PCM_16"),
])
def test_decode_gives_int16_frames_by_channels(folder, rng, channels, suffix, subtype):
    samples = _int16(rng, 1234, channels)
    path = folder / f"clip{suffix}"
    sf.write(str(path), samples, 22050, subtype=subtype)
    decoded, sr = decode(path)
    assert sr == 22050 and isinstance(sr, int)
    assert decoded.dtype == np.int16
    assert decoded.shape == (1234, channels)
    np.testing.assert_array_equal(decoded, samples)


def test_decode_text_file_renamed_wav_raises(folder):
    path = folder / "03-01-01-01-01-01-01.wav"
    path.write_text("this is not audio\n" * 20)
    with pytest.raises(AudioError, match="cannot decode"):
        decode(path)


def test_decode_garbage_bytes_raises(folder, rng):
    path = folder / "garbage.wav"
    path.write_bytes(rng.bytes(4096))
    with pytest.raises(AudioError, match="cannot decode"):
        decode(path)


def _wav_bytes(rng, n=16000) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, _int16(rng, n), 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@pytest.mark.parametrize("keep, message", [(30, "cannot decode"), (44, "no audio samples")])
def test_decode_truncated_wav_raises(folder, rng, keep, message):
    path = folder / "short.wav"
    path.write_bytes(_wav_bytes(rng)[:keep])  # cut in the header / right after it
    with pytest.raises(AudioError, match=message):
        decode(path)


@pytest.mark.parametrize("fraction", [0.01, 0.5, 0.95])
def test_decode_truncated_flac_raises(folder, rng, fraction):
    full = folder / "full.flac"
    sf.write(str(full), (0.3 * rng.standard_normal(32000)).astype(np.float32), 16000,
             subtype="PCM_16")
    raw = full.read_bytes()
    path = folder / "cut.flac"
    path.write_bytes(raw[:int(len(raw) * fraction)])
    with pytest.raises(AudioError):
        decode(path)


def test_decode_missing_file_raises(folder):
    with pytest.raises(AudioError):
        decode(folder / "nope.wav")


def test_pcm_sha256_depends_on_samples_not_container(folder, rng):
    samples = _int16(rng, 5000, 2)
    sf.write(str(folder / "a.wav"), samples, 16000, subtype="PCM_16")
    sf.write(str(folder / "a.flac"), samples, 44100, subtype="PCM_16")
    a, _ = decode(folder / "a.wav")
    b, _ = decode(folder / "a.flac")
    assert pcm_sha256(a) == pcm_sha256(b) == pcm_sha256(samples)
    assert pcm_sha256(samples) == hashlib.sha256(samples.astype("<i2").tobytes()).hexdigest()
    changed = samples.copy()
    changed[100, 1] += 1
    assert pcm_sha256(changed) != pcm_sha256(samples)
    # interleaved frame order, not channel-major
    assert pcm_sha256(np.asfortranarray(samples)) == pcm_sha256(samples)


REAL_CLIPS = [
    "Actor_01/03-01-02-01-01-02-01.flac",  # stereo
    "Actor_07/03-01-03-01-02-01-07.flac",
    "Actor_12/03-01-05-02-01-01-12.flac",
]


@pytest.mark.real_data
def test_pcm_sha256_matches_manifest(real_data_dir):
    with open(real_data_dir / "MANIFEST.csv", newline="") as handle:
        manifest = {row["path"]: row for row in csv.DictReader(handle)}
    for rel in REAL_CLIPS:
        samples, sr = decode(real_data_dir / rel)
        row = manifest[rel]
        assert sr == int(row["sample_rate"]) == 48000
        assert samples.shape == (int(row["frames"]), int(row["channels"]))
        assert pcm_sha256(samples) == row["pcm_sha256"], rel
    assert manifest[REAL_CLIPS[0]]["channels"] == "2"


# --------------------------------------------------------------------------- mono, resample


def test_stereo_mixdown_is_the_mean_of_channels():
    samples = np.array([[32767, -32768], [1000, 3000], [-5, -5], [0, 32767]], dtype=np.int16)
    mono = to_mono_float(samples)
    assert mono.dtype == np.float32 and mono.shape == (4,)
    expected = samples.astype(np.float64).mean(axis=1) / 32768.0
    np.testing.assert_allclose(mono, expected, rtol=0, atol=1e-7)
    assert mono[1] == pytest.approx(2000 / 32768)
    assert to_mono_float(samples[:, :1])[2] == pytest.approx(-5 / 32768)


def test_load_mono_mixes_resamples_and_reports(folder, rng):
    samples = _int16(rng, 22050, 2)
    path = folder / "s.wav"
    sf.write(str(path), samples, 22050, subtype="PCM_16")
    y, digest, info = load_mono(path, sr=22050)
    np.testing.assert_allclose(y, samples.mean(axis=1) / 32768.0, atol=1e-6)
    assert digest == pcm_sha256(samples)
    assert info == {"orig_sr": 22050, "channels": 2, "duration": 1.0}
    y16, digest16, _ = load_mono(path, sr=16000)
    assert abs(len(y16) - 16000) <= 1 and y16.dtype == np.float32
    assert digest16 == digest


@pytest.mark.parametrize("orig_sr", [8000, 22050, 44100, 48000])
def test_resample_length(orig_sr):
    seconds = 1.234
    n = int(seconds * orig_sr)
    t = np.arange(n) / orig_sr
    y = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    out = resample(y, orig_sr=orig_sr, sr=16000)
    assert out.dtype == np.float32
    assert abs(len(out) - n * 16000 / orig_sr) <= 1
    # the tone stays at 1 kHz
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    peak_hz = np.argmax(spectrum) * 16000 / len(out)
    assert abs(peak_hz - 1000) < 2


def test_resample_same_rate_is_identity():
    y = np.arange(10, dtype=np.float32)
    assert resample(y, orig_sr=16000, sr=16000) is y


# --------------------------------------------------------------------------- trim, fix_length


@pytest.mark.parametrize("emotion", [1, 4, 8])
def test_trim_silence_removes_leading_and_trailing_silence(rng, emotion):
    sr, tone, silence = 16000, 2.0, 0.4
    y = synth_signal(rng, emotion=emotion, sr=sr, seconds=tone, silence=silence)[:, 0]
    trimmed = trim_silence(y, top_db=30)
    assert abs(len(trimmed) - tone * sr) <= 1024
    start = _find(y, trimmed)
    assert abs(start - silence * sr) <= 1024  # most of the leading silence is gone
    assert len(y) - start - len(trimmed) >= silence * sr - 1024  # and of the trailing one


def _find(y, part):
    """Start of ``part`` in ``y`` (``trim_silence`` returns a slice)."""
    assert part.base is not None or part is y
    offset = (part.__array_interface__["data"][0] - y.__array_interface__["data"][0]) // y.itemsize
    np.testing.assert_array_equal(y[offset:offset + len(part)], part)
    return offset


def _signals():
    rng = np.random.default_rng(7)
    out = []
    for e in (1, 3, 6, 8):
        out.append((f"synth{e}", synth_signal(rng, emotion=e, sr=16000, seconds=1.3,
                                              silence=0.37)[:, 0]))
    t = np.arange(24000) / 16000
    burst = np.zeros(24000, np.float32)
    burst[5000:9000] = 0.8 * np.sin(2 * np.pi * 440 * t[5000:9000])
    burst[15000:15500] = 0.01 * rng.standard_normal(500)
    out.append(("burst", burst))
    ramp = (np.linspace(0, 1, 20000) ** 3 * np.sin(2 * np.pi * 300 * t[:20000])).astype(np.float32)
    out.append(("ramp", ramp))
    out.append(("noise", (0.2 * rng.standard_normal(10001)).astype(np.float32)))
    return out


@pytest.mark.parametrize("top_db", [20, 30, 60])
@pytest.mark.parametrize("name, y", _signals(), ids=[n for n, _ in _signals()])
def test_trim_silence_matches_librosa(name, y, top_db):
    ours = trim_silence(y, top_db=top_db)
    theirs, _ = librosa.effects.trim(y, top_db=top_db, frame_length=1024, hop_length=256)
    assert len(ours) == len(theirs)
    np.testing.assert_array_equal(ours, theirs)
    ours = trim_silence(y, top_db=top_db, frame_length=512, hop_length=128)
    theirs, _ = librosa.effects.trim(y, top_db=top_db, frame_length=512, hop_length=128)
    np.testing.assert_array_equal(ours, theirs)


def test_trim_silence_matches_librosa_on_a_very_quiet_clip(rng):
    y = synth_signal(rng, emotion=3, sr=16000, seconds=1.0, silence=0.4)[:, 0] * 3e-4
    ours = trim_silence(y, top_db=30)
    theirs, _ = librosa.effects.trim(y, top_db=30, frame_length=1024, hop_length=256)
    assert len(ours) == len(theirs)


def test_trim_silence_of_zeros_raises():
    with pytest.raises(SilentAudioError, match="zero"):
        trim_silence(np.zeros(16000, np.float32), top_db=30)
    assert issubclass(SilentAudioError, AudioError)
    assert issubclass(AudioError, ValueError)


def test_trim_silence_single_click():
    y = np.zeros(8000, np.float32)
    y[4000] = 0.5
    trimmed = trim_silence(y, top_db=30)
    assert 0 < len(trimmed) <= 2048
    assert 0.5 in trimmed


def test_fix_length_crops_centrally():
    np.testing.assert_array_equal(fix_length(np.arange(10), n_samples=4), [3, 4, 5, 6])
    np.testing.assert_array_equal(fix_length(np.arange(9), n_samples=4), [2, 3, 4, 5])
    np.testing.assert_array_equal(fix_length(np.arange(5), n_samples=5), np.arange(5))


def test_fix_length_pads_centrally():
    np.testing.assert_array_equal(fix_length(np.array([1, 2, 3]), n_samples=8),
                                  [0, 0, 1, 2, 3, 0, 0, 0])
    np.testing.assert_array_equal(fix_length(np.array([1, 2]), n_samples=6), [0, 0, 1, 2, 0, 0])
    out = fix_length(np.ones(1, np.float32), n_samples=3)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [0, 1, 0])


@pytest.mark.parametrize("n", [0, 1, 999, 16000, 16001, 47999, 100000])
def test_fix_length_exact_length(rng, n):
    y = rng.standard_normal(n).astype(np.float32)
    assert len(fix_length(y, n_samples=16000)) == 16000


# --------------------------------------------------------------------------- log-mel


def test_log_mel_shape_and_range(rng, small_features):
    cfg = small_features
    y = synth_signal(rng, emotion=4, sr=16000, seconds=0.8, silence=0.3)[:, 0]
    out = log_mel(y, sr=16000, n_fft=512, hop_length=256, win_length=512, n_mels=32,
                  fmin=20.0, fmax=8000.0, top_db=80.0)
    assert out.dtype == np.float32
    assert out.shape == (32, 1 + len(y) // 256)
    assert out.max() == 0.0
    assert out.min() == pytest.approx(-80.0)  # the silence is clipped at -top_db
    assert np.all(out >= -80.0)
    other = log_mel(y, sr=16000, n_fft=1024, hop_length=100, win_length=800, n_mels=40,
                    fmin=50.0, fmax=7000.0, top_db=50.0)
    assert other.shape == (40, 1 + len(y) // 100)
    assert other.max() == 0.0 and other.min() == pytest.approx(-50.0)
    np.testing.assert_array_equal(log_mel_from_config(y, cfg), out)


def test_log_mel_matches_librosa(rng):
    y = synth_signal(rng, emotion=2, sr=16000, seconds=0.5, silence=0.1)[:, 0]
    out = log_mel(y, sr=16000, n_fft=512, hop_length=160, win_length=400, n_mels=64,
                  fmin=20.0, fmax=8000.0, top_db=80.0)
    mel = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=160,
                                         win_length=400, n_mels=64, fmin=20.0, fmax=8000.0)
    expected = librosa.power_to_db(mel, ref=np.max, top_db=80.0)
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_log_mel_is_level_independent(rng):
    y = synth_signal(rng, emotion=5, sr=16000, seconds=0.5, silence=0.1)[:, 0]
    kwargs = dict(sr=16000, n_fft=512, hop_length=256, win_length=512, n_mels=32, fmin=20.0,
                  fmax=8000.0, top_db=80.0)
    np.testing.assert_allclose(log_mel(y, **kwargs), log_mel(0.1 * y, **kwargs), atol=1e-3)


@pytest.mark.parametrize("seconds", [0.2, 0.9, 1.0, 2.7])
def test_clip_features_shape(rng, small_features, seconds):
    y = synth_signal(rng, emotion=6, sr=16000, seconds=seconds, silence=0.2)[:, 0]
    out = clip_features(y, small_features)
    assert out.shape == (small_features.n_mels, small_features.n_frames) == (32, 63)
    assert out.dtype == np.float32
    assert out.max() == 0.0 and out.min() >= -small_features.top_db


def test_clip_features_default_shape(rng):
    cfg = FeatureConfig()
    y = synth_signal(rng, emotion=6, sr=16000, seconds=1.0, silence=0.2)[:, 0]
    assert clip_features(y, cfg).shape == (64, 151)


def test_clip_features_is_the_documented_chain(rng, small_features):
    y = synth_signal(rng, emotion=7, sr=16000, seconds=1.6, silence=0.3)[:, 0]
    expected = log_mel_from_config(
        fix_length(trim_silence(y, top_db=small_features.trim_top_db), n_samples=16000),
        small_features)
    np.testing.assert_array_equal(clip_features(y, small_features), expected)


# --------------------------------------------------------------------------- windows


def test_windows_short_clip_is_one_window(rng, small_features):
    y = synth_signal(rng, emotion=2, sr=16000, seconds=0.7, silence=0.3)[:, 0]
    out = windows(y, small_features)
    assert out.shape == (1, 32, 63)
    np.testing.assert_array_equal(out[0], clip_features(y, small_features))


@pytest.mark.parametrize("n_windows, expected_starts", [
    (3.5, [0, 8000, 16000, 24000, 32000, 40000]),  # last start 40000 == len - size already
    (3.3, [0, 8000, 16000, 24000, 32000, 36800]),  # last one aligned to the end
    (1.2, [0, 3200]),
])
def test_windows_long_clip(rng, small_features, n_windows, expected_starts):
    size = small_features.n_samples
    y = _noise(rng, int(n_windows * size))  # loud throughout: trimming keeps it all
    assert len(trim_silence(y, top_db=small_features.trim_top_db)) == len(y)
    out = windows(y, small_features)
    assert out.shape == (len(expected_starts), 32, 63)
    assert expected_starts[-1] == len(y) - size
    for window, start in zip(out, expected_starts):
        np.testing.assert_array_equal(window, log_mel_from_config(y[start:start + size],
                                                                  small_features))


def test_windows_overlap_setting(rng, small_features):
    y = _noise(rng, 4 * 16000)
    assert windows(y, small_features, overlap=0.0).shape[0] == 4
    assert windows(y, small_features, overlap=0.75).shape[0] == 13


def test_windows_trims_first(rng, small_features):
    y = synth_signal(rng, emotion=3, sr=16000, seconds=2.0, silence=1.0)[:, 0]
    trimmed = trim_silence(y, top_db=small_features.trim_top_db)
    out = windows(y, small_features)
    np.testing.assert_array_equal(out[0], log_mel_from_config(trimmed[:16000], small_features))
    np.testing.assert_array_equal(out[-1], log_mel_from_config(trimmed[-16000:], small_features))


# --------------------------------------------------------------------------- pictures


def test_spectrogram_image_size_and_orientation(rng, small_features):
    t = np.arange(16000) / 16000
    low = (0.5 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)
    feats = clip_features(low, small_features)
    image = spectrogram_image(feats, top_db=80.0)
    assert image.mode == "RGB"
    assert image.size == (small_features.n_frames, small_features.n_mels)  # (width, height)
    pixels = np.asarray(image).astype(float).sum(axis=2)  # brightness per (row, column)
    row_brightness = pixels.mean(axis=1)
    n = small_features.n_mels
    assert np.argmax(row_brightness) >= n - 6  # brightest rows at the bottom
    assert row_brightness[-n // 4:].mean() > 2 * row_brightness[:n // 4].mean()
    # exact mapping: mel bin k is image row n_mels - 1 - k
    lut = np.stack([_magma(x) for x in np.linspace(0, 1, 256)])
    index = np.round(np.clip((feats + 80) / 80, 0, 1) * 255).astype(int)
    np.testing.assert_array_equal(np.asarray(image), lut[index[::-1]])


def test_spectrogram_image_colour_ends():
    feats = np.array([[-80.0, 0.0, -200.0, 5.0, -40.0]], dtype=np.float32)
    pixels = np.asarray(spectrogram_image(feats, top_db=80.0))
    assert pixels.shape == (1, 5, 3)
    np.testing.assert_array_equal(pixels[0, 0], _magma(0.0))  # -top_db: black end
    np.testing.assert_array_equal(pixels[0, 1], _magma(1.0))  # 0 dB: light yellow end
    np.testing.assert_array_equal(pixels[0, 2], _magma(0.0))  # clipped below
    np.testing.assert_array_equal(pixels[0, 3], _magma(1.0))  # clipped above
    assert pixels[0, 0].sum() < 30 and pixels[0, 1].min() > 180
    lut = np.stack([_magma(x) for x in np.linspace(0, 1, 256)])
    np.testing.assert_array_equal(pixels[0, 4], lut[128])  # round(0.5 * 255) = 128
    # another range puts the same dB value elsewhere
    other = np.asarray(spectrogram_image(np.array([[-40.0]]), top_db=40.0))
    np.testing.assert_array_equal(other[0, 0], _magma(0.0))


def test_save_png_writes_readable_png_atomically(rng, small_features, folder):
    feats = clip_features(_noise(rng, 12000), small_features)
    target = folder / "angry" / "03-01-05-01-01-01-01.png"
    save_png(feats, target, top_db=80.0)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(target) as image:
        assert image.format == "PNG"
        assert image.size == (63, 32)
        np.testing.assert_array_equal(np.asarray(image.convert("RGB")),
                                      np.asarray(spectrogram_image(feats, top_db=80.0)))
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temp files
    # overwrite in place
    save_png(np.full_like(feats, -80.0), target, top_db=80.0)
    with Image.open(target) as image:
        assert np.all(np.asarray(image.convert("RGB")) == _magma(0.0))
    assert [p.name for p in target.parent.iterdir()] == [target.name]



def test_check_clip_is_the_rule_for_short_and_silent_clips(rng):
    speech = synth_signal(rng, emotion=3, sr=16000, seconds=1.0)[:, 0]
    check_clip(speech, sr=16000)
    with pytest.raises(ShortAudioError, match="too short"):
        check_clip(speech[:7000], sr=16000)
    with pytest.raises(SilentAudioError, match="silent"):
        check_clip(speech / np.abs(speech).max() * 5e-4, sr=16000)
