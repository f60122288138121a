"""Shoebox room simulation: decay, direct-path equivalence, cues, noise level, smoothness."""

from __future__ import annotations

import math

import numpy as np
import pytest

from livesense.audio.dsp_renderer import DspBinauralRenderer, DspRendererConfig
from livesense.audio.geometry import Pose, PoseArray, yaw_quaternion
from livesense.audio.hrtf import load_hrirs
from livesense.audio.room import (
    RoomConfig,
    image_sources,
    late_reverb_ir,
    render_room,
    schroeder_rt60,
)
from livesense.audio.trajectory import OrbitTrajectory, Trajectory
from livesense.errors import ConfigError

SR = 48000
DRY = dict(late_reverb=False, noise_db=None)


@pytest.fixture(scope="module")
def hrirs():
    return load_hrirs(None, SR)


class TurningHead(Trajectory):
    """Listener at the origin turning right at ``deg_per_s``."""

    def __init__(self, deg_per_s: float):
        self.rate = deg_per_s

    def at(self, t: np.ndarray) -> PoseArray:
        t = np.asarray(t, dtype=np.float64)
        return PoseArray(np.zeros((t.shape[0], 3)), yaw_quaternion(self.rate * t))


def test_demo_room_values() -> None:
    r = RoomConfig.demo()
    assert r.size == (6.0, 5.0, 3.0) and r.listener_position == (2.5, 2.2, 1.5)
    assert r.absorption == (0.5,) * 6 and r.noise_db == -35.0 and r.listener_yaw == 0.0
    # Hand values: V = 90, S = 126; Sabine 0.161 V / (0.5 S); Eyring 0.161 V / (-S ln 0.5).
    assert r.rt60("sabine") == pytest.approx(0.161 * 90 / 63)
    assert r.rt60() == pytest.approx(0.161 * 90 / (126 * math.log(2)))
    np.testing.assert_allclose(r.to_room(np.array([1.0, 0.0, 0.0])), [3.5, 2.2, 1.5])


def test_room_config_errors_and_random() -> None:
    with pytest.raises(ConfigError):
        RoomConfig(absorption=1.2)
    with pytest.raises(ConfigError):
        RoomConfig(listener_position=(7.0, 1.0, 1.0))
    with pytest.raises(ConfigError):
        RoomConfig(noise_db=10.0)
    a = RoomConfig.random(np.random.default_rng(3))
    b = RoomConfig.random(np.random.default_rng(3))
    assert a == b and len(a.absorption) == 6 and 0.05 < a.rt60() < 2.0


def test_order1_image_sources_match_hand_computation() -> None:
    room = RoomConfig.demo()
    ims = image_sources(room, max_order=1)
    assert ims.gain.shape == (7,) and len(image_sources(room, max_order=2).gain) == 25
    src = np.array([[1.0, 2.0, 1.0]])
    pos = ims.positions(src)[:, 0]  # (7, 3)
    expected = {
        (1.0, 2.0, 1.0),  # direct
        (-1.0, 2.0, 1.0),  # wall x = 0
        (11.0, 2.0, 1.0),  # wall x = 6
        (1.0, -2.0, 1.0),
        (1.0, 8.0, 1.0),
        (1.0, 2.0, -1.0),  # floor
        (1.0, 2.0, 5.0),  # ceiling
    }
    assert {tuple(np.round(p, 9)) for p in pos} == expected
    refl = ims.order == 1
    np.testing.assert_allclose(ims.gain[refl], math.sqrt(0.5))
    assert ims.gain[~refl] == pytest.approx(1.0)
    # Delay of the floor image to the head centre (2.5, 2.2, 1.5): sqrt(1.5^2 + 0.2^2 + 2.5^2).
    d = np.linalg.norm(pos - np.array(room.listener_position), axis=-1)
    floor = np.nonzero((pos == [1.0, 2.0, -1.0]).all(axis=1))[0][0]
    assert d[floor] / 343.0 == pytest.approx(math.sqrt(1.5**2 + 0.2**2 + 2.5**2) / 343.0)


def test_direct_path_only_equals_dsp_renderer(hrirs) -> None:
    x = np.random.default_rng(0).standard_normal(SR // 2) * 0.1
    for speaker in (Pose((1.2, 0.6, 0.1)), OrbitTrajectory(1.5, 2.0)):
        ref = DspBinauralRenderer(speaker, Pose(), hrirs, DspRendererConfig()).step(x)
        y = render_room(x, SR, speaker, Pose(), RoomConfig.demo(max_order=0, **DRY), hrirs)
        assert y.shape == (2, x.shape[0]) and y.dtype == np.float32
        assert np.max(np.abs(y - ref)) < 1e-6


def test_rt60_from_impulse_response_matches_eyring(hrirs) -> None:
    room = RoomConfig.demo(noise_db=None)
    x = np.zeros(SR // 2)
    x[0] = 1.0
    ir = render_room(x, SR, Pose((1.5, 0.5, 0.0)), Pose(), room, hrirs)
    est = schroeder_rt60(ir, SR)
    assert est == pytest.approx(room.rt60("eyring"), rel=0.3)
    # Without the late tail the decay would be far too short (the tail does its job).
    ir_early = render_room(x, SR, Pose((1.5, 0.5, 0.0)), Pose(), RoomConfig.demo(**DRY), hrirs)
    assert np.sum(ir[:, 4800:] ** 2) > 10 * np.sum(ir_early[:, 4800:] ** 2)


def test_tail_continues_image_sources_without_doubling(hrirs) -> None:
    room = RoomConfig.demo()
    tail = late_reverb_ir(
        room, SR, hrirs, room.to_room(np.array([1.5, 0.5, 0.0])), np.random.default_rng(0)
    )
    e = np.sum(tail**2, axis=0)
    first_ms = np.sum(e[: SR // 200])  # first 5 ms: the image sources' job, tail silent
    assert first_ms < 1e-3 * np.sum(e)
    corr = np.corrcoef(tail[0, 9600:], tail[1, 9600:])[0, 1]
    assert abs(corr) < 0.5  # decorrelated ears


def test_source_on_the_right_gives_positive_ild(hrirs) -> None:
    x = np.random.default_rng(1).standard_normal(SR // 2) * 0.1
    y = render_room(x, SR, Pose((0.3, 1.5, 0.0)), Pose(), RoomConfig.demo(), hrirs)
    ild = 10 * np.log10(np.sum(y[1] ** 2) / np.sum(y[0] ** 2))
    assert ild > 3.0
    y_left = render_room(x, SR, Pose((0.3, -1.5, 0.0)), Pose(), RoomConfig.demo(), hrirs)
    assert 10 * np.log10(np.sum(y_left[1] ** 2) / np.sum(y_left[0] ** 2)) < -3.0


def test_noise_floor_is_35_db_below_speech(hrirs) -> None:
    x = np.random.default_rng(2).standard_normal(SR) * 0.1
    spk = Pose((1.0, 0.5, 0.0))
    clean = render_room(x, SR, spk, Pose(), RoomConfig.demo(noise_db=None), hrirs, seed=5)
    noisy = render_room(x, SR, spk, Pose(), RoomConfig.demo(), hrirs, seed=5)
    noise = noisy.astype(np.float64) - clean
    level = 10 * np.log10(np.mean(noise**2) / np.mean(clean.astype(np.float64) ** 2))
    assert level == pytest.approx(-35.0, abs=3.0)
    # Pinkish: more energy below 1 kHz than above 4 kHz per Hz.
    spec = np.abs(np.fft.rfft(noise[0])) ** 2
    f = np.fft.rfftfreq(noise.shape[1], 1 / SR)
    assert spec[(f > 100) & (f < 1000)].mean() > 4 * spec[(f > 4000) & (f < 16000)].mean()


def test_moving_source_and_turning_listener_have_no_clicks(hrirs) -> None:
    f0 = 300.0
    t = np.arange(SR) / SR
    x = 0.5 * np.sin(2 * np.pi * f0 * t)
    # Fast orbit (one turn per second) and a turning head; all paths carry only f0.
    y = render_room(
        x, SR, OrbitTrajectory(1.2, 1.0), TurningHead(90.0), RoomConfig.demo(**DRY), hrirs
    )
    y = y[:, 4800:]  # skip the onset of the sine
    step = np.max(np.abs(np.diff(y, axis=-1)))
    bound = 2.0 * 2 * np.pi * f0 / SR * np.max(np.abs(y))  # a sinusoid's steepest slope, x2
    assert step < bound
    assert np.all(np.isfinite(y))


def test_speaker_outside_the_room_is_an_error(hrirs) -> None:
    with pytest.raises(ConfigError, match="leaves the room"):
        render_room(np.zeros(4800), SR, Pose((0.0, -3.0, 0.0)), Pose(), RoomConfig.demo(), hrirs)
