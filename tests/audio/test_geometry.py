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


def test_direction_angles_vectorised():
    az, el = direction_angles(np.array([[1.0, 0, 0], [0, -2, 0], [0, 0, -1]]))
    np.testing.assert_allclose(az, [0, -90, 0], atol=1e-12)
    np.testing.assert_allclose(el, [0, 0, -90], atol=1e-12)
