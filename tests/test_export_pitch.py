import numpy as np
from conftest import benchmark_script

from emotion_cnn.config import FeatureConfig


def test_pitch_rows_give_semitones_re_100_hz_where_voiced_and_zero_elsewhere(rng):
    export_pitch = benchmark_script("export_pitch")
    cfg = FeatureConfig()
    t = np.arange(int(1.5 * cfg.sr)) / cfg.sr
    tone = 0.5 * np.sin(2 * np.pi * 200.0 * t) + 0.25 * np.sin(2 * np.pi * 400.0 * t)
    y = np.concatenate([tone, 1e-4 * rng.standard_normal(cfg.sr // 2)]).astype(np.float32)
    rows = export_pitch.pitch_rows(y, cfg)
    assert rows.shape == (2, cfg.n_frames) and rows.dtype == np.float32
    semitones, voiced = rows
    assert set(np.unique(voiced)) <= {0.0, 1.0} and voiced.sum() > 40
    np.testing.assert_allclose(np.median(semitones[voiced == 1]), 12.0, atol=0.3)  # 200 Hz
    np.testing.assert_array_equal(semitones[voiced == 0], 0.0)
