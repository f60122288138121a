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
as configuration.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from livesense.errors import ConfigError

__all__ = [
    "EAR_OFFSETS",
    "SPEED_OF_SOUND",
    "WARPNET_EAR_OFFSETS",
    "WARPNET_MOUTH_OFFSET",
    "OrbitTrajectory",
    "Pose",
    "PoseArray",
    "PoseFileTrajectory",
    "StaticTrajectory",
    "Trajectory",
    "as_trajectory",
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


def _finite_tuple(values: Sequence[float], n: int, what: str) -> tuple[float, ...]:
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
        pos = _finite_tuple(self.position, 3, "pose position (x, y, z)")
        q = _finite_tuple(self.orientation, 4, "pose orientation (qx, qy, qz, qw)")
        norm = math.sqrt(sum(v * v for v in q))
        if norm < 1e-8:
            raise ConfigError(f"pose orientation quaternion has zero norm: {q}")
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


# ----------------------------------------------------------------------------- trajectories


class Trajectory(ABC):
    """A pose as a function of time in seconds, evaluated for many times at once."""

    @abstractmethod
    def at(self, t: np.ndarray) -> PoseArray:
        """Poses at times ``t`` (T,) in seconds."""

    def pose(self, t: float) -> Pose:
        """The pose at one time ``t`` (seconds)."""
        return self.at(np.array([float(t)])).pose(0)


class StaticTrajectory(Trajectory):
    """A pose that never changes."""

    def __init__(self, pose: Pose):
        self.pose_ = pose
        self._p = np.array(pose.position)
        self._q = np.array(pose.orientation)
        self.rotation = quat_to_matrix(self._q)  # (3, 3) body -> world

    def at(self, t: np.ndarray) -> PoseArray:
        n = np.shape(t)[0]
        return PoseArray(self._p[None].repeat(n, 0), self._q[None].repeat(n, 0))

    def __repr__(self) -> str:
        return f"StaticTrajectory({self.pose_!r})"


class OrbitTrajectory(Trajectory):
    """A source circling ``center`` at ``radius`` m, ``height`` m above it, facing the centre.

    Its azimuth (as seen from the centre, positive = right) is
    ``start_azimuth + 360 * t / period_s``: a positive period moves it clockwise seen from
    above (front -> right -> back -> left), a negative one counter-clockwise.
    """

    def __init__(
        self,
        radius: float = 1.0,
        period_s: float = 4.0,
        height: float = 0.0,
        start_azimuth: float = 0.0,
        center: Sequence[float] = (0.0, 0.0, 0.0),
    ):
        vals = _finite_tuple((radius, period_s, height, start_azimuth), 4, "orbit parameters")
        if radius <= 0:
            raise ConfigError(f"orbit radius must be > 0 m, got {radius}")
        if period_s == 0:
            raise ConfigError("orbit period_s must be non-zero")
        self.radius, self.period_s, self.height, self.start_azimuth = vals
        self.center = np.array(_finite_tuple(center, 3, "orbit center"))

    def at(self, t: np.ndarray) -> PoseArray:
        az = self.start_azimuth + 360.0 * np.asarray(t, dtype=np.float64) / self.period_s  # (T,)
        rad = np.radians(az)
        pos = np.empty((rad.shape[0], 3))
        pos[:, 0] = self.center[0] + self.radius * np.cos(rad)
        pos[:, 1] = self.center[1] + self.radius * np.sin(rad)
        pos[:, 2] = self.center[2] + self.height
        half = (rad + np.pi) / 2  # yaw az + 180: facing the centre (horizontally)
        quat = np.zeros((rad.shape[0], 4))
        quat[:, 2], quat[:, 3] = np.sin(half), np.cos(half)
        return PoseArray(pos, quat)


class PoseFileTrajectory(Trajectory):
    """Poses read from a Richard et al. ``tx_positions.txt``: rows ``x y z qx qy qz qw``.

    Row ``i`` is the pose at ``i / rate`` seconds (120 Hz: one row per 400 samples at 48 kHz).
    Between rows, positions are interpolated linearly and orientations by slerp; before the
    first row the first pose and after the last row the last pose are held. Any problem with
    the file raises :class:`ConfigError` naming the file (and line).
    """

    def __init__(self, path: str | os.PathLike[str], rate: float = 120.0):
        if not (math.isfinite(rate) and rate > 0):
            raise ConfigError(f"pose file rate must be > 0 Hz, got {rate}")
        self.path = str(path)
        self.rate = float(rate)
        self.positions, self.orientations = _read_pose_file(self.path)  # (R, 3), (R, 4)
        # Make consecutive quaternions share a hemisphere so slerp takes the short arc.
        q = self.orientations
        flips = np.cumprod(np.where(np.sum(q[1:] * q[:-1], axis=-1) < 0, -1.0, 1.0))
        q[1:] *= flips[:, None]

    def __len__(self) -> int:
        return self.positions.shape[0]

    @property
    def duration_s(self) -> float:
        """Time of the last row in seconds."""
        return (len(self) - 1) / self.rate

    def at(self, t: np.ndarray) -> PoseArray:
        last = len(self) - 1
        u = np.clip(np.asarray(t, dtype=np.float64) * self.rate, 0.0, float(last))  # (T,)
        i0 = np.minimum(np.floor(u).astype(np.int64), max(last - 1, 0))
        i1 = np.minimum(i0 + 1, last)
        f = u - i0
        p = self.positions[i0] + f[:, None] * (self.positions[i1] - self.positions[i0])
        return PoseArray(p, slerp(self.orientations[i0], self.orientations[i1], f))


def _read_pose_file(path: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.readlines()
    except FileNotFoundError:
        raise ConfigError(f"pose file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read pose file {path}: {e}") from None
    rows: list[list[float]] = []
    for lineno, line in enumerate(lines, start=1):
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        if len(parts) != 7:
            raise ConfigError(
                f"{path}, line {lineno}: expected 7 values 'x y z qx qy qz qw', got {len(parts)}"
            )
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            raise ConfigError(
                f"{path}, line {lineno}: non-numeric value in {line.strip()!r}"
            ) from None
        if not all(math.isfinite(v) for v in vals):
            raise ConfigError(f"{path}, line {lineno}: non-finite value (NaN/inf) in pose")
        if math.sqrt(sum(v * v for v in vals[3:])) < 1e-8:
            raise ConfigError(f"{path}, line {lineno}: orientation quaternion has zero norm")
        rows.append(vals)
    if not rows:
        raise ConfigError(f"pose file {path} contains no poses")
    arr = np.array(rows, dtype=np.float64)  # (R, 7)
    q = arr[:, 3:] / np.linalg.norm(arr[:, 3:], axis=-1, keepdims=True)
    return arr[:, :3].copy(), q


def as_trajectory(obj: Trajectory | Pose) -> Trajectory:
    """Accept a :class:`Trajectory` or a fixed :class:`Pose`."""
    if isinstance(obj, Trajectory):
        return obj
    if isinstance(obj, Pose):
        return StaticTrajectory(obj)
    raise TypeError(f"expected a Pose or Trajectory, got {type(obj).__name__}")
