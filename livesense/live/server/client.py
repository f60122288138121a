"""Python client for live sessions (``livesense client``); protocol in docs/protocol.md.

:class:`LiveClient` is the low-level async client (connect + ``start``, send audio packets,
JPEG frames, poses, questions, ``stop``; it collects the binaural audio, text events and
stats that come back). :func:`stream_file` replays a recorded file through it at real-time
pace (or as fast as possible) and keeps what came back on every exit (``results.py``:
``binaural.wav``, ``transcript.jsonl``, ``stats.json`` with the close code and reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import numpy as np
from PIL import Image
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from livesense.audio.geometry import DEFAULT_LISTENER, DEFAULT_SPEAKER, Pose
from livesense.audio.trajectory import OrbitTrajectory
from livesense.errors import LivesenseError, MediaError
from livesense.live.server.protocol import (
    Kind,
    StartConfig,
    decode_audio,
    encode_audio,
    pack_frame,
    pose_to_json,
    unpack_frame,
)
from livesense.live.server.results import ClientResult, end_error, save_result
from livesense.media.audio import AudioReader, iter_audio_chunks
from livesense.media.video import has_video, iter_video_frames
from livesense.streaming.frames import Question

__all__ = [
    "ClientError",
    "ClientOptions",
    "ClientResult",
    "LiveClient",
    "save_result",
    "stream_file",
]


class ClientError(LivesenseError):
    """Connection refused, auth rejected, session rejected or ended abnormally."""


class LiveClient:
    """Async client for one session: ``async with LiveClient(url, start) as c: ...``."""

    def __init__(self, url: str, start: StartConfig, token: str | None = None):
        self.url = _with_token(url, token)
        self.start = start
        self.ws: Any = None
        self.ready: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self.stats: dict[str, Any] | None = None
        self.done: dict[str, Any] | None = None
        self.latencies_ms: list[float] = []
        self._out: list[np.ndarray] = []
        self._out_samples = 0
        self._seq = 0
        self._vseq = 0
        self.samples_sent = 0
        self._sent_at: dict[int, float] = {}  # input packet end sample -> send time
        self._pending_ends: list[int] = []
        self._reader: asyncio.Task | None = None
        self._done_evt = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""
        self.error: str | None = None  # a server message the client could not use
        self.on_event: Any = None  # optional callback(dict) for text events

    async def __aenter__(self) -> LiveClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self, open_timeout: float = 10.0) -> dict[str, Any]:
        """Open the websocket, send ``start``, wait for ``ready`` (ClientError otherwise)."""
        try:
            self.ws = await connect(
                self.url, open_timeout=open_timeout, max_size=16 * 2**20, compression=None
            )
        except InvalidStatus as e:
            status = e.response.status_code
            what = {401: "authentication rejected (missing or wrong --token)",
                    403: "origin rejected"}.get(status, f"HTTP {status}")  # fmt: skip
            raise ClientError(f"{_safe(self.url)}: {what}") from None
        except (OSError, asyncio.TimeoutError, WebSocketException) as e:
            why = getattr(e, "strerror", None) or str(e) or type(e).__name__
            raise ClientError(f"cannot connect to {_safe(self.url)}: {why}") from None
        msg: dict[str, Any] = {}
        try:
            await self.ws.send(json.dumps(self.start.to_json()))
            first = await asyncio.wait_for(self.ws.recv(), open_timeout)
            msg = json.loads(first) if isinstance(first, str) else {}
            while msg.get("type") == "error":  # a rejected start: error(s), then the close
                self.events.append(msg)
                nxt = await asyncio.wait_for(self.ws.recv(), open_timeout)
                msg = json.loads(nxt) if isinstance(nxt, str) else {}
        except ConnectionClosed:
            await self._closed()
        except asyncio.TimeoutError:
            self.error = f"no 'ready' from {_safe(self.url)} within {open_timeout} s"
        except ValueError:
            self.error = f"{_safe(self.url)}: the server's first message is not JSON"
        if self.close_code is not None or msg.get("type") != "ready":
            raise ClientError(self.result().error or "session rejected")
        self.ready = msg
        self._reader = asyncio.create_task(self._read())
        return msg

    @property
    def chunk_samples(self) -> int:
        return int(self.ready.get("chunk_samples", 480))

    async def send_audio(self, x: np.ndarray) -> None:
        """Send one packet of mono float samples (n <= chunk_samples)."""
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        frame = pack_frame(
            Kind.AUDIO_IN, self._seq, self.samples_sent, encode_audio(x, self.start.format)
        )
        self._seq += 1
        self.samples_sent += x.shape[0]
        self._sent_at[self.samples_sent] = time.perf_counter()
        self._pending_ends.append(self.samples_sent)
        await self.ws.send(frame)

    async def send_jpeg(self, jpeg: bytes, pts_s: float) -> None:
        frame = pack_frame(Kind.VIDEO_IN, self._vseq, round(pts_s * 1e6), jpeg)
        self._vseq += 1
        await self.ws.send(frame)

    async def pose(
        self, speaker: Pose | None = None, listener: Pose | None = None, pts: int | None = None
    ) -> None:
        msg: dict[str, Any] = {"type": "pose"}
        if pts is not None:
            msg["pts"] = int(pts)
        if speaker is not None:
            msg["speaker"] = pose_to_json(speaker)
        if listener is not None:
            msg["listener"] = pose_to_json(listener)
        await self.ws.send(json.dumps(msg))

    async def ask(self, text: str, qid: str = "") -> None:
        await self.ws.send(json.dumps({"type": "ask", "text": text, "id": qid}))

    async def send_json(self, msg: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(msg))

    async def stop(self, timeout: float = 30.0) -> None:
        """Send ``stop`` and wait for ``done`` (ClientError if the session ends without it)."""
        await self.ws.send(json.dumps({"type": "stop"}))
        await self.wait_done(timeout)

    async def wait_done(self, timeout: float = 30.0) -> None:
        try:
            await asyncio.wait_for(self._done_evt.wait(), timeout)
        except asyncio.TimeoutError:
            raise ClientError(f"no 'done' from the server within {timeout} s") from None
        if self.done is None:
            raise ClientError(self.result().error or "session ended without 'done'")

    async def close(self) -> None:
        """Close the websocket (the reader then ends with the close code known)."""
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._reader), 10.0)
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader

    async def wait_closed(self, timeout: float = 10.0) -> None:
        """Until the server's messages end (the close code is then known)."""
        if self._reader is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._done_evt.wait(), timeout)

    def result(self) -> ClientResult:
        """What arrived so far (``error`` says why the session did not end with ``done``)."""
        audio = np.concatenate(self._out, axis=1) if self._out else np.zeros((2, 0), np.float32)
        res = ClientResult(
            audio, list(self.events), self.stats, self.ready, self.done, list(self.latencies_ms),
            self.samples_sent, self.close_code, self.close_reason,
        )  # fmt: skip
        res.error = end_error(res, self.error)
        return res

    async def _closed(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.ws.wait_closed(), 5.0)  # the close code is known then
        self.close_code = self.ws.close_code  # 1006 when no close frame came
        self.close_reason = self.ws.close_reason or ""

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if isinstance(msg, bytes):
                    self._on_audio(msg)
                    continue
                ev = json.loads(msg)
                t = ev.get("type")
                if t == "stats":
                    self.stats = ev
                elif t == "done":
                    self.done = ev
                else:
                    self.events.append(ev)
                    if self.on_event is not None:
                        self.on_event(ev)
        except ConnectionClosed:
            pass
        except (ValueError, LivesenseError) as e:  # a broken server: keep what came before
            self.error = f"bad message from the server: {e}"
            await self.ws.close(1002, "bad message")
        finally:
            try:
                await self._closed()
            finally:
                self._done_evt.set()

    def _on_audio(self, msg: bytes) -> None:
        now = time.perf_counter()
        f = unpack_frame(msg)
        if f.kind != Kind.AUDIO_OUT:
            return
        y = decode_audio(f.payload, self.start.format, 2)
        if f.pts != self._out_samples:
            raise ClientError(f"binaural audio out of order: pts {f.pts}, have {self._out_samples}")
        self._out.append(y)
        self._out_samples += y.shape[1]
        # Latency of the input packets whose last sample is now back.
        while self._pending_ends and self._pending_ends[0] <= self._out_samples:
            end = self._pending_ends.pop(0)
            t = self._sent_at.pop(end, None)
            if t is not None:
                self.latencies_ms.append((now - t) * 1000.0)


def _with_token(url: str, token: str | None) -> str:
    if not token:
        return url
    u = urlsplit(url)
    q = parse_qs(u.query)
    q["token"] = [token]
    return urlunsplit((u.scheme, u.netloc, u.path, urlencode(q, doseq=True), u.fragment))


def _safe(url: str) -> str:
    """The URL without its token (for messages)."""
    u = urlsplit(url)
    return urlunsplit((u.scheme, u.netloc, u.path, "", ""))


# --------------------------------------------------------------------------- file replay


@dataclass
class ClientOptions:
    """How :func:`stream_file` replays a file."""

    format: str = "s16le"
    fast: bool = False
    video: bool = True
    fps: float = 2.0
    max_size: int = 640  # longest video side sent
    jpeg_quality: int = 80
    renderer: str = StartConfig.renderer
    reasoning: bool = True
    speaker: Pose = DEFAULT_SPEAKER
    listener: Pose = DEFAULT_LISTENER
    orbit_s: float | None = None  # the speaker circles the listener once per orbit_s seconds
    pose_rate: float = 20.0  # pose updates per second while orbiting
    questions: list[Question] = field(default_factory=list)  # asked at their pts
    done_timeout: float = 60.0


def _jpeg(img: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _video_jpegs(path: str, opts: ClientOptions) -> Iterator[tuple[float, bytes]]:
    with iter_video_frames(path, fps=opts.fps, max_size=opts.max_size) as frames:
        for f in frames:
            yield f.pts, _jpeg(f.image, opts.jpeg_quality)


async def stream_file(
    path: str | os.PathLike,
    url: str,
    opts: ClientOptions,
    token: str | None = None,
    *,
    out: str | os.PathLike | None = None,
    stop: Callable[[], bool] | None = None,
) -> ClientResult:
    """Replay ``path`` (audio + optional video) through a session; return what came back.

    Once the websocket is open the session's result is returned whatever the end (``error``
    says why it was not ``done``) and, with ``out``, saved there on every exit, even when
    cancelled. ``stop()`` is polled between packets: true -> ``stop`` is sent early, the rest
    of what was sent is rendered, ``interrupted`` is set. ClientError only when no websocket
    opened (refused, 401/403); MediaError for an unreadable file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MediaError(f"{path}: no such file")
    reader = iter_audio_chunks(path, 48000, 480)  # MediaError for unreadable / no audio
    video = opts.video and has_video(path)
    start = StartConfig(
        format=opts.format, video=video, speaker=opts.speaker, listener=opts.listener,
        renderer=opts.renderer, reasoning=opts.reasoning or video,
    )  # fmt: skip
    client = LiveClient(url, start, token)
    interrupted = sent_all = False
    res: ClientResult | None = None
    try:
        try:
            with reader:
                await client.connect()
                interrupted = not await _send(client, path, reader, video, opts, stop)
            sent_all = not interrupted
            await client.stop(opts.done_timeout)
        except ClientError as e:
            if client.ws is None:
                raise  # nothing opened, nothing came back
            client.error = client.error or str(e)
        except ConnectionClosed:
            pass  # the server closed or the connection dropped: the reader knows why
        except (asyncio.CancelledError, KeyboardInterrupt):
            interrupted = True  # cancelled (a second Ctrl-C): saved in the finally
            raise
        await client.wait_closed(5.0)
        res = _result(client, interrupted, sent_all)
        if out is not None:
            save_result(res, out)
        return res
    finally:
        if res is None and client.ws is not None and out is not None:
            save_result(_result(client, interrupted, sent_all), out)  # cancelled: keep it
        await client.close()


def _result(client: LiveClient, interrupted: bool, sent_all: bool) -> ClientResult:
    res = client.result()
    res.interrupted, res.sent_all = interrupted, sent_all
    return res


async def _send(
    client: LiveClient,
    path: str,
    reader: AudioReader,
    video: bool,
    opts: ClientOptions,
    stop: Callable[[], bool] | None,
) -> bool:
    """Send the file paced in real time (or fast); False when ``stop()`` cut it short.
    ConnectionClosed when the session ends first."""
    orbit = (
        None
        if opts.orbit_s is None
        else OrbitTrajectory.around(opts.speaker, opts.listener, opts.orbit_s)
    )
    t0 = time.perf_counter()

    async def pace(t: float) -> None:
        if not opts.fast:
            delay = t0 + t - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)

    async def send_video() -> None:
        it = _video_jpegs(path, opts)
        while True:
            item = await asyncio.to_thread(next, it, None)
            if item is None:
                return
            await pace(item[0])
            await client.send_jpeg(item[1], item[0])

    async def send_questions() -> None:
        for q in opts.questions:
            await pace(q.pts)
            await client.ask(q.text, q.id)

    tasks = [asyncio.create_task(send_questions())]
    if video:
        tasks.append(asyncio.create_task(send_video()))
    try:
        next_pose = 0.0
        for chunk in reader:
            if stop is not None and stop():
                return False
            t = chunk.pts / 48000
            if orbit is not None and t >= next_pose:
                await client.pose(speaker=orbit.pose(t), pts=chunk.pts)
                next_pose += 1.0 / opts.pose_rate
            await pace(t)
            await client.send_audio(chunk.data[0])
            if opts.fast:
                await asyncio.sleep(0)
        for task in tasks:
            await task
        return True
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
