"""``livesense client FILE``: a recorded file streamed through a live session, results saved."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from urllib.parse import urlsplit

from livesense.audio.geometry import DEFAULT_LISTENER, DEFAULT_SPEAKER
from livesense.cli.options import add_pose_options, parse_pose
from livesense.cli.options import positive_float as pos_float
from livesense.cli.signals import graceful_stop
from livesense.errors import ConfigError
from livesense.live.server.client import ClientError, ClientOptions, ClientResult, stream_file
from livesense.live.server.config import ServerConfig
from livesense.live.server.protocol import AUDIO_FORMATS, PATH
from livesense.stats import LatencySummary
from livesense.video.questions import load_questions

DESCRIPTION = """\
Stream FILE's audio (10 ms packets) and video (JPEG frames) to a livesense server at \
real-time pace, ask scheduled questions, and save binaural.wav, transcript.jsonl and \
stats.json into --out. What arrived is saved on every exit: when the server rejects or ends \
the session, the connection is lost (exit 2, stats.json has the close code and reason) or \
Ctrl-C stops the stream early (the session is stopped and drained first; exit 130)."""

_DEFAULT = ClientOptions()


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = _DEFAULT
    p.add_argument("file", metavar="FILE", help="audio or video file")
    url = f"ws://127.0.0.1:{ServerConfig.port}{PATH}"
    p.add_argument("--url", default=url, help=f"session endpoint (default: {url})")
    p.add_argument("--token", help="access token (default: the ?token= of --url)")
    p.add_argument("--out", default="client_out", metavar="DIR", help="output folder")
    p.add_argument("--fast", action="store_true", help="send as fast as the server takes it")
    p.add_argument("--format", choices=AUDIO_FORMATS, default=d.format)
    p.add_argument(
        "--fps", type=pos_float, default=d.fps, help=f"video frames per second sent ({d.fps:g})"
    )
    p.add_argument("--no-video", action="store_true", help="send audio only")
    p.add_argument("--renderer", choices=("neural", "dsp"), default=d.renderer)
    p.add_argument(
        "--questions",
        metavar="FILE",
        help="questions to ask at their times: 'SECONDS text' lines, JSON/JSONL "
        '{"t", "text", "id"}, StreamingBench or OVO-Bench',
    )
    add_pose_options(p, poses_file=False, hrtf=False)


def run(args: argparse.Namespace) -> int:
    """Stream, save, print a one-line summary; user errors raise LivesenseError. Exit 0 when
    ``done`` arrived, 2 (ClientError) when it did not, 130 after Ctrl-C."""
    u = urlsplit(args.url)
    if u.scheme not in ("ws", "wss") or not u.netloc:
        raise ConfigError(f"--url must look like ws://HOST:PORT/v1/session, got {args.url!r}")
    opts = ClientOptions(
        format=args.format,
        fast=args.fast,
        video=not args.no_video,
        fps=args.fps,
        renderer=args.renderer,
        speaker=parse_pose(args.speaker_pose, "--speaker-pose", DEFAULT_SPEAKER),
        listener=parse_pose(args.listener_pose, "--listener-pose", DEFAULT_LISTENER),
        orbit_s=args.orbit,
        questions=load_questions(args.questions).questions if args.questions else [],
    )
    try:
        Path(args.out).mkdir(parents=True, exist_ok=True)  # fail before streaming, not after
    except OSError as e:
        raise ConfigError(f"--out {args.out}: {e.strerror or e}") from None
    with graceful_stop() as stop:  # the first Ctrl-C stops the stream; results are kept
        res = asyncio.run(
            stream_file(args.file, args.url, opts, args.token, out=args.out, stop=stop.is_set)
        )
    sr = res.ready.get("sample_rate", 48000)
    kept = f"kept what arrived in {args.out} ({res.audio.shape[1] / sr:.2f} s of binaural.wav)"
    if res.interrupted:
        why = f"; {res.error}" if res.error else ""
        print(f"interrupted after sending {res.samples_sent / sr:.2f} s{why}; {kept}",
              file=sys.stderr)  # fmt: skip
        return 130
    if res.error:
        raise ClientError(f"{res.error}; {kept}")
    if not res.sent_all:
        print(
            f"warning: the server ended the session after {res.samples_sent / sr:.2f} s of "
            f"{args.file} (close {res.close_code}: {res.close_reason}); {kept}",
            file=sys.stderr,
        )
    _summary(res, args.out)
    return 0


def _summary(res: ClientResult, out: str) -> None:
    notes = sum(e.get("type") == "note" for e in res.events)
    answers = sum(e.get("type") == "answer" for e in res.events)
    lat = LatencySummary.of(res.latencies_ms)
    sr = res.ready.get("sample_rate", 48000)
    print(
        f"sent {res.samples_sent / sr:.2f} s, received {res.audio.shape[1] / sr:.2f} s "
        f"binaural (latency p50 {lat.p50 if lat else float('nan'):.1f} ms), {notes} notes, "
        f"{answers} answers, {len(res.errors)} errors -> {out}"
    )
