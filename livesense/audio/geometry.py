"""Poses, head-relative geometry and trajectories for binaural rendering.

Coordinate frame (the Richard et al. 2021 binaural speech data convention, used everywhere in
livesense): **x forward, y to the listener's right, z up**, metres. Because y points right this
frame is left-handed, which changes how the usual formulas read, so the conventions are fixed
here once:

- **Orientation** quaternions are ``(qx, qy, qz, qw)`` (scalar last, Hamilton product, the same
  formula as ``scipy.spatial.transform.Rotation.from_quat``). A pose's quaternion rotates
  vectors from its body frame (x = where it faces) into the world frame.
- A rotation by a positive angle about **+z turns x towards +y**, i.e. a positive **yaw turns
  to the right** (clockwise seen from above). :func:`yaw_quaternion` builds it.
- **Azimuth** is ``atan2(y, x)`` in degrees: 0 straight ahead, **positive to the right**
  (+90 = right, -90 = left, 180 = behind). **Elevation** is positive up (+90 = above).
  SOFA files count azimuth the other way (towards the left); :mod:`livesense.audio.hrtf`
  converts.

Head model: the listener's position is the head centre; the ears sit at
``EAR_OFFSETS = (0, -0.0875, 0)`` (left) and ``(0, +0.0875, 0)`` (right) in the head frame
(a 17.5 cm head width). For the Richard et al. recordings, where the listener position is the
mannequin origin, WarpNet places the ears 0.22 m lower and the speaker's mouth at
:data:`WARPNET_MOUTH_OFFSET` from the tracked speaker pose; the DSP renderer takes such offsets
as configuration. Trajectories (poses over time) and the pose schedule renderers play are in
:mod:`livesense.audio.trajectory`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from livesense.errors import ConfigError

__all__ = [
    "DEFAULT_LISTENER",
    "DEFAULT_SPEAKER",
    "EAR_OFFSETS",
    "SPEED_OF_SOUND",
    "WARPNET_EAR_OFFSETS",
    "WARPNET_MOUTH_OFFSET",
    "Pose",
    "PoseArray",
    "direction_angles",
    "ear_distances",
    "ear_positions",
    "head_relative",
    "quat_conjugate",
    "quat_from_axis_angle",
    "quat_multiply",
    "quat_rotate",
    "quat_to_matrix",
    "slerp",
    "source_direction",
    "yaw_quaternion",
]

SPEED_OF_SOUND = 343.0  # m/s
EAR_OFFSETS = np.array([[0.0, -0.0875, 0.0], [0.0, 0.0875, 0.0]])  # (2, 3): left, right
WARPNET_EAR_OFFSETS = np.array([[0.0, -0.08, -0.22], [0.0, 0.08, -0.22]])  # (2, 3)
WARPNET_MOUTH_OFFSET = (0.09, 0.0, -0.20)
IDENTITY = (0.0, 0.0, 0.0, 1.0)


# ----------------------------------------------------------------------------- quaternions


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b`` of (..., 4) scalar-last quaternions (apply b, then a)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ax, ay, az, aw = np.moveaxis(a, -1, 0)
    bx, by, bz, bw = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ],
        axis=-1,
    )


def quat_conjugate(q: np.ndarray) -> np.ndarray:
    """Inverse of unit quaternions (..., 4)."""
    q = np.asarray(q, dtype=np.float64)
    return q * np.array([-1.0, -1.0, -1.0, 1.0])


def quat_rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors (..., 3) by unit quaternions (..., 4) (broadcasting), ``q v q*``."""
    q, v = np.asarray(q, dtype=np.float64), np.asarray(v, dtype=np.float64)
    u, w = q[..., :3], q[..., 3:]
    t = 2.0 * _cross(u, v)
    return v + w * t + _cross(u, t)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product of (..., 3) arrays (broadcasting); cheaper than ``np.cross`` for small ones."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    return np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) of unit quaternions (..., 4); ``R @ v == quat_rotate(q, v)``."""
    x, y, z, w = np.moveaxis(np.asarray(q, dtype=np.float64), -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )


def quat_from_axis_angle(axis: Sequence[float], degrees: float | np.ndarray) -> np.ndarray:
    """Quaternion(s) (..., 4) rotating by ``degrees`` about ``axis`` (right-hand rule formula)."""
    ax = np.asarray(axis, dtype=np.float64)
    ax = ax / np.linalg.norm(ax)
    half = np.radians(np.asarray(degrees, dtype=np.float64)) / 2
    s = np.sin(half)[..., None]
    return np.concatenate([s * ax, np.cos(half)[..., None]], axis=-1)


def yaw_quaternion(degrees: float | np.ndarray) -> np.ndarray:
    """Rotation about +z by ``degrees``; positive turns forward (x) towards the right (y)."""
    return quat_from_axis_angle((0.0, 0.0, 1.0), degrees)


def slerp(q0: np.ndarray, q1: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions (..., 4) at fractions ``t`` (...).

    Takes the shorter arc (``q`` and ``-q`` are the same rotation); falls back to normalised
    linear interpolation when the two are nearly equal.
    """
    q0, q1 = np.asarray(q0, dtype=np.float64), np.asarray(q1, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)[..., None]
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.clip(np.abs(dot), 0.0, 1.0)
    theta = np.arccos(dot)
    sin_theta = np.sin(theta)
    near = sin_theta < 1e-6
    safe = np.where(near, 1.0, sin_theta)
    w0 = np.where(near, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    w1 = np.where(near, t, np.sin(t * theta) / safe)
    q = w0 * q0 + w1 * q1
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


# ----------------------------------------------------------------------------- poses


def finite_tuple(values: Sequence[float], n: int, what: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be {n} numbers, got {values!r}") from None
    if len(vals) != n:
        raise ConfigError(f"{what} must have {n} values, got {len(vals)}: {values!r}")
    if not all(math.isfinite(v) for v in vals):
        raise ConfigError(f"{what} must be finite (no NaN/inf), got {vals}")
    return vals


@dataclass(frozen=True)
class Pose:
    """Position (x, y, z) in metres and orientation quaternion (qx, qy, qz, qw), normalised.

    Raises :class:`ConfigError` for non-finite values or a zero-norm quaternion.
    """

    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    orientation: tuple[float, float, float, float] = IDENTITY

    def __post_init__(self) -> None:
        pos = finite_tuple(self.position, 3, "pose position (x, y, z)")
        q = finite_tuple(self.orientation, 4, "pose orientation (qx, qy, qz, qw)")
        norm = math.hypot(*q)  # no overflow of the squares (components up to ~1e307)
        if norm < 1e-8:
            raise ConfigError(f"pose orientation quaternion has zero norm: {q}")
        if math.isinf(norm):  # larger still: scale down first
            big = max(abs(v) for v in q)
            q = tuple(v / big for v in q)
            norm = math.hypot(*q)
        object.__setattr__(self, "position", pos)
        object.__setattr__(self, "orientation", tuple(v / norm for v in q))

    @classmethod
    def parse(cls, text: str) -> Pose:
        """Parse ``"x,y,z"`` or ``"x,y,z,qx,qy,qz,qw"`` (commas and/or spaces), e.g. a CLI flag."""
        parts = [p for p in text.replace(",", " ").split() if p]
        if len(parts) not in (3, 7):
            raise ConfigError(
                f"invalid pose {text!r}: expected 'x,y,z' or 'x,y,z,qx,qy,qz,qw' "
                f"(3 or 7 numbers), got {len(parts)}"
            )
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            raise ConfigError(f"invalid pose {text!r}: values must be numbers") from None
        try:
            if len(vals) == 3:
                return cls(tuple(vals))  # type: ignore[arg-type]
            return cls(tuple(vals[:3]), tuple(vals[3:]))  # type: ignore[arg-type]
        except ConfigError as e:
            raise ConfigError(f"invalid pose {text!r}: {e}") from None

    @classmethod
    def from_values(cls, values: Sequence[float]) -> Pose:
        """A pose from its 7 numbers ``(x, y, z, qx, qy, qz, qw)`` (what a
        :class:`~livesense.streaming.frames.PoseUpdate` carries); inverse of :meth:`values`."""
        if len(values) != 7:
            raise ConfigError(f"a pose needs 7 numbers (x y z qx qy qz qw), got {len(values)}")
        return cls(tuple(values[:3]), tuple(values[3:]))  # type: ignore[arg-type]

    @property
    def values(self) -> tuple[float, ...]:
        """The 7 numbers ``(x, y, z, qx, qy, qz, qw)``."""
        return (*self.position, *self.orientation)

    @classmethod
    def from_yaw_pitch(
        cls, position: Sequence[float] = (0.0, 0.0, 0.0), yaw: float = 0.0, pitch: float = 0.0
    ) -> Pose:
        """Pose facing ``yaw`` degrees (positive = right) and ``pitch`` degrees (positive = up)."""
        # Pitch about +y turns x towards -z, so "nose up" is a negative angle about y.
        q = quat_multiply(yaw_quaternion(yaw), quat_from_axis_angle((0.0, 1.0, 0.0), -pitch))
        return cls(tuple(position), tuple(q))  # type: ignore[arg-type]

    @property
    def forward(self) -> np.ndarray:
        """Unit vector (3,) the pose faces (its body x axis) in world coordinates."""
        return quat_rotate(np.array(self.orientation), np.array([1.0, 0.0, 0.0]))

    def as_array(self) -> np.ndarray:
        """(7,) float64: x, y, z, qx, qy, qz, qw."""
        return np.array(self.position + self.orientation)


DEFAULT_SPEAKER = Pose(
    (1.5, 0.0, 0.0)
)  # 1.5 m straight ahead: every renderer's and command's default
DEFAULT_LISTENER = Pose()  # at the origin, facing +x


class PoseArray(NamedTuple):
    """Poses at T times: positions (T, 3) and unit quaternions (T, 4), float64."""

    positions: np.ndarray
    orientations: np.ndarray

    def pose(self, i: int) -> Pose:
        """The i-th pose as a :class:`Pose`."""
        return Pose(tuple(self.positions[i]), tuple(self.orientations[i]))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- geometry


def head_relative(
    source: np.ndarray, listener_position: np.ndarray, listener_orientation: np.ndarray
) -> np.ndarray:
    """World points (..., 3) expressed in the listener's head frame (..., 3) (broadcasting)."""
    rel = np.asarray(source, dtype=np.float64) - np.asarray(listener_position, dtype=np.float64)
    return quat_rotate(quat_conjugate(listener_orientation), rel)


def direction_angles(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth (positive right) and elevation (positive up) in degrees of vectors (..., 3)."""
    v = np.asarray(v, dtype=np.float64)
    az = np.degrees(np.arctan2(v[..., 1], v[..., 0]))
    el = np.degrees(np.arctan2(v[..., 2], np.hypot(v[..., 0], v[..., 1])))
    return az, el


def source_direction(source: Pose | Sequence[float], listener: Pose) -> tuple[float, float, float]:
    """(azimuth deg, elevation deg, distance m) of a source point seen from the listener's head."""
    pos = source.position if isinstance(source, Pose) else source
    rel = head_relative(
        np.asarray(pos), np.array(listener.position), np.array(listener.orientation)
    )
    az, el = direction_angles(rel)
    return float(az), float(el), float(np.linalg.norm(rel))


def ear_positions(listener: Pose, offsets: np.ndarray = EAR_OFFSETS) -> np.ndarray:
    """World positions (2, 3) of the left and right ear of ``listener``."""
    q = np.array(listener.orientation)
    return np.array(listener.position) + quat_rotate(q, np.asarray(offsets, dtype=np.float64))


def ear_distances(
    source: Pose | Sequence[float], listener: Pose, offsets: np.ndarray = EAR_OFFSETS
) -> np.ndarray:
    """Distances (2,) in metres from a source point to the left and right ear."""
    pos = np.asarray(source.position if isinstance(source, Pose) else source, dtype=np.float64)
    return np.linalg.norm(ear_positions(listener, offsets) - pos, axis=-1)
