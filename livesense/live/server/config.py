"""Settings of the live-session server and of each session: defaults written once, here.

``livesense serve`` reads its option defaults from :class:`ServerConfig`; docs/protocol.md
("Limits") documents :class:`SessionLimits`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["WEB_ROOT", "ServerConfig", "SessionLimits"]

WEB_ROOT = Path(__file__).resolve().parent / "web"


@dataclass(frozen=True)
class SessionLimits:
    """Per-session bounds (see docs/protocol.md, "Limits")."""

    chunk_samples: int = 480  # 10 ms at 48 kHz: the audio packet size
    max_pending: int = 50  # packets awaiting the renderer before the socket is paused
    max_out_backlog_s: float = 10.0  # unsent output before the client counts as not reading
    max_frame_bytes: int = 2 * 1024 * 1024  # largest JPEG frame
    max_image_pixels: int = 4096 * 4096
    video_ring: int = 2  # frames waiting for the reasoner (older ones are dropped)
    ask_burst: int = 5  # questions allowed at once ...
    ask_rate: float = 1.0  # ... then this many per second
    miss_window: int = 50  # packets over which deadline misses are counted
    miss_degrade: int = 10  # misses within the window that make a neural session degrade
    reorder_packets: int = 4  # a missing packet is concealed once this many newer ones arrived
    pose_burst: int = 100  # pose messages allowed at once ...
    pose_rate: float = 250.0  # ... then this many per second (head trackers send 60-250)
    pose_horizon_s: float = 10.0  # how far ahead of the audio received a pose.pts may be


@dataclass(frozen=True)
class ServerConfig:
    """Settings of :class:`~livesense.live.server.app.LiveServer`. ``token=None`` disables auth
    (``--no-auth``)."""

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    max_sessions: int = 8
    renderer: str = "neural"  # for sessions whose ``start`` names none
    allow_origins: tuple[str, ...] = ()  # added to the same-host defaults
    max_message_bytes: int = 4 * 1024 * 1024  # websocket hard limit (closes with 1009)
    max_text_bytes: int = 64 * 1024
    start_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    max_session_s: float = 4 * 3600.0
    stats_interval_s: float = 1.0
    finish_timeout_s: float = 10.0  # reasoner finishing after ``stop``
    max_errors: int = 200  # error events before a session is closed with 1008
    max_unstarted_per_ip: int = 16  # connections from one address that have not sent ``start``
    max_unstarted: int = 64  # ... and from all addresses together
    close_timeout_s: float = 2.0  # waiting for the client's close frame (the slot is free)
    drain_timeout_s: float = 10.0  # SIGTERM: how long sessions get to finish before closing
    stall_timeout_s: float = 10.0  # an output backlog that does not move for this long is lost
    # Audio worker threads; None: one per session (at least 2), so every session can have a
    # block waiting in the shared neural engine's next tick at once (they mostly wait).
    audio_threads: int | None = None
    video_threads: int = 4
    limits: SessionLimits = field(default_factory=SessionLimits)
    web_root: Path = WEB_ROOT
