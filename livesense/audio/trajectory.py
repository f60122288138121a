"""Trajectories (a pose as a function of time) and the pose schedule every renderer plays.

- :class:`StaticTrajectory`, :class:`OrbitTrajectory` (a source circling a centre; also built
  around a listener from a speaker pose), :class:`PoseFileTrajectory` (a Richard et al.
  ``tx_positions.txt``, 120 Hz, interpolated).
- :class:`PoseSchedule`: a trajectory from the stream start, replaced by later ones from given
  input samples (live pose updates). The DSP and neural renderers both keep one per speaker and
  listener, so a pose update means the same thing to both.
- :class:`PoseControlled`: the mixin that turns a :class:`~livesense.streaming.frames.PoseUpdate`
  frame into ``set_speaker_pose`` / ``set_listener_pose`` calls.
"""

from __future__ import annotations

import bisect
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from livesense.audio.geometry import Pose, PoseArray, finite_tuple, quat_to_matrix, slerp
from livesense.errors import ConfigError
from livesense.streaming.frames import PoseUpdate

__all__ = [
    "OrbitTrajectory",
    "PoseControlled",
    "PoseFileTrajectory",
    "PoseSchedule",
    "StaticTrajectory",
    "Trajectory",
    "as_trajectory",
    "ring_point",
]


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
        vals = finite_tuple((radius, period_s, height, start_azimuth), 4, "orbit parameters")
        if radius <= 0:
            raise ConfigError(f"orbit radius must be > 0 m, got {radius}")
        if period_s == 0:
            raise ConfigError("orbit period_s must be non-zero")
        self.radius, self.period_s, self.height, self.start_azimuth = vals
        self.center = np.array(finite_tuple(center, 3, "orbit center"))

    @classmethod
    def around(cls, speaker: Pose, listener: Pose, period_s: float) -> OrbitTrajectory:
        """The orbit of ``speaker`` around ``listener``: its horizontal distance is the radius,
        its height over the listener the height, its azimuth the start (``--orbit``)."""
        rel = np.subtract(speaker.position, listener.position)
        radius = float(np.hypot(rel[0], rel[1]))
        if radius < 0.1:
            raise ConfigError("an orbit needs a speaker at least 0.1 m from the listener")
        az = float(np.degrees(np.arctan2(rel[1], rel[0])))
        return cls(radius, period_s, float(rel[2]), az, listener.position)

    def at(self, t: np.ndarray) -> PoseArray:
        az = self.start_azimuth + 360.0 * np.asarray(t, dtype=np.float64) / self.period_s  # (T,)
        pos = ring_point(self.center, self.radius, az, self.height)  # (T, 3)
        rad = np.radians(az)
        half = (rad + np.pi) / 2  # yaw az + 180: facing the centre (horizontally)
        quat = np.zeros((rad.shape[0], 4))
        quat[:, 2], quat[:, 3] = np.sin(half), np.cos(half)
        return PoseArray(pos, quat)


def ring_point(
    center: Sequence[float], radius: float, azimuth: float | np.ndarray, height: float = 0.0
) -> np.ndarray:
    """Points (..., 3) at ``radius`` m and ``azimuth`` degrees (positive right) around
    ``center``, ``height`` m above it."""
    rad = np.radians(np.asarray(azimuth, dtype=np.float64))
    c = np.asarray(center, dtype=np.float64)
    z = np.broadcast_to(c[2] + height, rad.shape)
    return np.stack([c[0] + radius * np.cos(rad), c[1] + radius * np.sin(rad), z], axis=-1)


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


class PoseSchedule:
    """What a renderer plays for one speaker or listener: a trajectory from the stream start,
    replaced by later ones from given input samples.

    :meth:`set` schedules a trajectory (or fixed pose) from sample ``start`` on, replacing one
    scheduled at the same sample; :meth:`at` evaluates the schedule at absolute samples;
    :meth:`prune` forgets entries no sample from ``next_sample`` on can use.
    """

    def __init__(self, initial: Trajectory | Pose):
        self._starts: list[float] = [-math.inf]
        self._trajs: list[Trajectory] = [as_trajectory(initial)]

    def __len__(self) -> int:
        return len(self._starts)

    @property
    def only(self) -> Trajectory | None:
        """The trajectory when nothing else is scheduled (renderers take a fast path)."""
        return self._trajs[0] if len(self._trajs) == 1 else None

    def set(self, pose: Trajectory | Pose, start: float) -> None:
        """Play ``pose`` from input sample ``start`` on (replacing what was set for ``start``)."""
        traj = as_trajectory(pose)
        i = bisect.bisect_left(self._starts, start)
        if i < len(self._starts) and self._starts[i] == start:
            self._trajs[i] = traj
        else:
            self._starts.insert(i, start)
            self._trajs.insert(i, traj)

    def at(self, samples: np.ndarray, t: np.ndarray) -> PoseArray:
        """Poses at absolute input samples (T,) (compared with the schedule) and times t (T,)
        in seconds (passed to the trajectories)."""
        if len(self._trajs) == 1 or samples.size == 0:
            return self._trajs[0].at(t)
        # Only the entry in force at the first sample and those starting within the block
        # matter: O(log n + entries in the block), however many lie ahead.
        lo = bisect.bisect_right(self._starts, float(samples.min())) - 1
        hi = bisect.bisect_right(self._starts, float(samples.max()))
        base = self._trajs[lo].at(t)
        if hi - lo == 1:
            return base
        pos, quat = np.array(base.positions), np.array(base.orientations)
        for start, traj in zip(self._starts[lo + 1 : hi], self._trajs[lo + 1 : hi], strict=True):
            m = samples >= start
            sub = traj.at(t[m])
            pos[m], quat[m] = sub.positions, sub.orientations
        return PoseArray(pos, quat)

    def prune(self, next_sample: float) -> None:
        """Drop entries that no sample from ``next_sample`` on can use."""
        k = bisect.bisect_right(self._starts, next_sample, lo=1) - 1
        if k > 0:
            del self._starts[:k], self._trajs[:k]


class PoseControlled(ABC):
    """A renderer whose speaker and listener move: ``set_speaker_pose`` /
    ``set_listener_pose`` (a pose or trajectory from an input sample on), and
    :meth:`apply_pose` for a :class:`~livesense.streaming.frames.PoseUpdate` frame."""

    @abstractmethod
    def set_speaker_pose(self, pose: Pose | Trajectory, at_sample: int | None = None) -> None:
        """Move the speaker to ``pose`` from input sample ``at_sample`` (None: the next)."""

    @abstractmethod
    def set_listener_pose(self, pose: Pose | Trajectory, at_sample: int | None = None) -> None:
        """Move/turn the listener to ``pose`` from input sample ``at_sample`` (None: the next)."""

    def apply_pose(self, update: PoseUpdate) -> None:
        """Apply a pose-update frame (its poses as 7 numbers, effective from ``update.pts``)."""
        if update.speaker is not None:
            self.set_speaker_pose(Pose.from_values(update.speaker), update.pts)
        if update.listener is not None:
            self.set_listener_pose(Pose.from_values(update.listener), update.pts)
