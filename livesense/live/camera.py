"""Camera sources: any PyAV input (a v4l2 webcam, an rtsp/http stream, a ``lavfi:`` synthetic
source, or a file) decoded on a thread into :class:`VideoFrame` s.

Devices and network streams are paced by their own clock and are never paced again; synthetic
``lavfi`` graphs and files produce frames as fast as they can, so those are released at
``start + pts`` (one clock per session).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from livesense.errors import MediaError
from livesense.media.video import iter_video_frames
from livesense.streaming.clock import PtsPacer
from livesense.streaming.frames import VideoFrame


@dataclass(frozen=True)
class CameraSpec:
    """Where frames come from and whether they need pacing."""

    source: str
    format: str | None
    paced_by_source: bool  # a live device or stream: its own clock paces it

    @classmethod
    def parse(cls, spec: str) -> CameraSpec:
        """``/dev/videoN`` (v4l2), ``lavfi:GRAPH``, ``rtsp://...``/``http(s)://...``, or a file."""
        if not spec:
            raise MediaError("empty camera; give /dev/video0, a URL, lavfi:GRAPH or a file")
        if spec.startswith("lavfi:"):
            graph = spec[len("lavfi:") :]
            if not graph:
                raise MediaError(
                    "lavfi: needs a filter graph, e.g. lavfi:testsrc2=size=320x240:rate=10"
                )
            return cls(graph, "lavfi", False)
        if spec.startswith("/dev/video"):
            if not Path(spec).exists():
                raise MediaError(
                    f"no camera at {spec}; pass --camera with another /dev/videoN, an "
                    "rtsp/http URL, a video file, or lavfi:testsrc2=size=320x240:rate=10"
                )
            return cls(spec, "v4l2", True)
        if "://" in spec:
            return cls(spec, None, True)
        return cls(spec, None, False)


class CameraSource:
    """Decodes frames on a daemon thread and hands each to ``on_frame`` (which must not block).

    ``max_size`` bounds the longer side of the frames; ``duration`` stops after that much
    stream time. ``error`` holds a decode failure after the thread ends.
    """

    def __init__(
        self,
        spec: CameraSpec,
        on_frame: Callable[[VideoFrame], None],
        max_size: int | None = 640,
        duration: float | None = None,
    ):
        self.spec = spec
        self.on_frame = on_frame
        self.duration = duration
        # Opens now so a bad camera is reported before anything starts.
        self._reader = iter_video_frames(spec.source, max_size=max_size, format=spec.format)
        self.pacer = PtsPacer(realtime=not spec.paced_by_source)
        self._stop = threading.Event()
        self.done = threading.Event()
        self.frames = 0
        self.last_pts = 0.0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="livesense-camera", daemon=True)

    def start(self) -> CameraSource:
        self._thread.start()
        return self

    def _run(self) -> None:
        first: float | None = None
        try:
            for frame in self._reader:
                if self._stop.is_set():
                    break
                if first is None:
                    first = frame.pts
                t = frame.pts - first  # stream time from the first frame
                if self.duration is not None and t >= self.duration:
                    break
                self.pacer.wait(t)
                if self._stop.is_set():
                    break
                self.last_pts = t
                self.frames += 1
                self.on_frame(VideoFrame(frame.image, t, frame.index))
        except BaseException as exc:
            self.error = exc
        finally:
            self._reader.close()
            self.done.set()

    def stop(self) -> None:
        self._stop.set()
        self.pacer.cancel()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
