"""Poses, frame conventions (x forward, y right, z up), slerp and trajectories."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from livesense.audio.geometry import (
    EAR_OFFSETS,
    Pose,
    direction_angles,
    ear_distances,
    ear_positions,
    quat_conjugate,
    quat_multiply,
    quat_rotate,
    quat_to_matrix,
    slerp,
    source_direction,
    yaw_quaternion,
)
from livesense.audio.trajectory import (
    OrbitTrajectory,
    PoseFileTrajectory,
    StaticTrajectory,
    as_trajectory,
)
from livesense.errors import ConfigError


@pytest.mark.parametrize(
    ("point", "az", "el"),
    [
        ((1, 0, 0), 0.0, 0.0),
        ((0, 1, 0), 90.0, 0.0),  # y is the listener's right: positive azimuth
        ((0, -1, 0), -90.0, 0.0),
        ((-1, 0, 0), 180.0, 0.0),
        ((1, 1, 0), 45.0, 0.0),
        ((0, 0, 2), 0.0, 90.0),
        ((1, 0, 1), 0.0, 45.0),
        ((1, 0, -1), 0.0, -45.0),
    ],
)
def test_azimuth_elevation_of_simple_points(point, az, el):
    a, e, d = source_direction(point, Pose())
    assert a == pytest.approx(az, abs=1e-9)
    assert e == pytest.approx(el, abs=1e-9)
    assert d == pytest.approx(np.linalg.norm(point))


def test_positive_yaw_turns_right():
    q = yaw_quaternion(90.0)
    np.testing.assert_allclose(quat_rotate(q, [1.0, 0, 0]), [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(Pose.from_yaw_pitch(yaw=90).forward, [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(Pose.from_yaw_pitch(pitch=90).forward, [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(Pose.from_yaw_pitch(yaw=-90, pitch=30).forward,
                               [0, -np.cos(np.pi / 6), 0.5], atol=1e-12)  # fmt: skip


def test_turned_listener_hears_front_source_on_the_left():
    listener = Pose.from_yaw_pitch(yaw=90)  # facing +y, the world's right
    az, el, d = source_direction((1, 0, 0), listener)
    assert az == pytest.approx(-90.0) and el == pytest.approx(0.0) and d == pytest.approx(1.0)
    # After turning right, the left ear points to the old front (+x).
    np.testing.assert_allclose(
        ear_positions(listener), [[0.0875, 0, 0], [-0.0875, 0, 0]], atol=1e-12
    )
    # Listener moved and turned: source straight ahead of it.
    moved = Pose.from_yaw_pitch((2, 3, 0), yaw=180)
    assert source_direction((0, 3, 0), moved)[0] == pytest.approx(0.0, abs=1e-9)


def test_ear_positions_and_distances():
    np.testing.assert_allclose(ear_positions(Pose()), EAR_OFFSETS)
    d_left, d_right = ear_distances((0, 1, 0), Pose())
    assert d_right == pytest.approx(1 - 0.0875) and d_left == pytest.approx(1 + 0.0875)


def test_quaternion_matches_scipy_scalar_last():
    rng = np.random.default_rng(0)
    q = rng.standard_normal((20, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    v = rng.standard_normal((20, 3))
    ref = Rotation.from_quat(q)
    np.testing.assert_allclose(quat_to_matrix(q), ref.as_matrix(), atol=1e-12)
    np.testing.assert_allclose(quat_rotate(q, v), ref.apply(v), atol=1e-12)
    np.testing.assert_allclose(
        quat_to_matrix(quat_multiply(q[:10], q[10:])), (ref[:10] * ref[10:]).as_matrix(), atol=1e-12
    )


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(-1, 1), min_size=4, max_size=4),
    st.lists(st.floats(-5, 5), min_size=3, max_size=3),
)
def test_rotation_roundtrip_property(qv, v):
    q = np.array(qv)
    if np.linalg.norm(q) < 1e-3:
        return
    q = q / np.linalg.norm(q)
    back = quat_rotate(quat_conjugate(q), quat_rotate(q, np.array(v)))
    np.testing.assert_allclose(back, v, atol=1e-9)


def test_slerp_midpoint_endpoints_and_short_arc():
    q0, q1 = yaw_quaternion(0.0), yaw_quaternion(90.0)
    np.testing.assert_allclose(slerp(q0, q1, 0.5), yaw_quaternion(45.0), atol=1e-12)
    np.testing.assert_allclose(slerp(q0, q1, 0.0), q0, atol=1e-12)
    np.testing.assert_allclose(slerp(q0, q1, 1.0), q1, atol=1e-12)
    # -q1 is the same rotation: the midpoint is still a 45 degree yaw (up to sign).
    mid = slerp(q0, -q1, 0.5)
    assert abs(np.dot(mid, yaw_quaternion(45.0))) == pytest.approx(1.0)
    # Identical inputs: no division by zero.
    np.testing.assert_allclose(slerp(q1, q1, 0.3), q1, atol=1e-12)


def test_pose_validation_and_normalisation():
    p = Pose((1, 2, 3), (0, 0, 0, 2))
    assert p.orientation == (0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ConfigError, match="finite"):
        Pose((float("nan"), 0, 0))
    with pytest.raises(ConfigError, match="finite"):
        Pose((0, 0, 0), (0, 0, float("inf"), 1))
    with pytest.raises(ConfigError, match="zero norm"):
        Pose((0, 0, 0), (0, 0, 0, 0))
    with pytest.raises(ConfigError, match="3 values"):
        Pose((0, 0))  # type: ignore[arg-type]


def test_pose_parse():
    assert Pose.parse("1,2,3") == Pose((1, 2, 3))
    assert Pose.parse(" 1, 2 ,3, 0,0,0,1 ") == Pose((1, 2, 3))
    assert Pose.parse("0 1 0 0 0 0.7071068 0.7071068").forward[1] == pytest.approx(1.0)
    for bad, msg in [
        ("1,2", "3 or 7 numbers"),
        ("1,2,3,4", "3 or 7 numbers"),
        ("a,b,c", "must be numbers"),
        ("nan,0,0", "finite"),
        ("1,2,3,0,0,0,0", "zero norm"),
        ("", "3 or 7 numbers"),
    ]:
        with pytest.raises(ConfigError, match=msg) as e:
            Pose.parse(bad)
        assert repr(bad) in str(e.value)


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


def _write(tmp_path, text: str, name: str = "tx_positions.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


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


def test_direction_angles_vectorised():
    az, el = direction_angles(np.array([[1.0, 0, 0], [0, -2, 0], [0, 0, -1]]))
    np.testing.assert_allclose(az, [0, -90, 0], atol=1e-12)
    np.testing.assert_allclose(el, [0, 0, -90], atol=1e-12)
