"""``livesense replay FILE``: a recorded file through the streaming pipeline, in real time."""

from __future__ import annotations

import argparse
from pathlib import Path

from livesense.audio.plot import plot_binaural
from livesense.cli.options import (
    SAMPLE_RATES,
    add_device_options,
    add_neural_options,
    add_pose_options,
    build_renderer,
    close_renderer,
    device_dtype,
    float_in,
    int_in,
    reject_unused,
)
from livesense.cli.options import positive_float as pos_float
from livesense.cli.outputs import FORCE_HELP, REPLAY_OUTPUTS, prepare_out_dir
from livesense.cli.progress import ProgressBar
from livesense.cli.signals import graceful_stop
from livesense.errors import ConfigError
from livesense.live.replay import FileReplaySource, ReplayConfig, ReplayPipeline
from livesense.media.audio import read_audio
from livesense.models.binaural import SlotStream, live_block
from livesense.models.vlm import load_vlm
from livesense.streaming.pipeline import PipelineStats
from livesense.video.questions import load_questions
from livesense.video.reasoner import ReasonerConfig
from livesense.video.replay_tap import ReasonerTap

DESCRIPTION = """\
Replay FILE as if it were a live stream: audio is cut into fixed chunks at the session rate and \
rendered to binaural stereo chunk by chunk for a speaker placed (or moving) around the \
listener; video frames pass through. Frames are released in real time by their timestamps \
unless --fast is given.

Writes into DIR: binaural.wav (48 kHz stereo; audio.wav with --renderer passthrough), \
output.mp4 (the input video with the rendered audio as a stereo AAC track), stats.json \
(chunks, real-time factor, the most it fell behind real time) and, with --plot, binaural.png. \
A DIR that already holds these files from an earlier run is refused unless --force (which \
deletes just those files first). A real-time replay that cannot keep up says so once on \
stderr. Ctrl-C (or SIGTERM) stops between two chunks and keeps everything written so far; a \
second one stops at once.

Coordinates (Richard et al.): x forward, y to the listener's right, z up, metres; \
orientations are quaternions qx,qy,qz,qw. The listener sits at the origin facing +x unless \
--listener-pose says otherwise."""

_DEFAULT = ReplayConfig()
_REASONER = ReasonerConfig()
MAX_CHUNK_MS = 1000.0  # a second per chunk: longer ones only cost memory and latency
BEHIND_S = 0.5  # a real-time replay this far behind its pts clock is warned about


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="recorded media file (needs an audio stream)")
    p.add_argument("--out", metavar="DIR", default="out", help="output folder (default: out)")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.add_argument(
        "--fast", action="store_true", help="process as fast as possible instead of in real time"
    )
    p.add_argument(
        "--sample-rate",
        type=int_in(*SAMPLE_RATES, " Hz"),
        default=_DEFAULT.sample_rate,
        metavar="HZ",
        help=f"session sample rate, {SAMPLE_RATES[0]} to {SAMPLE_RATES[1]}; audio is resampled "
        f"to it (default: {_DEFAULT.sample_rate})",
    )
    chunk_ms = 1000.0 * _DEFAULT.chunk_samples / _DEFAULT.sample_rate
    p.add_argument(
        "--chunk-ms",
        type=float_in(0, MAX_CHUNK_MS, " ms"),
        default=None,
        metavar="MS",
        help=f"audio chunk duration in milliseconds, at most {MAX_CHUNK_MS:g} (default: "
        f"{chunk_ms:g}; with --renderer "
        "neural 16 STFT frames, 42.67 ms, whose per-call overhead dominates smaller chunks "
        "on a CPU)",
    )
    p.add_argument("--no-video", action="store_true", help="ignore the video stream")
    g = p.add_argument_group("binaural rendering")
    g.add_argument(
        "--renderer",
        choices=("dsp", "neural", "passthrough"),
        default="neural",
        help="neural (default): BinauralFlow, the bundled model of the demo room unless "
        "--checkpoint is given; dsp: HRTF renderer, direct path only (no room), lowest cost; "
        "passthrough: streaming STFT -> ISTFT of the mono input",
    )
    add_neural_options(g)
    add_pose_options(g, poses_file=True)
    g.add_argument(
        "--plot",
        action="store_true",
        help="also write DIR/binaural.png: left/right spectrograms, ILD over time, trajectory",
    )
    add_device_options(p.add_argument_group("device"))
    v = p.add_argument_group("video reasoning")
    v.add_argument(
        "--vlm",
        metavar="MODEL|tiny|none",
        default="none",
        help="vision-language model that watches the video: a Hugging Face model id (e.g. "
        "HuggingFaceTB/SmolVLM2-256M-Video-Instruct, Qwen/Qwen3-VL-2B-Instruct) or a local "
        "folder; tiny = a tiny random model (meaningless text, for testing); none = audio "
        "only (default)",
    )
    v.add_argument(
        "--questions",
        metavar="FILE",
        help="questions with timestamps (StreamingBench or OVO-Bench JSON, or 'SECONDS "
        "question' lines); answered from the video seen up to each question's time; with "
        "answers given, DIR/accuracy.json",
    )
    v.add_argument(
        "--segment-seconds",
        type=pos_float,
        default=_REASONER.segment_seconds,
        metavar="S",
        help=f"the reasoner writes a note per segment of S seconds (default: "
        f"{_REASONER.segment_seconds:g})",
    )
    v.add_argument(
        "--vlm-fps",
        type=pos_float,
        default=_REASONER.fps,
        metavar="FPS",
        help=f"frames per second the reasoner watches (default: {_REASONER.fps:g})",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")


def _reasoner_tap(args: argparse.Namespace, out_dir: Path, realtime: bool) -> ReasonerTap:
    """The VLM and questions chosen by --vlm/--questions (clear errors if they fail)."""
    questions = load_questions(args.questions).questions if args.questions else []
    device, dtype = device_dtype(args, None)
    backend = load_vlm(args.vlm, str(device), dtype)
    config = ReasonerConfig(fps=args.vlm_fps, segment_seconds=args.segment_seconds)
    return ReasonerTap(backend, config, out_dir, questions, realtime=realtime)


class BehindWarning:
    """Says once (on stderr, above the progress bar) that a real-time replay falls behind its
    pts clock, with the measured real-time factor and what to do about it."""

    def __init__(self, source: FileReplaySource, bar: ProgressBar, renderer: str):
        self.source, self.bar, self.renderer = source, bar, renderer
        self.warned = False

    def check(self, media_s: float, rtf: float | None = None) -> None:
        if self.warned or not self.source.config.realtime:
            return
        lag = self.source.pacer.max_lag
        if rtf is None:  # mid-run: wall time over media time, once clearly behind
            if lag < BEHIND_S or media_s <= 0:
                return
            rtf = self.source.pacer.elapsed() / media_s
        elif rtf <= 1.0 and lag < BEHIND_S:
            return
        hint = "--fast" if self.renderer == "dsp" else "--renderer dsp or --fast"
        self.bar.log(
            f"warning: cannot keep up in real time (RTF {rtf:.2f}, {lag:.2f} s behind the "
            f"media clock); try {hint}"
        )
        self.warned = True


def run(args: argparse.Namespace) -> int:
    if args.questions and args.vlm == "none":
        raise ConfigError("--questions needs a video reasoner: add --vlm MODEL (or --vlm tiny)")
    if args.vlm != "none" and args.no_video:
        raise ConfigError("--vlm watches the video: drop --no-video")
    reject_unused(args)
    out_dir = prepare_out_dir(args.out, "--out", REPLAY_OUTPUTS, args.force)
    processor, speaker, listener = build_renderer(args, args.sample_rate)
    if args.chunk_ms is not None:
        chunk_samples = round(args.chunk_ms * args.sample_rate / 1000.0)
    elif isinstance(processor, SlotStream):
        chunk_samples = live_block(processor.config)
    else:
        chunk_samples = round(_DEFAULT.chunk_samples * args.sample_rate / _DEFAULT.sample_rate)
    if chunk_samples < 1:
        raise ConfigError(f"--chunk-ms {args.chunk_ms} is shorter than one sample")
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
    tap = _reasoner_tap(args, out_dir, realtime=cfg.realtime) if args.vlm != "none" else None
    if tap is not None and video is None:
        raise ConfigError(f"{args.file}: no video stream for --vlm to watch")
    stats: PipelineStats | None = None
    label = "replay" if not args.fast else "replay (fast)"
    try:
        with (
            graceful_stop(wake=source.pacer.cancel) as stop,
            ProgressBar(label, source.duration or None, "s", not args.quiet) as bar,
        ):
            behind = BehindWarning(source, bar, args.renderer)

            def progress(media_s: float) -> None:
                bar.update(media_s)
                behind.check(media_s)

            stats = pipeline.run(
                source,
                input_name=args.file,
                realtime=cfg.realtime,
                max_lag=lambda: source.pacer.max_lag,
                on_frame=tap.on_frame if tap is not None else None,
                on_progress=progress,
                stop=stop.is_set,
            )
            if not stats.interrupted:
                behind.check(stats.audio_seconds, stats.rtf)
    finally:
        source.close()
        if stats is not None and isinstance(processor, SlotStream):
            stats.engine = processor.engine.stats.to_dict()
            stats.save(out_dir / "stats.json")
        close_renderer(processor)
        if tap is not None:
            done = tap.finish(interrupted=stats is None or stats.interrupted)
            if stats is not None:
                stats.reasoner = done["stats"]
                stats.outputs.extend(done["outputs"])
                stats.save(out_dir / "stats.json")
    if args.plot and stats.samples_out > 0:
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
