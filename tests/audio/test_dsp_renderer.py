"""DSP binaural renderer: binaural cues, head rotation, streaming contract, smoothness."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from livesense.audio.dsp_renderer import DspBinauralRenderer, DspRendererConfig
from livesense.audio.geometry import Pose
from livesense.audio.hrtf import load_hrirs, onset_index
from livesense.audio.trajectory import OrbitTrajectory, PoseFileTrajectory
from livesense.errors import ConfigError
from livesense.streaming.testing import assert_causal, assert_offline_equals_chunked

FS = 48000


def _noise(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


def _cues(y: np.ndarray) -> tuple[float, float]:
    """(ILD dB in 2-4 kHz, right re left; ITD ms, positive = right ear earlier) of (2, n)."""
    left, right = y.astype(np.float64)
    n = left.shape[0]
    fl, fr = np.fft.rfft(left), np.fft.rfft(right)
    f = np.fft.rfftfreq(n, 1 / FS)
    band = (f >= 2000) & (f <= 4000)
    ild = 10 * np.log10(np.sum(np.abs(fr[band]) ** 2) / np.sum(np.abs(fl[band]) ** 2))
    xc = np.fft.irfft(fl * np.conj(fr), n)  # xc[k] = sum_n left[n + k] right[n]
    lags = np.arange(n)
    lags[lags > n // 2] -= n
    near = np.abs(lags) <= int(0.0015 * FS)
    return float(ild), float(lags[near][np.argmax(xc[near])] / FS * 1e3)


def _render(speaker, listener=None, n=FS // 2, **cfg) -> np.ndarray:
    listener = listener or Pose()
    return DspBinauralRenderer(speaker, listener, config=DspRendererConfig(**cfg)).process(
        _noise(n)
    )


def test_source_on_the_right_is_louder_and_earlier_on_the_right():
    ild, itd = _cues(_render(Pose((0, 1, 0))))
    assert ild > 6.0
    assert 0.5 <= itd <= 0.8


def test_source_on_the_left_mirrors():
    ild, itd = _cues(_render(Pose((0, -1, 0))))
    assert ild < -6.0
    assert -0.8 <= itd <= -0.5


def test_source_ahead_has_no_interaural_difference():
    ild, itd = _cues(_render(Pose((1, 0, 0))))
    assert abs(ild) < 1.0 and abs(itd) < 0.05


def test_listener_turned_right_hears_front_source_on_the_left():
    ild, itd = _cues(_render(Pose((1, 0, 0)), Pose.from_yaw_pitch(yaw=90)))
    assert ild < -6.0 and itd < -0.5
    # Moved listener: same geometry shifted -> same cues.
    ild2, itd2 = _cues(_render(Pose((3, 2, 0)), Pose.from_yaw_pitch((2, 2, 0), yaw=90)))
    assert ild2 == pytest.approx(ild, abs=1e-3) and itd2 == pytest.approx(itd)


def test_delay_and_distance_gain_follow_geometry():
    x = np.zeros(1200, np.float32)
    x[0] = 1.0
    y1 = DspBinauralRenderer(Pose((1, 0, 0))).process(x)
    assert y1.shape == (2, 1200) and y1.dtype == np.float32
    # HRIR onset compensated: sound reaches the head centre after d / c (140 samples per metre).
    np.testing.assert_array_equal(onset_index(y1), [140, 140])
    np.testing.assert_array_equal(
        onset_index(DspBinauralRenderer(Pose((2, 0, 0))).process(x)), [280, 280]
    )

    def level(d: float) -> float:  # steady-state RMS of a 500 Hz tone from d metres ahead
        tone = np.sin(2 * np.pi * 500 * np.arange(4800) / FS).astype(np.float32)
        return float(
            np.sqrt(np.mean(DspBinauralRenderer(Pose((d, 0, 0))).process(tone)[:, 2400:] ** 2))
        )

    assert level(2.0) / level(1.0) == pytest.approx(0.5, rel=0.01)  # 1/d
    assert level(0.01) / level(0.25) == pytest.approx(1.0, rel=0.01)  # clamped at min_distance


def test_offline_equals_chunked_static():
    x = _noise(9000)
    assert_offline_equals_chunked(lambda: DspBinauralRenderer(Pose((0.4, 1.2, 0.3))), x, atol=1e-5)


def test_offline_equals_chunked_moving_source_and_turning_listener():
    x = _noise(9000, seed=1)
    orbit = OrbitTrajectory(radius=1.5, period_s=0.5, height=0.3)  # fast: filters change often
    turning = OrbitTrajectory(radius=0.2, period_s=-0.7)  # listener circles and turns
    cfg = DspRendererConfig(block=64, source_offset=(0.09, 0.0, -0.2))
    assert_offline_equals_chunked(
        lambda: DspBinauralRenderer(orbit, turning, config=cfg), x, atol=1e-5
    )


class _Scheduled(DspBinauralRenderer):
    """Pose updates scheduled at fixed samples (re-applied on reset, which clears them)."""

    def reset(self) -> None:
        super().reset()
        self.set_speaker_pose(Pose((-1, -1, 0)), at_sample=3000)  # right -> left-behind
        self.set_listener_pose(Pose.from_yaw_pitch(yaw=180), at_sample=5500)  # turns round


def test_offline_equals_chunked_with_scheduled_pose_updates():
    x = _noise(8000, seed=2)
    assert_offline_equals_chunked(lambda: _Scheduled(Pose((0, 1, 0))), x, atol=1e-5)
    y = _Scheduled(Pose((0, 1, 0))).process(_noise(12000, seed=2))
    assert _cues(y[:, :3000])[0] > 6  # right
    assert _cues(y[:, 3500:5500])[0] < -6  # moved to the left
    assert _cues(y[:, 6000:])[0] > 6  # listener faces -x: the source is ahead-right


def test_causal():
    # Sources within ~0.13 m have zero propagation delay left after the HRIR onset is
    # subtracted, so output sample n already depends on input sample n: any look-ahead shows.
    x = _noise(6000, seed=3)
    assert_causal(lambda: DspBinauralRenderer(OrbitTrajectory(0.1, 0.5)), x, cut=2500)
    assert_causal(lambda: DspBinauralRenderer(Pose((0.05, 0.05, 0))), x, cut=4001)


def test_every_step_returns_its_samples():
    r = DspBinauralRenderer(Pose((0, 1, 0)))
    assert r.latency == 0 and r.granularity == 1
    for n in (1, 127, 128, 129, 480, 0, 5000):
        y = r.step(np.zeros((1, n), np.float32))
        assert (y is None and n == 0) or y.shape == (2, n)
    assert r.flush() is None


def _max_step_check(crossfade: bool) -> tuple[float, float]:
    """Max |y[n] - y[n-1]| of a 100 Hz sine from a fast orbit vs the click-free bound."""
    n = FS
    x = (0.5 * np.sin(2 * np.pi * 100 * np.arange(n) / FS)).astype(np.float32)
    hr = load_hrirs()
    # Largest HRIR gain at 100 Hz over all directions and ears (distance gain is 1 at 1 m).
    tone = np.exp(-2j * np.pi * 100 * np.arange(hr.n_taps) / FS)
    g_max = float(np.max(np.abs(hr.irs.reshape(-1, hr.n_taps).astype(np.float64) @ tone)))
    cfg = DspRendererConfig(crossfade=crossfade)
    y = DspBinauralRenderer(OrbitTrajectory(1.0, 1.0), config=cfg).process(x)
    settled = y[:, 1000:]  # after the propagation delay and the HRIR onset
    return float(np.max(np.abs(np.diff(settled, axis=-1)))), 2.0 * float(
        np.max(np.abs(np.diff(x)))
    ) * g_max


def test_moving_source_does_not_click():
    step, bound = _max_step_check(crossfade=True)
    assert step <= bound, f"max step {step:.3g} > bound {bound:.3g}: a click"


def test_click_check_catches_hard_filter_switches():
    step, bound = _max_step_check(crossfade=False)
    assert step > bound


def test_live_pose_update_moves_the_source():
    r = DspBinauralRenderer(Pose((0, 1, 0)))
    x = _noise(FS // 2)
    first = r.step(x[:12000])
    r.set_speaker_pose(Pose((0, -1, 0)))  # from the next sample on
    second = r.step(x[12000:])
    assert _cues(first)[0] > 6 and _cues(second[:, 1000:])[0] < -6
    r.reset()  # forgets the live update
    assert _cues(r.step(x))[0] > 6


def test_torch_and_1d_input():
    x = _noise(3000)
    ref = DspBinauralRenderer(Pose((0, 1, 0))).process(x[None])
    y = DspBinauralRenderer(Pose((0, 1, 0))).process(torch.from_numpy(x))
    assert isinstance(y, torch.Tensor) and y.shape == (2, 3000) and y.dtype == torch.float32
    np.testing.assert_array_equal(y.numpy(), ref)
    with pytest.raises(ValueError, match="mono"):
        DspBinauralRenderer().step(np.zeros((2, 10), np.float32))


def test_pose_file_trajectory_renders(tmp_path):
    rows = [[np.cos(a), np.sin(a), 0, 0, 0, 0, 1] for a in np.linspace(0, np.pi, 40)]
    path = tmp_path / "tx_positions.txt"
    path.write_text("\n".join(" ".join(str(v) for v in r) for r in rows))
    x = _noise(6000)
    assert_offline_equals_chunked(lambda: DspBinauralRenderer(PoseFileTrajectory(path)), x)


def test_bad_configuration_and_poses():
    with pytest.raises(ConfigError, match="block"):
        DspRendererConfig(block=0)
    with pytest.raises(ConfigError, match="min_distance"):
        DspRendererConfig(min_distance=-1.0)
    with pytest.raises(ConfigError, match="source_offset"):
        DspRendererConfig(source_offset=(0.0, float("nan"), 0.0))
    with pytest.raises(ConfigError, match="finite"):
        DspBinauralRenderer(Pose((float("nan"), 0, 0)))
    with pytest.raises(ConfigError, match="zero norm"):
        DspBinauralRenderer().set_listener_pose(Pose((0, 0, 0), (0, 0, 0, 0)))
