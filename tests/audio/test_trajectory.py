"""Trajectories and the pose schedule renderers play."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livesense.audio.geometry import (
    Pose,
    source_direction,
    yaw_quaternion,
)
from livesense.audio.trajectory import (
    OrbitTrajectory,
    PoseControlled,
    PoseFileTrajectory,
    PoseSchedule,
    StaticTrajectory,
    as_trajectory,
    ring_point,
)
from livesense.errors import ConfigError
from livesense.streaming.frames import PoseUpdate


def _write(tmp_path, text: str, name: str = "tx_positions.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_static_trajectory_vectorised():
    traj = as_trajectory(Pose((1, 2, 3)))
    assert isinstance(traj, StaticTrajectory)
    pa = traj.at(np.linspace(0, 5, 7))
    assert pa.positions.shape == (7, 3) and pa.orientations.shape == (7, 4)
    np.testing.assert_allclose(pa.positions, np.tile([1.0, 2, 3], (7, 1)))
    assert traj.pose(10.0) == Pose((1, 2, 3))
    with pytest.raises(TypeError):
        as_trajectory((1, 2, 3))  # type: ignore[arg-type]


def test_orbit_positions_and_facing():
    orbit = OrbitTrajectory(radius=2.0, period_s=4.0, height=0.5)
    p0 = orbit.pose(0.0)
    np.testing.assert_allclose(p0.position, [2, 0, 0.5], atol=1e-12)
    np.testing.assert_allclose(p0.forward, [-1, 0, 0], atol=1e-12)  # faces the listener
    p1 = orbit.pose(1.0)  # a quarter period: moved to the listener's right
    np.testing.assert_allclose(p1.position, [0, 2, 0.5], atol=1e-12)
    np.testing.assert_allclose(p1.forward, [0, -1, 0], atol=1e-12)
    assert source_direction(p1, Pose())[0] == pytest.approx(90.0)
    back = OrbitTrajectory(1.0, -4.0, start_azimuth=90.0, center=(1, 1, 0)).pose(1.0)
    np.testing.assert_allclose(back.position, [2, 1, 0], atol=1e-12)  # counter-clockwise
    with pytest.raises(ConfigError):
        OrbitTrajectory(radius=0.0)
    with pytest.raises(ConfigError):
        OrbitTrajectory(period_s=0.0)
    with pytest.raises(ConfigError):
        OrbitTrajectory(height=float("nan"))


def test_pose_file_interpolation_at_120hz(tmp_path):
    q90 = yaw_quaternion(90.0)
    rows = [
        [0, 0, 0, 0, 0, 0, 1],
        [1, 2, 0, *q90],
        [1, 2, 0, *(-q90)],  # same rotation, opposite sign: must not spin around
    ]
    path = _write(tmp_path, "\n".join(" ".join(f"{v:.9f}" for v in r) for r in rows) + "\n")
    traj = PoseFileTrajectory(path)
    assert len(traj) == 3 and traj.duration_s == pytest.approx(2 / 120)
    pa = traj.at(np.array([0.0, 0.5 / 120, 1 / 120, 1.5 / 120, 10.0, -1.0]))
    np.testing.assert_allclose(pa.positions[1], [0.5, 1.0, 0], atol=1e-9)
    np.testing.assert_allclose(
        abs(np.dot(pa.orientations[1], yaw_quaternion(45.0))), 1.0, atol=1e-9
    )
    np.testing.assert_allclose(abs(np.dot(pa.orientations[3], q90)), 1.0, atol=1e-9)
    np.testing.assert_allclose(pa.positions[4], [1, 2, 0], atol=1e-9)  # held after the end
    np.testing.assert_allclose(pa.positions[5], [0, 0, 0], atol=1e-9)  # held before the start
    # At 48 kHz a row lasts 400 samples: sample 200 is half-way between rows 0 and 1.
    assert traj.pose(200 / 48000).position[0] == pytest.approx(0.5)


def test_pose_file_single_row(tmp_path):
    traj = PoseFileTrajectory(_write(tmp_path, "# header\n1 0 0 0 0 0 1\n\n"))
    assert traj.pose(3.0).position == (1.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("0 0 0 0 0 0 1\n1 2 3\n", "line 2: expected 7 values"),
        ("0 0 0 0 0 0 1\n0 0 x 0 0 0 1\n", "line 2: non-numeric"),
        ("0 0 0 0 0 0 1\n0 0 0 0 0 0 1\nnan 0 0 0 0 0 1\n", "line 3: non-finite"),
        ("0 0 0 0 0 0 0\n", "line 1: orientation quaternion has zero norm"),
        ("", "contains no poses"),
        ("\n# only a comment\n", "contains no poses"),
    ],
)
def test_pose_file_errors_name_file_and_line(tmp_path, text, msg):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=msg) as e:
        PoseFileTrajectory(path)
    assert str(path) in str(e.value)


def test_pose_file_missing_or_unreadable(tmp_path):
    with pytest.raises(ConfigError, match="pose file not found"):
        PoseFileTrajectory(tmp_path / "nope.txt")
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ConfigError, match="cannot read pose file"):
        PoseFileTrajectory(binary)
    with pytest.raises(ConfigError, match="rate"):
        PoseFileTrajectory(_write(tmp_path, "0 0 0 0 0 0 1\n"), rate=0.0)


def test_orbit_around_a_listener_starts_at_the_speaker():
    listener = Pose((1.0, 2.0, 0.5))
    speaker = Pose((1.0, 3.5, 0.8))  # 1.5 m to the right, 0.3 m up
    orbit = OrbitTrajectory.around(speaker, listener, period_s=4.0)
    assert orbit.radius == pytest.approx(1.5) and orbit.height == pytest.approx(0.3)
    np.testing.assert_allclose(orbit.pose(0.0).position, speaker.position, atol=1e-12)
    az, _, dist = source_direction(orbit.pose(1.0), listener)  # a quarter turn later: behind
    assert az == pytest.approx(180.0, abs=1e-9) or az == pytest.approx(-180.0, abs=1e-9)
    assert dist == pytest.approx(np.hypot(1.5, 0.3))
    with pytest.raises(ConfigError, match="0.1 m"):
        OrbitTrajectory.around(Pose((1.0, 2.05, 0.5)), listener, 4.0)
    np.testing.assert_allclose(ring_point((1, 1, 0), 2.0, 90.0, 0.5), (1, 3, 0.5), atol=1e-12)
    assert ring_point((0, 0, 0), 1.0, np.zeros(5)).shape == (5, 3)


def _naive_schedule_at(entries, samples, t):
    """The reference: each sample takes the last entry (in order set, same start replaced)
    whose start is <= the sample; the initial trajectory otherwise."""
    table: dict[float, object] = {}
    for start, traj in entries:
        table[start] = traj
    starts = sorted(table)
    pos, quat = [], []
    for s, tt in zip(samples, t, strict=True):
        traj = next((table[b] for b in reversed(starts) if b <= s), None)
        p = traj.pose(tt)
        pos.append(p.position)
        quat.append(p.orientation)
    return np.array(pos), np.array(quat)


poses = st.builds(
    lambda x, y, yaw: Pose((x, y, 0.0), tuple(yaw_quaternion(yaw))),
    st.floats(-5, 5),
    st.floats(-5, 5),
    st.floats(-180, 180),
)


@settings(max_examples=60, deadline=None)
@given(
    updates=st.lists(st.tuples(st.integers(0, 5000), poses), max_size=8),
    samples=st.lists(st.integers(0, 6000), min_size=1, max_size=30),
    prune_at=st.integers(0, 6000),
)
def test_pose_schedule_matches_a_naive_reference_and_pruning_keeps_the_future(
    updates, samples, prune_at
):
    initial = OrbitTrajectory(1.0, 2.0)
    sched = PoseSchedule(initial)
    entries = [(-np.inf, initial)]
    for start, pose in updates:
        sched.set(pose, float(start))
        entries.append((float(start), as_trajectory(pose)))
    s = np.array(sorted(samples))
    t = s / 48000.0
    got = sched.at(s, t)
    want_p, want_q = _naive_schedule_at(entries, s, t)
    np.testing.assert_allclose(got.positions, want_p, atol=1e-12)
    np.testing.assert_allclose(got.orientations, want_q, atol=1e-12)
    sched.prune(prune_at)
    later = s >= prune_at
    if later.any():
        after = sched.at(s[later], t[later])
        np.testing.assert_allclose(after.positions, want_p[later], atol=1e-12)
    assert len(sched) >= 1 and (sched.only is not None) == (len(sched) == 1)


class _Target(PoseControlled):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Pose, int | None]] = []

    def set_speaker_pose(self, pose, at_sample=None):
        self.calls.append(("speaker", pose, at_sample))

    def set_listener_pose(self, pose, at_sample=None):
        self.calls.append(("listener", pose, at_sample))


def test_pose_update_frames_become_pose_calls():
    target = _Target()
    sp, li = Pose((1.0, 2.0, 0.0)), Pose.from_yaw_pitch(yaw=30.0)
    target.apply_pose(PoseUpdate(480, speaker=sp.values))
    target.apply_pose(PoseUpdate(960, listener=li.values))
    assert target.calls == [("speaker", sp, 480), ("listener", li, 960)]
    assert Pose.from_values(sp.values) == sp
    with pytest.raises(ConfigError, match="7 numbers"):
        Pose.from_values((1.0, 2.0))
