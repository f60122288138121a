"""``livesense mic``: the microphone rendered to binaural stereo on the headphones, live."""

from __future__ import annotations

import argparse
import gc
import sys
import threading

import numpy as np
import torch

from livesense.audio.geometry import Pose
from livesense.audio.trajectory import Trajectory, ring_point
from livesense.cli.options import (
    add_device_options,
    add_neural_options,
    add_pose_options,
    build_renderer,
    close_renderer,
    float_in,
    reject_unused,
)
from livesense.cli.options import positive_float as pos_float
from livesense.cli.outputs import FORCE_HELP, MIC_OUTPUTS, prepare_out_dir
from livesense.errors import ConfigError
from livesense.live.devices import describe_devices, resolve_device
from livesense.live.mic import MicConfig, MicLoop
from livesense.models.binaural import SlotStream, live_block

DESCRIPTION = """\
Render the microphone to binaural stereo on the headphones in real time. The PortAudio \
callbacks only copy audio into ring buffers; rendering runs on a worker thread; when nothing \
is ready the headphones get silence and the underrun is counted (never garbage).

Keys while it runs (type them and press Enter when stdin is not a terminal): a / d move the \
speaker 15 degrees left / right around you, w / s bring it 0.25 m closer / farther, q stops. \
Ctrl-C also stops; with --record DIR everything rendered so far is kept in DIR/binaural.wav, \
DIR/transcript.jsonl and DIR/stats.json (a DIR holding an earlier recording is refused unless \
--force). --duration is honoured even when the device delivers less audio than that."""

_DEFAULT = MicConfig()
MAX_BLOCK_MS = 100.0  # longer device blocks only add latency (and must fit the rings)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    p.add_argument("--input", metavar="DEV", help="input device: index or (part of) its name")
    p.add_argument("--output", metavar="DEV", help="output device: index or (part of) its name")
    p.add_argument("--no-output", action="store_true", help="do not play; render only to --record")
    p.add_argument("--duration", type=pos_float, metavar="SECONDS", help="stop after this long")
    p.add_argument("--record", metavar="DIR", help="write what was rendered into DIR")
    p.add_argument("--force", action="store_true", help=f"with --record: {FORCE_HELP}")
    block_ms = 1000.0 * _DEFAULT.block / _DEFAULT.sample_rate
    p.add_argument(
        "--block-ms",
        type=float_in(0, MAX_BLOCK_MS, " ms"),
        default=block_ms,
        metavar="MS",
        help=f"device and render block in milliseconds, at most {MAX_BLOCK_MS:g} (default: "
        f"{block_ms:g})",
    )
    p.add_argument(
        "--lossless",
        action="store_true",
        help="never drop input: the capture callback waits for the renderer (for file or "
        "virtual devices that deliver audio faster than real time)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no status line")
    g = p.add_argument_group("binaural rendering")
    g.add_argument(
        "--renderer",
        choices=("dsp", "neural"),
        default="dsp",
        help="dsp: HRTF renderer (default: lowest latency and cost); neural: BinauralFlow "
        "(the bundled model unless --checkpoint; about 2x the end-to-end latency on a CPU)",
    )
    add_neural_options(g)
    add_pose_options(g, poses_file=False)
    add_device_options(p.add_argument_group("device"))


class KeyControl:
    """Moves a static speaker around the listener from single-key commands on stdin."""

    def __init__(self, loop: MicLoop, speaker: Trajectory, listener: Trajectory):
        self.loop = loop
        rel = np.asarray(speaker.pose(0.0).position) - np.asarray(listener.pose(0.0).position)
        self.center = listener.pose(0.0).position
        self.azimuth = float(np.degrees(np.arctan2(rel[1], rel[0])))
        self.distance = max(0.25, float(np.hypot(rel[0], rel[1])))
        self.height = float(rel[2])

    def key(self, ch: str) -> bool:
        """Apply one key; False means stop."""
        if ch == "q":
            return False
        step = {"a": (-15.0, 0.0), "d": (15.0, 0.0), "w": (0.0, -0.25), "s": (0.0, 0.25)}
        if ch not in step:
            return True
        d_az, d_dist = step[ch]
        self.azimuth = (self.azimuth + d_az + 180.0) % 360.0 - 180.0
        self.distance = min(10.0, max(0.25, self.distance + d_dist))
        pos = ring_point(self.center, self.distance, self.azimuth, self.height)
        self.loop.update_pose(speaker=Pose(tuple(float(v) for v in pos)))  # type: ignore[arg-type]
        return True

    def start(self) -> None:
        threading.Thread(target=self._read, name="livesense-keys", daemon=True).start()

    def _read(self) -> None:
        fd, old, termios = None, None, None
        try:
            if sys.stdin is None:
                return
            if sys.stdin.isatty():
                import termios  # lazy: POSIX only, and only for a terminal
                import tty  # lazy: POSIX only, and only for a terminal

                fd = sys.stdin.fileno()
                old = termios.tcgetattr(fd)
                tty.setcbreak(fd)
            while True:
                ch = sys.stdin.read(1)
                if not ch:
                    return
                if not self.key(ch.lower()):
                    self.loop.stop("quit key")
                    return
        except (OSError, ValueError):
            return
        finally:
            if termios is not None and fd is not None and old is not None:
                termios.tcsetattr(fd, termios.TCSADRAIN, old)


def run(args: argparse.Namespace) -> int:
    if args.list_devices:
        print(describe_devices())
        return 0
    sample_rate = _DEFAULT.sample_rate
    block = round(args.block_ms * sample_rate / 1000.0)
    if block < 16:
        raise ConfigError(f"--block-ms {args.block_ms} is too short (at least 16 samples)")
    if args.no_output and not args.record:
        raise ConfigError("--no-output needs --record DIR (otherwise nothing would come out)")
    if args.force and not args.record:
        raise ConfigError("--force applies to --record DIR")
    reject_unused(args)
    if args.record:
        prepare_out_dir(args.record, "--record", MIC_OUTPUTS, args.force)
    in_dev = resolve_device(args.input, "input")
    out_dev = None if args.no_output else resolve_device(args.output, "output")
    renderer, speaker, listener = build_renderer(args, sample_rate, live=True)
    neural = isinstance(renderer, SlotStream)
    if neural and renderer.engine.device.type == "cpu":
        torch.set_num_threads(1)  # small convs: one thread is faster and steadier here
    cfg = MicConfig(
        sample_rate=sample_rate,
        block=block,
        render_block=live_block(renderer.config) if neural else None,
        lossless=args.lossless,
        duration_s=args.duration,
        output=not args.no_output,
    )
    loop = MicLoop(renderer, cfg, in_dev, out_dev, record_dir=args.record)
    if args.orbit is None:
        assert speaker is not None and listener is not None
        KeyControl(loop, speaker, listener).start()
    if not args.quiet:
        keys = "" if args.orbit else "keys: a/d left/right, w/s closer/farther, q quit; "
        print(f"rendering the microphone ({keys}Ctrl-C stops)", file=sys.stderr)
    gc.freeze()  # what is loaded now lives on: full collections skip it (no 100 ms pauses live)
    try:
        stats = loop.run()
    finally:
        close_renderer(renderer)
    if not args.quiet:
        latency = (
            f"{stats.measured_latency_ms_p50:.0f} ms (p50, measured)"
            if stats.measured_latency_ms_p50
            else f"about {stats.latency_ms:.0f} ms"
        )
        print(
            f"{stats.stop_reason}: {stats.rendered_samples / sample_rate:.2f} s rendered, "
            f"RTF {stats.rtf:.3f}, {stats.output_underruns} output underruns, "
            f"{stats.input_overrun_samples} input samples dropped, latency {latency}"
            + (f" -> {args.record}/" if args.record else "")
        )
    return 130 if stats.stop_reason == "interrupted" else 0
