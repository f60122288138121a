"""The ``livesense`` command line.

Every user mistake (missing file, bad option value, unreadable media) ends with a one-line
``error: ...`` on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

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
        help="replay a recorded file through the streaming pipeline (binaural rendering)",
        description=(
            "Replay FILE as if it were a live stream: audio is cut into fixed chunks at the "
            "session rate and rendered to binaural stereo chunk by chunk for a speaker placed "
            "(or moving) around the listener; video frames pass through. Frames are released "
            "in real time by their timestamps unless --fast is given.\n\n"
            "Writes into DIR: binaural.wav (48 kHz stereo; audio.wav with --renderer "
            "passthrough), output.mp4 (the input video with the rendered audio as a stereo AAC "
            "track), stats.json (chunks, real-time factor, latency) and, with --plot, "
            "binaural.png. Ctrl-C stops early and keeps everything written so far.\n\n"
            "Coordinates (Richard et al.): x forward, y to the listener's right, z up, metres; "
            "orientations are quaternions qx,qy,qz,qw. The listener sits at the origin facing "
            "+x unless --listener-pose says otherwise."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p_replay.add_argument(
        "file", metavar="FILE", help="recorded media file (needs an audio stream)"
    )
    p_replay.add_argument(
        "--out", metavar="DIR", default="out", help="output folder (default: out)"
    )
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
    g = p_replay.add_argument_group("binaural rendering")
    g.add_argument(
        "--renderer",
        choices=("dsp", "passthrough"),
        default="dsp",
        help="dsp: HRTF renderer (default); passthrough: streaming STFT -> ISTFT of the mono input",
    )
    g.add_argument(
        "--speaker-pose",
        metavar="x,y,z[,qx,qy,qz,qw]",
        default=None,
        help="speaker position (and orientation); default 1.5,0,0 (1.5 m straight ahead)",
    )
    g.add_argument(
        "--listener-pose",
        metavar="x,y,z[,qx,qy,qz,qw]",
        default=None,
        help="listener position and head orientation; default the origin facing +x",
    )
    motion = g.add_mutually_exclusive_group()
    motion.add_argument(
        "--orbit",
        type=_positive_float,
        metavar="SECONDS",
        help="the speaker circles the listener once every SECONDS (radius and height from "
        "--speaker-pose), clockwise seen from above: front, right, back, left",
    )
    motion.add_argument(
        "--poses",
        metavar="FILE",
        help="speaker trajectory file in the Richard et al. layout (tx_positions.txt: 120 rows "
        "per second of x y z qx qy qz qw)",
    )
    g.add_argument(
        "--hrtf", metavar="FILE", help="HRIR set (.sofa) instead of the bundled MIT KEMAR"
    )
    g.add_argument(
        "--plot",
        action="store_true",
        help="also write DIR/binaural.png: left/right spectrograms, ILD over time, trajectory",
    )
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


def _build_renderer(args: argparse.Namespace, sample_rate: int):
    """The audio stream processor and the trajectories chosen on the command line."""
    from livesense.audio.geometry import (
        OrbitTrajectory,
        Pose,
        PoseFileTrajectory,
        StaticTrajectory,
        source_direction,
    )

    if args.renderer == "passthrough":
        from livesense.audio.stft import StftConfig, stft_roundtrip

        return stft_roundtrip(StftConfig(sample_rate=sample_rate)), None, None
    from livesense.audio.dsp_renderer import DspBinauralRenderer, DspRendererConfig
    from livesense.audio.hrtf import load_hrirs

    def parse(text: str | None, option: str, default: Pose) -> Pose:
        if text is None:
            return default
        try:
            return Pose.parse(text)
        except ConfigError as exc:
            raise ConfigError(f"{option}: {exc}") from None

    speaker_pose = parse(args.speaker_pose, "--speaker-pose", Pose((1.5, 0.0, 0.0)))
    listener_pose = parse(args.listener_pose, "--listener-pose", Pose())
    listener = StaticTrajectory(listener_pose)
    if args.poses:
        speaker = PoseFileTrajectory(args.poses)
    elif args.orbit:
        rel = np.asarray(speaker_pose.position) - np.asarray(listener_pose.position)
        radius = float(np.hypot(rel[0], rel[1]))
        if radius < 0.1:
            raise ConfigError(
                "--orbit needs a speaker at least 0.1 m from the listener (--speaker-pose)"
            )
        az = float(np.degrees(np.arctan2(rel[1], rel[0])))
        speaker = OrbitTrajectory(
            radius=radius,
            period_s=args.orbit,
            height=float(rel[2]),
            start_azimuth=az,
            center=listener_pose.position,
        )
    else:
        speaker = StaticTrajectory(speaker_pose)
        _, _, dist = source_direction(speaker_pose, listener_pose)
        if dist < 0.05:
            raise ConfigError("--speaker-pose puts the speaker inside the listener's head")
    hrirs = load_hrirs(args.hrtf, sample_rate)
    renderer = DspBinauralRenderer(
        speaker, listener, hrirs=hrirs, config=DspRendererConfig(sample_rate=sample_rate)
    )
    return renderer, speaker, listener


def _cmd_replay(args: argparse.Namespace) -> int:
    from livesense.streaming.pipeline import ReplayPipeline
    from livesense.streaming.sources import FileReplaySource, ReplayConfig

    chunk_samples = round(args.chunk_ms * args.sample_rate / 1000.0)
    if chunk_samples < 1:
        raise ConfigError(f"--chunk-ms {args.chunk_ms} is shorter than one sample")
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} exists and is not a folder")
    processor, speaker, listener = _build_renderer(args, args.sample_rate)
    cfg = ReplayConfig(
        sample_rate=args.sample_rate,
        chunk_samples=chunk_samples,
        video=not args.no_video,
        realtime=not args.fast,
    )
    source = FileReplaySource(args.file, cfg)
    video = source.info.video if source.has_video else None
    pipeline = ReplayPipeline(
        processor,
        out_dir,
        sample_rate=args.sample_rate,
        audio_name="audio.wav" if args.renderer == "passthrough" else "binaural.wav",
        video_size=(video.width, video.height) if video else None,
        video_fps=(video.fps or 30.0) if video else 30.0,
    )
    run = dict(input_name=args.file, realtime=cfg.realtime, max_lag=lambda: source.pacer.max_lag)
    try:
        if args.quiet:
            stats = pipeline.run(source, **run)
        else:
            with _progress_bar() as bar:
                label = "replay" if not args.fast else "replay (fast)"
                task = bar.add_task(label, total=source.duration or None)
                stats = pipeline.run(
                    source, on_progress=lambda t: bar.update(task, completed=t), **run
                )
    finally:
        source.close()
    if args.plot and stats.samples_out > 0:
        from livesense.audio.io import read_audio
        from livesense.audio.plot import plot_binaural

        rendered = read_audio(
            str(out_dir / pipeline.audio_name), sample_rate=args.sample_rate, channels=2
        )
        png = plot_binaural(
            out_dir / "binaural.png",
            rendered,
            args.sample_rate,
            speaker=speaker,
            listener=listener,
            title=f"{Path(args.file).name}: {args.renderer} renderer",
        )
        stats.outputs.append(str(png))
        stats.save(out_dir / "stats.json")
    if not args.quiet:
        state = "interrupted; partial outputs kept" if stats.interrupted else "done"
        print(
            f"{state}: {stats.audio_seconds:.2f} s of audio in {stats.chunks} chunks, "
            f"{stats.video_frames} video frames, RTF {stats.rtf:.3f}, "
            f"latency {stats.latency_ms:.1f} ms -> {out_dir}/"
        )
    return 130 if stats.interrupted else 0


def _progress_bar():
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
