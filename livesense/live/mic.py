"""Microphone -> binaural renderer -> headphones in real time (``livesense mic``).

The render loop is the same :class:`~livesense.streaming.pipeline.StreamPipeline` that replays
files: here its source is the capture ring and its sinks the headphone ring and the recording.

PortAudio callbacks only copy: the input callback writes the captured block into an input
:class:`AudioRing`, the output callback reads the rendered stereo from an output ring (and plays
silence, counted as an underrun, when nothing is ready). Rendering happens on a worker thread.
The device clock paces everything: nothing here sleeps to keep time (live input is never paced
twice).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from livesense.audio.geometry import Pose
from livesense.buffers.audio_ring import AudioRing, OverflowPolicy, RingError
from livesense.live.devices import DeviceError, import_sounddevice
from livesense.media.sinks import WavSink
from livesense.stats import LatencySummary
from livesense.streaming.frames import AudioChunk, PoseUpdate
from livesense.streaming.pipeline import StreamPipeline
from livesense.streaming.processor import StreamProcessor


@dataclass(frozen=True)
class MicConfig:
    """Settings of a live audio session (samples at ``sample_rate`` unless named ``_s``)."""

    sample_rate: int = 48000
    block: int = 480  # device block, 10 ms
    render_block: int | None = None  # samples per renderer call (None: the device block)
    input_buffer_s: float = 1.0  # input ring capacity
    output_buffer_s: float = 0.5  # output ring capacity
    prefill: int = 960  # silence queued before the first rendered block (20 ms of headroom)
    max_queue: int = 4800  # rendered audio queued beyond this (100 ms) is skipped to cap latency
    lossless: bool = False  # input callback waits for the renderer instead of dropping
    duration_s: float | None = None  # stop after this much captured audio
    output: bool = True  # open an output device (False: render to the recording only)
    device_latency: str | float = "low"  # PortAudio suggested latency ("low", "high", seconds)

    def __post_init__(self) -> None:
        if self.block <= 0 or self.sample_rate <= 0:
            raise ValueError("block and sample_rate must be positive")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError("duration_s must be positive")
        # Each ring holds at least two blocks, or a block could never be written or read whole.
        most = min(self.input_buffer_s, self.output_buffer_s) * self.sample_rate / 2
        if max(self.block, self.render_block or 0) > most:
            raise ValueError(f"block of {self.block} samples exceeds half a ring ({most:g})")

    @property
    def queue_limit(self) -> int:
        """Rendered samples queued for the device before the excess is skipped: ``max_queue``,
        but never less than the prefill plus two blocks (which large blocks queue normally)."""
        return max(self.max_queue, self.prefill + 2 * max(self.block, self.render_block or 0))

    @property
    def overtime_s(self) -> float:
        """Wall seconds past ``duration_s`` (from the devices' start) after which a session
        stops whatever the device delivered: one that stalls or never delivers a block must
        not run on past its duration; a device clock a little slower than the wall clock
        still gets its full duration."""
        assert self.duration_s is not None
        block = max(self.block, self.render_block or 0)
        return 2.0 + 0.25 * self.duration_s + 4.0 * block / self.sample_rate


@dataclass
class MicStats:
    """Counters of a live session (written to ``stats.json`` with ``--record``)."""

    sample_rate: int = 48000
    block: int = 480
    captured_samples: int = 0
    rendered_samples: int = 0
    blocks: int = 0
    input_overrun_samples: int = 0  # dropped because the renderer fell behind
    input_device_overflows: int = 0  # PortAudio reported lost input
    output_underrun_samples: int = 0  # silence played because nothing was rendered in time
    output_underruns: int = 0
    output_overrun_samples: int = 0  # rendered audio dropped because the device stalled
    output_skipped_samples: int = 0  # queued audio skipped to bring latency back down
    render_ms_p50: float = 0.0
    render_ms_p99: float = 0.0
    rtf: float = 0.0
    input_latency_ms: float = 0.0  # as PortAudio reports it
    output_latency_ms: float = 0.0
    latency_ms: float = 0.0  # estimate: device in + block + queued output + device out
    measured_latency_ms_p50: float = 0.0  # ADC time of a sample -> DAC time of its rendering
    measured_latency_ms_p99: float = 0.0  # (PortAudio's callback timestamps)
    wall_seconds: float = 0.0
    stop_reason: str = ""
    outputs: list[str] = field(default_factory=list)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")


class MicLoop:
    """Runs ``renderer`` (mono in, stereo out) between an input and an output device: the
    capture callback, the render worker and the playback callback of ``livesense mic``."""

    def __init__(
        self,
        renderer: StreamProcessor,
        config: MicConfig | None = None,
        input_device: int | str | None = None,
        output_device: int | str | None = None,
        record_dir: str | Path | None = None,
    ):
        self.renderer = renderer
        self.config = cfg = config or MicConfig()
        self.input_device = input_device
        self.output_device = output_device
        self.record_dir = Path(record_dir) if record_dir is not None else None
        policy = OverflowPolicy.BLOCK if cfg.lossless else OverflowPolicy.OVERWRITE
        self.in_ring = AudioRing(int(cfg.input_buffer_s * cfg.sample_rate), 1, policy, timeout=5.0)
        self.out_ring = AudioRing(
            int(cfg.output_buffer_s * cfg.sample_rate), 2, OverflowPolicy.OVERWRITE
        )
        self.stats = MicStats(sample_rate=cfg.sample_rate, block=cfg.block)
        self._limit = (
            None if cfg.duration_s is None else int(round(cfg.duration_s * cfg.sample_rate))
        )
        self._stop = threading.Event()
        self._worker_done = threading.Event()
        self._out_started = False
        self._scratch = np.zeros((2, 8192), np.float32)  # (2, n) output callback scratch
        self._error: BaseException | None = None
        self._controls: deque[PoseUpdate] = deque()  # pose updates for the render loop
        self._position = 0  # input samples handed to the renderer
        # Timing marks for the measured latency: (input sample position, its ADC time).
        self._marks = np.zeros((256, 2), np.float64)
        self._n_marks = 0
        self._lat = np.zeros(200_000, np.float64)  # seconds, one per output callback
        self._n_lat = 0

    # -- PortAudio callbacks: copy only --------------------------------------------------------

    def _on_input(self, indata: np.ndarray, frames: int, t: Any, status: Any) -> None:
        if status and getattr(status, "input_overflow", False):
            self.stats.input_device_overflows += 1
        if self._stop.is_set():
            return
        adc = float(getattr(t, "inputBufferAdcTime", 0.0) or 0.0)
        if adc > 0:
            self._marks[self._n_marks % len(self._marks)] = (self.in_ring.write_pos, adc)
            self._n_marks += 1
        x = indata[:, 0].astype(np.float32)  # (frames,)
        if indata.dtype == np.int16:
            x *= 1.0 / 32768.0
        with contextlib.suppress(RingError):  # closed while stopping, or lossless wait timed out
            self.in_ring.write(x)

    def _on_output(self, outdata: np.ndarray, frames: int, t: Any, status: Any) -> None:
        if not self._out_started:
            outdata.fill(0)
            return
        if frames > self._scratch.shape[1]:
            self._scratch = np.zeros((2, frames), np.float32)
        buf = self._scratch[:, :frames]
        limit = self.config.queue_limit
        backlog = self.out_ring.available - limit
        if backlog > 0:  # the device started late or stalled: do not keep that delay forever
            self.stats.output_skipped_samples += self.out_ring.advance(
                backlog + limit - self.config.prefill
            )
        first = self.out_ring.read_pos - self.config.prefill  # input sample of buf[:, 0]
        # Once stopped, nothing more will be rendered: the silence after the last rendered
        # sample is the end of the session, not an underrun.
        ended = self._stop.is_set()
        k = self.out_ring.read_into(buf, pad=not ended)
        if ended:
            buf[:, k:] = 0.0
        if k > 0 and first >= 0:
            self._mark_latency(first, float(getattr(t, "outputBufferDacTime", 0.0) or 0.0))
        outdata[:] = buf.T

    def _mark_latency(self, sample: int, dac: float) -> None:
        n = min(self._n_marks, len(self._marks))
        if dac <= 0 or n == 0 or self._n_lat >= len(self._lat):
            return
        marks = self._marks[:n]
        before = marks[marks[:, 0] <= sample]
        if len(before) == 0:
            return
        pos, adc = before[np.argmax(before[:, 0])]
        self._lat[self._n_lat] = dac - (adc + (sample - pos) / self.config.sample_rate)
        self._n_lat += 1

    # -- control ------------------------------------------------------------------------------

    def stop(self, reason: str = "stopped") -> None:
        if not self._stop.is_set():
            self.stats.stop_reason = self.stats.stop_reason or reason
        self._stop.set()
        self.in_ring.close()

    def update_pose(self, speaker: Pose | None = None, listener: Pose | None = None) -> None:
        """Move the speaker and/or listener from the next rendered block on (thread-safe: a
        control frame that the render loop applies between blocks)."""

        self._controls.append(
            PoseUpdate(
                self._position,
                None if speaker is None else speaker.values,
                None if listener is None else listener.values,
            )
        )

    @property
    def position(self) -> int:
        """Input samples handed to the renderer so far (the stream time of the next block)."""
        return self._position

    # -- worker: the shared stream pipeline between a capture source and device sinks ---------

    def _frames(self) -> Iterator[AudioChunk | PoseUpdate]:
        """The capture ring as a frame source: blocks of ``render_block`` samples with pts,
        pose updates in between; ends at the duration limit or on stop."""
        cfg = self.config
        while not self._stop.is_set():
            while self._controls:
                yield self._controls.popleft()
            want = cfg.render_block or cfg.block
            if self._limit is not None:
                want = min(want, self._limit - self._position)
                if want <= 0:
                    self.stop("duration reached")
                    return
            x = self.in_ring.read_blocking(want, timeout=0.2)  # (1, k)
            if x.shape[1] == 0:
                continue
            yield AudioChunk(x, self._position, cfg.sample_rate)
            self._position += x.shape[1]

    def _work(self, sinks: list) -> None:
        try:
            st = StreamPipeline(self.renderer, self.config.sample_rate).run(self._frames(), sinks)
            self.stats.rendered_samples = st.samples_in
            self.stats.blocks = st.chunks
            self.stats.render_ms_p50 = st.chunk_ms_p50
            self.stats.render_ms_p99 = st.chunk_ms_p99
            self.stats.rtf = st.rtf
            self.stats.outputs.extend(st.outputs)
        except BaseException as exc:  # reported by run()
            self._error = exc
            self.stop("error")
        finally:
            self._worker_done.set()

    def run(self, poll: Any = None) -> MicStats:
        """Open the devices and render until stopped, the duration is reached, Ctrl-C, or the
        device goes away. ``poll()`` is called about every 50 ms from this thread. Recordings
        are flushed and closed in every case."""
        sd = import_sounddevice()
        cfg = self.config
        sinks: list = [_DeviceSink(self)] if cfg.output else []
        if self.record_dir is not None:
            self.record_dir.mkdir(parents=True, exist_ok=True)
            sinks.append(WavSink(self.record_dir / "binaural.wav", cfg.sample_rate))
            (self.record_dir / "transcript.jsonl").touch()
        streams: list[Any] = []
        t_start = time.monotonic()
        worker = threading.Thread(target=self._work, args=(sinks,), name="livesense-render")
        try:
            try:
                streams.append(
                    sd.InputStream(
                        device=self.input_device,
                        channels=1,
                        samplerate=cfg.sample_rate,
                        dtype="int16",
                        blocksize=cfg.block,
                        latency=cfg.device_latency,
                        callback=self._on_input,
                    )
                )
                if cfg.output:
                    streams.append(
                        sd.OutputStream(
                            device=self.output_device,
                            channels=2,
                            samplerate=cfg.sample_rate,
                            dtype="float32",
                            blocksize=cfg.block,
                            latency=cfg.device_latency,
                            callback=self._on_output,
                        )
                    )
            except Exception as exc:  # PortAudioError, ValueError for bad devices
                raise DeviceError(f"cannot open the audio device: {exc}") from None
            worker.start()
            for s in streams:
                s.start()
            self.stats.input_latency_ms = 1000.0 * float(streams[0].latency)
            if cfg.output:
                self.stats.output_latency_ms = 1000.0 * float(streams[1].latency)
            deadline = None
            if cfg.duration_s is not None:
                deadline = time.monotonic() + cfg.duration_s + cfg.overtime_s
            while not self._worker_done.wait(0.05):
                if any(not s.active for s in streams) and not self._stop.is_set():
                    self.stop("device lost")
                if deadline is not None and time.monotonic() > deadline:
                    self.stop("duration reached (the device delivered less audio)")
                if poll is not None:
                    poll()
        except KeyboardInterrupt:
            self.stop("interrupted")
        finally:
            self.stop(self.stats.stop_reason or "stopped")
            if worker.is_alive():
                worker.join(timeout=5.0)
            for s in streams:
                try:
                    s.abort()
                    s.close()
                except Exception:
                    pass
            self._finish(t_start)
        if self._error is not None:
            raise self._error
        return self.stats

    def _finish(self, t_start: float) -> None:
        cfg, st = self.config, self.stats
        st.wall_seconds = time.monotonic() - t_start
        ins = self.in_ring.stats()
        outs = self.out_ring.stats()
        st.captured_samples = ins.written
        st.input_overrun_samples = ins.overrun_samples
        st.output_underrun_samples = outs.underrun_samples
        st.output_underruns = outs.underruns
        st.output_overrun_samples = outs.overrun_samples
        queued = (cfg.prefill + cfg.block) if cfg.output else 0
        wait = cfg.render_block or cfg.block
        st.latency_ms = (
            st.input_latency_ms + st.output_latency_ms + 1000.0 * (wait + queued) / cfg.sample_rate
        )
        lat = LatencySummary.of(self._lat[: self._n_lat], 1000.0)
        if lat is not None:
            st.measured_latency_ms_p50, st.measured_latency_ms_p99 = lat.p50, lat.p99
        if self.record_dir is not None:
            st.outputs.append(str(self.record_dir / "transcript.jsonl"))
            st.outputs.append(str(self.record_dir / "stats.json"))
            st.save(self.record_dir / "stats.json")


class _DeviceSink:
    """The headphone ring as a pipeline sink: queues ``prefill`` samples of silence before
    the first block, then the rendered audio."""

    def __init__(self, session: MicLoop):
        self.session = session

    def write_audio(self, audio: np.ndarray) -> None:
        s = self.session
        if not s._out_started:
            s.out_ring.write(np.zeros((2, s.config.prefill), np.float32))
        s.out_ring.write(audio)
        s._out_started = True

    def write_video(self, frame: object) -> None:
        pass

    def close(self) -> list[str]:
        return []
