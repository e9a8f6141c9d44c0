import numpy as np
from conftest import benchmark_script


def test_clip_statistics_read_the_active_frames_and_the_voiced_pitch_only():
    functionals = benchmark_script("functionals_member")
    x = np.full((4, 20), -80.0, np.float32)  # silence but for frames 5-14
    x[:, 5:15] = np.array([-10.0, -20.0, -30.0, -40.0])[:, None]
    x[0, 5:15:2] = -14.0  # band 0 alternates -10, -14: a mean absolute change of 4
    pitch = np.zeros((2, 20), np.float32)
    pitch[0] = 50.0  # unvoiced frames hold no pitch worth reading
    pitch[0, 6:12], pitch[1, 6:12] = [10.0, 12.0, 14.0, 10.0, 12.0, 14.0], 1.0
    stats = functionals.clip_statistics(x, pitch, floor=-80.0)
    assert stats.shape == (6 * 4 + 9,)
    means, spreads, p10, median, p90, change = stats[:24].reshape(6, 4)
    np.testing.assert_allclose(means, [-12.0, -20.0, -30.0, -40.0])
    np.testing.assert_allclose(spreads, [2.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(change, [4.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(median, [-12.0, -20.0, -30.0, -40.0])
    assert stats[24 + 3] == 10  # active frames
    np.testing.assert_allclose(stats[28:], [12.0, np.std([10, 12, 14] * 2), 10.0, 14.0, 0.3], rtol=1e-6)
