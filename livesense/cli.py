"""The ``livesense`` command line.

Every user mistake (missing file, bad option value, unreadable media) ends with a one-line
``error: ...`` on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from livesense import __version__
from livesense.errors import ConfigError, LivesenseError

DESCRIPTION = """\
livesense: a real-time multimodal streaming pipeline.

Audio and video frames from a recorded file (replayed in real time), a websocket client, a
microphone or a webcam flow through causal stream processors into a binaural renderer and a
video reasoner that run concurrently.
"""

EPILOG = """\
examples:
  livesense info clip.mp4
  livesense replay clip.mp4 --out out/            # paced in real time by pts
  livesense replay clip.mp4 --out out/ --fast     # as fast as the machine goes

Run `livesense COMMAND --help` for the options of one command.
"""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livesense",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"livesense {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p_info = sub.add_parser(
        "info",
        help="show the streams, durations and rates of a media file",
        description="Print the container format, duration and every stream (codec, rate, size) of FILE.",
    )
    p_info.add_argument("file", metavar="FILE", help="any file PyAV/FFmpeg can read")
    p_info.add_argument("--json", action="store_true", help="print machine-readable JSON")

    p_replay = sub.add_parser(
        "replay",
        help="replay a recorded file through the streaming pipeline",
        description=(
            "Replay FILE as if it were a live stream: audio is cut into fixed chunks at the "
            "session rate and passed through the audio stream pipeline (for now a streaming "
            "STFT -> ISTFT, which reconstructs the input), video frames pass through. Frames "
            "are released in real time by their timestamps unless --fast is given.\n\n"
            "Writes into DIR: audio.wav (the processed audio), output.mp4 (the input video "
            "with the processed audio as a stereo AAC track) and stats.json (chunks, real-time "
            "factor, latency). Ctrl-C stops early and keeps everything written so far."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p_replay.add_argument("file", metavar="FILE", help="recorded media file (needs an audio stream)")
    p_replay.add_argument("--out", metavar="DIR", default="out", help="output folder (default: out)")
    p_replay.add_argument(
        "--fast", action="store_true", help="process as fast as possible instead of in real time"
    )
    p_replay.add_argument(
        "--sample-rate",
        type=_positive_int,
        default=48000,
        metavar="HZ",
        help="session sample rate; audio is resampled to it (default: 48000)",
    )
    p_replay.add_argument(
        "--chunk-ms",
        type=_positive_float,
        default=10.0,
        metavar="MS",
        help="audio chunk duration in milliseconds (default: 10)",
    )
    p_replay.add_argument("--no-video", action="store_true", help="ignore the video stream")
    p_replay.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")
    return parser


def _cmd_info(args: argparse.Namespace) -> int:
    from livesense.audio.io import probe

    info = probe(args.file)
    if args.json:
        import json
        from dataclasses import asdict

        print(json.dumps(asdict(info), indent=2, default=str))
    else:
        print(info.describe())
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from livesense.audio.stft import StftConfig, stft_roundtrip
    from livesense.streaming.pipeline import ReplayPipeline
    from livesense.streaming.sources import FileReplaySource, ReplayConfig

    chunk_samples = round(args.chunk_ms * args.sample_rate / 1000.0)
    if chunk_samples < 1:
        raise ConfigError(f"--chunk-ms {args.chunk_ms} is shorter than one sample")
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} exists and is not a folder")
    cfg = ReplayConfig(
        sample_rate=args.sample_rate,
        chunk_samples=chunk_samples,
        video=not args.no_video,
        realtime=not args.fast,
    )
    source = FileReplaySource(args.file, cfg)
    video = source.info.video if source.has_video else None
    processor = stft_roundtrip(StftConfig(sample_rate=args.sample_rate))
    pipeline = ReplayPipeline(
        processor,
        out_dir,
        sample_rate=args.sample_rate,
        video_size=(video.width, video.height) if video else None,
        video_fps=(video.fps or 30.0) if video else 30.0,
    )
    progress = None if args.quiet else _progress_bar(source.duration, args.fast)
    try:
        if progress is not None:
            with progress as bar:
                task = bar.add_task("replay" if not args.fast else "replay (fast)", total=source.duration or None)
                stats = pipeline.run(
                    source,
                    input_name=args.file,
                    realtime=cfg.realtime,
                    on_progress=lambda t: bar.update(task, completed=t),
                    max_lag=lambda: source.pacer.max_lag,
                )
        else:
            stats = pipeline.run(source, input_name=args.file, realtime=cfg.realtime, max_lag=lambda: source.pacer.max_lag)
    finally:
        source.close()
    if not args.quiet:
        state = "interrupted; partial outputs kept" if stats.interrupted else "done"
        print(
            f"{state}: {stats.audio_seconds:.2f} s of audio in {stats.chunks} chunks, "
            f"{stats.video_frames} video frames, RTF {stats.rtf:.3f}, "
            f"latency {stats.latency_ms:.1f} ms -> {out_dir}/"
        )
    return 130 if stats.interrupted else 0


def _progress_bar(total: float, fast: bool):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.1f}/{task.total:.1f} s"),
        TimeElapsedColumn(),
        transient=False,
    )


COMMANDS = {"info": _cmd_info, "replay": _cmd_replay}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except LivesenseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
