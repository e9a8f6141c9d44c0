import numpy as np
from conftest import benchmark_script

from emotion_cnn.config import FeatureConfig


def test_a_tone_peaks_in_its_bin_two_octaves_above_55_hz(rng):
    export_cqt = benchmark_script("export_cqt")
    cfg = FeatureConfig()
    t = np.arange(int(1.5 * cfg.sr)) / cfg.sr
    tone = 0.5 * np.sin(2 * np.pi * 220.0 * t)
    y = np.concatenate([tone, 1e-4 * rng.standard_normal(cfg.sr // 2)]).astype(np.float32)
    out = export_cqt.log_cqt(y, cfg)
    assert out.shape == (84, cfg.n_frames) and out.dtype == np.float32
    assert out.max() == 0.0 and out.min() >= -cfg.top_db
    middle = out[:, cfg.n_frames // 4]  # inside the tone, away from the trimmed ends
    assert middle.argmax() == 24  # 220 Hz = 55 Hz * 2 ** (24 / 12)
    assert (middle[[12, 36]] < middle[24] - 20).all()  # an octave off: far quieter
