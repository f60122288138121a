"""The ``livesense`` command line.

Every user mistake (missing file, bad option value, unreadable media) ends with a one-line
``error: ...`` on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable, Sequence
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
  livesense replay clip.mp4 --out out/ --orbit 4 --plot --vlm tiny
  livesense mic --orbit 6                         # your voice circling your head
  livesense webcam --camera lavfi:testsrc2 --vlm tiny
  livesense serve --port 8765                     # then open the printed URL
  livesense client clip.mp4 --url ws://127.0.0.1:8765/v1/session --token T --out out/
  livesense synth-binaural --out data/ --sequences 100 --seconds 10 --split all
  livesense train-binaural --data data/ --preset small --steps 3000 --out ckpt/
  livesense eval-binaural --data data/ --checkpoint ckpt/best --json eval.json --plot eval.png

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
        default=None,
        metavar="MS",
        help="audio chunk duration in milliseconds (default: 10; 42.67 = 16 STFT frames "
        "with --renderer neural, whose per-call overhead dominates smaller chunks on a CPU)",
    )
    p_replay.add_argument("--no-video", action="store_true", help="ignore the video stream")
    g = p_replay.add_argument_group("binaural rendering")
    g.add_argument(
        "--renderer",
        choices=("dsp", "neural", "passthrough"),
        default="neural",
        help="neural (default): BinauralFlow, the bundled model of the demo room unless "
        "--checkpoint is given; dsp: HRTF renderer, direct path only (no room), lowest cost; "
        "passthrough: streaming STFT -> ISTFT of the mono input",
    )
    _add_neural_options(g)
    _add_pose_options(g, poses_file=True)
    v = p_replay.add_argument_group("video reasoning")
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
        help="questions with timestamps (StreamingBench or OVO-Bench JSON); answered from "
        "the video seen up to each question's time; with answers given, DIR/accuracy.json",
    )
    v.add_argument(
        "--segment-seconds",
        type=_positive_float,
        default=10.0,
        metavar="S",
        help="the reasoner writes a note per segment of S seconds (default: 10)",
    )
    v.add_argument(
        "--vlm-fps",
        type=_positive_float,
        default=1.0,
        metavar="FPS",
        help="frames per second the reasoner watches (default: 1)",
    )
    g.add_argument(
        "--plot",
        action="store_true",
        help="also write DIR/binaural.png: left/right spectrograms, ILD over time, trajectory",
    )
    p_replay.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")
    _add_mic_parser(sub)
    _add_webcam_parser(sub)
    from livesense.live.server.app import add_serve_parser
    from livesense.live.server.client import add_client_parser

    p_serve = add_serve_parser(sub)
    _add_neural_options(p_serve.add_argument_group("neural renderer"))
    add_client_parser(sub)
    from livesense.audio.synth import add_synth_parser
    from livesense.models.binaural.evaluation import add_eval_parser
    from livesense.models.binaural.training import add_train_parser

    add_synth_parser(sub)
    add_train_parser(sub)
    add_eval_parser(sub)
    return parser


def _add_webcam_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "webcam",
        help="camera -> video reasoner, notes and answers live in the terminal",
        description=(
            "Watch a camera with a vision-language model: notes appear per segment and "
            "questions typed at the prompt (one per line) are answered from what has been "
            "seen so far. With --mic the microphone is rendered to binaural audio at the same "
            "time (both models run concurrently). Ctrl-C stops; with --record DIR the "
            "transcript (and, with --mic, the binaural audio) is kept in DIR."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--camera",
        default="/dev/video0",
        metavar="SRC",
        help="/dev/videoN (v4l2), an rtsp/http URL, lavfi:GRAPH (e.g. "
        "lavfi:testsrc2=size=320x240:rate=10) or a video file (default: /dev/video0)",
    )
    p.add_argument(
        "--vlm",
        default="HuggingFaceTB/SmolVLM2-256M-Video-Instruct",
        metavar="MODEL|tiny",
        help="Hugging Face model id or local folder (default: SmolVLM2-256M, CPU-friendly); "
        "tiny = a tiny random model whose text is meaningless (for testing)",
    )
    p.add_argument("--segment-seconds", type=_positive_float, default=10.0, metavar="S",
                   help="a note per segment of S seconds (default: 10)")  # fmt: skip
    p.add_argument("--vlm-fps", type=_positive_float, default=1.0, metavar="FPS",
                   help="frames per second the model watches (default: 1)")  # fmt: skip
    p.add_argument("--duration", type=_positive_float, metavar="SECONDS",
                   help="stop after this long")  # fmt: skip
    p.add_argument("--record", metavar="DIR", help="write transcript.jsonl (and more) into DIR")
    p.add_argument("--mic", action="store_true",
                   help="also render the microphone to binaural audio on the headphones")  # fmt: skip
    p.add_argument("--input", metavar="DEV", help="with --mic: input device")
    p.add_argument("--output", metavar="DEV", help="with --mic: output device")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    g = p.add_argument_group("binaural rendering (with --mic)")
    g.add_argument("--renderer", choices=("dsp", "neural"), default="dsp", help="dsp (default)")
    _add_neural_options(g)
    _add_pose_options(g, poses_file=False)


def _add_pose_options(g: argparse._ArgumentGroup, *, poses_file: bool) -> None:
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
    if poses_file:
        motion.add_argument(
            "--poses",
            metavar="FILE",
            help="speaker trajectory file in the Richard et al. layout (tx_positions.txt: 120 "
            "rows per second of x y z qx qy qz qw)",
        )
    g.add_argument(
        "--hrtf",
        metavar="FILE",
        help="with --renderer dsp: HRIR set (.sofa) instead of the bundled MIT KEMAR",
    )


def _add_neural_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--checkpoint",
        metavar="DIR",
        help="with --renderer neural: a checkpoint saved by the training code (a folder with "
        "model.safetensors + config.json, or the .safetensors file); default: the bundled "
        "small model of the demo room",
    )
    g.add_argument(
        "--random-weights",
        action="store_true",
        help="with --renderer neural and no checkpoint: an untrained small model instead of "
        "the bundled one (the audio is meaningless; for testing the pipeline)",
    )
    g.add_argument(
        "--nfe",
        type=_positive_int,
        metavar="N",
        help="with --renderer neural: network evaluations per frame (default: the model's)",
    )


def _add_mic_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mic",
        help="microphone -> binaural renderer -> headphones, live",
        description=(
            "Render the microphone to binaural stereo on the headphones in real time. The "
            "PortAudio callbacks only copy audio into ring buffers; rendering runs on a worker "
            "thread; when nothing is ready the headphones get silence and the underrun is "
            "counted (never garbage).\n\n"
            "Keys while it runs (type them and press Enter when stdin is not a terminal): "
            "a / d move the speaker 15 degrees left / right around you, w / s bring it 0.25 m "
            "closer / farther, q stops. Ctrl-C also stops; with --record DIR everything "
            "rendered so far is kept in DIR/binaural.wav, DIR/transcript.jsonl and "
            "DIR/stats.json."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    p.add_argument("--input", metavar="DEV", help="input device: index or (part of) its name")
    p.add_argument("--output", metavar="DEV", help="output device: index or (part of) its name")
    p.add_argument("--no-output", action="store_true", help="do not play; render only to --record")
    p.add_argument(
        "--duration", type=_positive_float, metavar="SECONDS", help="stop after this long"
    )
    p.add_argument("--record", metavar="DIR", help="write what was rendered into DIR")
    p.add_argument(
        "--block-ms",
        type=_positive_float,
        default=10.0,
        metavar="MS",
        help="device and render block in milliseconds (default: 10)",
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
    _add_neural_options(g)
    _add_pose_options(g, poses_file=False)


def _cmd_info(args: argparse.Namespace) -> int:
    from livesense.media.container import probe

    info = probe(args.file)
    if args.json:
        import json
        from dataclasses import asdict

        print(json.dumps(asdict(info), indent=2, default=str))
    else:
        print(info.describe())
    return 0


def _neural_renderer(args: argparse.Namespace, speaker, listener, sample_rate: int):
    from livesense.live.engines import NeuralEngine

    if args.random_weights and not args.checkpoint:
        print(
            "*** livesense: UNTRAINED neural renderer (--random-weights): its audio is "
            "meaningless; drop --random-weights for the bundled model ***",
            file=sys.stderr,
        )
    engine = NeuralEngine(args.checkpoint, args.random_weights, args.nfe, sample_rate)
    from livesense.models.binaural import NeuralBinauralRenderer, NfePolicy

    # Live devices cannot wait: lower the evaluations when a block renders too slowly.
    policy = NfePolicy() if args.command in ("mic", "webcam") and args.nfe is None else None
    return NeuralBinauralRenderer(
        engine.model, speaker=speaker, listener=listener, nfe=args.nfe, policy=policy
    )


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
    if getattr(args, "poses", None):
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
    if args.renderer == "neural":
        if getattr(args, "hrtf", None):
            raise ConfigError(
                "--hrtf applies to --renderer dsp: the neural model was trained with the "
                "bundled MIT KEMAR HRIRs (add --renderer dsp to use your own)"
            )
        return _neural_renderer(args, speaker, listener, sample_rate), speaker, listener
    hrirs = load_hrirs(args.hrtf, sample_rate)
    renderer = DspBinauralRenderer(
        speaker, listener, hrirs=hrirs, config=DspRendererConfig(sample_rate=sample_rate)
    )
    return renderer, speaker, listener


def _stop_on_sigint(stop: threading.Event, wake: Callable[[], None]) -> Callable[[], None]:
    """The first Ctrl-C asks the pipeline to stop between two chunks (so every output stays
    consistent); a second one interrupts at once. Returns a function restoring the handler."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        wake()

    old = signal.signal(signal.SIGINT, handler)
    return lambda: signal.signal(signal.SIGINT, old)


def _reasoner_tap(args: argparse.Namespace, out_dir: Path, realtime: bool):
    """Load the VLM and questions chosen by --vlm/--questions (clear errors if they fail)."""
    from livesense.models.vlm import load_vlm
    from livesense.video.questions import load_questions
    from livesense.video.reasoner import ReasonerConfig
    from livesense.video.replay_tap import ReasonerTap

    questions = load_questions(args.questions).questions if args.questions else []
    backend = load_vlm(args.vlm)
    config = ReasonerConfig(fps=args.vlm_fps, segment_seconds=args.segment_seconds)
    return ReasonerTap(backend, config, out_dir, questions, realtime=realtime)


def _cmd_replay(args: argparse.Namespace) -> int:
    from livesense.live.replay import FileReplaySource, ReplayConfig
    from livesense.streaming.pipeline import ReplayPipeline

    if args.chunk_ms is None:
        args.chunk_ms = 2048_000 / args.sample_rate if args.renderer == "neural" else 10.0
    chunk_samples = round(args.chunk_ms * args.sample_rate / 1000.0)
    if chunk_samples < 1:
        raise ConfigError(f"--chunk-ms {args.chunk_ms} is shorter than one sample")
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} exists and is not a folder")
    processor, speaker, listener = _build_renderer(args, args.sample_rate)
    if args.questions and args.vlm == "none":
        raise ConfigError("--questions needs a video reasoner: add --vlm MODEL (or --vlm tiny)")
    if args.vlm != "none" and args.no_video:
        raise ConfigError("--vlm watches the video: drop --no-video")
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
    stop = threading.Event()
    run = dict(
        input_name=args.file,
        realtime=cfg.realtime,
        max_lag=lambda: source.pacer.max_lag,
        on_frame=tap.on_frame if tap is not None else None,
        stop=stop.is_set,
    )
    stats = None
    restore = _stop_on_sigint(stop, source.pacer.cancel)
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
        restore()
        source.close()
        if tap is not None:
            done = tap.finish(interrupted=stats is None or stats.interrupted)
            if stats is not None:
                stats.reasoner = done["stats"]
                stats.outputs.extend(done["outputs"])
                stats.save(out_dir / "stats.json")
    if args.plot and stats.samples_out > 0:
        from livesense.audio.plot import plot_binaural
        from livesense.media.audio import read_audio

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


class _KeyControl:
    """Moves a static speaker around the listener from single-key commands on stdin."""

    def __init__(self, session, speaker, listener):
        from livesense.audio.geometry import Pose

        self.session, self._Pose = session, Pose
        rel = np.asarray(speaker.pose(0.0).position) - np.asarray(listener.pose(0.0).position)
        self.center = np.asarray(listener.pose(0.0).position)
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
        a = np.radians(self.azimuth)
        pos = self.center + np.array(
            [self.distance * np.cos(a), self.distance * np.sin(a), self.height]
        )
        self.session.update_pose(speaker=self._Pose(tuple(float(v) for v in pos)))
        return True

    def start(self) -> None:
        threading.Thread(target=self._read, name="livesense-keys", daemon=True).start()

    def _read(self) -> None:
        fd, old = None, None
        try:
            if sys.stdin is None:
                return
            if sys.stdin.isatty():
                import termios
                import tty

                fd = sys.stdin.fileno()
                old = termios.tcgetattr(fd)
                tty.setcbreak(fd)
            while True:
                ch = sys.stdin.read(1)
                if not ch:
                    return
                if not self.key(ch.lower()):
                    self.session.stop("quit key")
                    return
        except (OSError, ValueError):
            return
        finally:
            if fd is not None and old is not None:
                import termios

                termios.tcsetattr(fd, termios.TCSADRAIN, old)


def _cmd_mic(args: argparse.Namespace) -> int:
    from livesense.live.devices import describe_devices, resolve_device
    from livesense.live.mic import LiveAudioConfig, LiveAudioSession

    if args.list_devices:
        print(describe_devices())
        return 0
    sample_rate = 48000
    block = round(args.block_ms * sample_rate / 1000.0)
    if block < 16:
        raise ConfigError(f"--block-ms {args.block_ms} is too short (at least 16 samples)")
    if args.no_output and not args.record:
        raise ConfigError("--no-output needs --record DIR (otherwise nothing would come out)")
    in_dev = resolve_device(args.input, "input")
    out_dev = None if args.no_output else resolve_device(args.output, "output")
    renderer, speaker, listener = _build_renderer(args, sample_rate)
    if args.renderer == "neural":
        import torch

        torch.set_num_threads(1)  # small convs: one thread is faster and steadier here
    cfg = LiveAudioConfig(
        sample_rate=sample_rate,
        block=block,
        render_block=2048 if args.renderer == "neural" else None,
        lossless=args.lossless,
        duration_s=args.duration,
        output=not args.no_output,
    )
    session = LiveAudioSession(renderer, cfg, in_dev, out_dev, record_dir=args.record)
    if args.orbit is None:
        _KeyControl(session, speaker, listener).start()
    if not args.quiet:
        keys = "" if args.orbit else "keys: a/d left/right, w/s closer/farther, q quit; "
        print(f"rendering the microphone ({keys}Ctrl-C stops)", file=sys.stderr)
    stats = session.run()
    if not args.quiet:
        print(
            f"{stats.stop_reason}: {stats.rendered_samples / sample_rate:.2f} s rendered, "
            f"RTF {stats.rtf:.3f}, {stats.output_underruns} output underruns, "
            f"{stats.input_overrun_samples} input samples dropped, latency "
            + (
                f"{stats.measured_latency_ms_p50:.0f} ms (p50, measured)"
                if stats.measured_latency_ms_p50
                else f"about {stats.latency_ms:.0f} ms"
            )
            + (f" -> {args.record}/" if args.record else "")
        )
    return 130 if stats.stop_reason == "interrupted" else 0


class _EventView:
    """Shows notes and answers as they arrive: a rich live panel on a terminal, plain lines
    otherwise."""

    def __init__(self, quiet: bool):
        from rich.console import Console

        self.console = Console(stderr=False)
        self.quiet = quiet
        self.events: list = []
        self.status = ""
        self.live = None
        if not quiet and self.console.is_terminal:
            from rich.live import Live

            self.live = Live(self, console=self.console, refresh_per_second=4, transient=False)

    def __rich__(self):
        from rich.console import Group
        from rich.panel import Panel
        from rich.text import Text

        lines = Text()
        for e in self.events[-15:]:
            tag = "note  " if e.type == "note" else "answer"
            q = f" [{e.question}]" if e.question else ""
            lines.append(f"{e.t0:7.1f}-{e.t1:7.1f}s {tag}{q} ", style="bold")
            lines.append(e.text + "\n")
        return Group(
            Panel(lines, title="livesense: what the model sees"),
            Text(self.status + "  (type a question + Enter; Ctrl-C stops)", style="dim"),
        )

    def add(self, event) -> None:
        self.events.append(event)
        if self.live is None and not self.quiet:
            q = f" [{event.question}]" if event.question else ""
            print(f"{event.t0:.1f}-{event.t1:.1f}s {event.type}{q}: {event.text}", flush=True)

    def __enter__(self):
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)


def _cmd_webcam(args: argparse.Namespace) -> int:
    from livesense.live.camera import CameraSource, CameraSpec
    from livesense.models.vlm import load_vlm
    from livesense.streaming.frames import Question
    from livesense.video.reasoner import ReasonerConfig, TranscriptWriter, VideoReasoner

    spec = CameraSpec.parse(args.camera)
    record = Path(args.record) if args.record else None
    if record is not None:
        if record.exists() and not record.is_dir():
            raise ConfigError(f"--record {record} exists and is not a folder")
        record.mkdir(parents=True, exist_ok=True)
    session = None
    if args.mic:
        from livesense.live.devices import resolve_device
        from livesense.live.mic import LiveAudioConfig, LiveAudioSession

        in_dev, out_dev = resolve_device(args.input, "input"), resolve_device(args.output, "output")
        renderer, _, _ = _build_renderer(args, 48000)
        live_cfg = LiveAudioConfig(
            duration_s=args.duration, render_block=2048 if args.renderer == "neural" else None
        )
        session = LiveAudioSession(renderer, live_cfg, in_dev, out_dev, record)
    sink: list = []  # the reasoner, once loaded; the camera opens first to fail fast
    camera = CameraSource(spec, lambda f: sink[0].submit_frame(f), duration=args.duration)
    backend = load_vlm(args.vlm)
    view = _EventView(args.quiet)
    writer = TranscriptWriter(record / "transcript.jsonl") if record else None

    def on_event(event) -> None:
        view.add(event)
        if writer is not None:
            writer.write(event)

    reasoner = VideoReasoner(
        backend,
        ReasonerConfig(fps=args.vlm_fps, segment_seconds=args.segment_seconds),
        on_event=on_event,
    )
    sink.append(reasoner)
    asked = [0]

    def read_questions() -> None:
        try:
            for line in sys.stdin:
                text = line.strip()
                if text:
                    asked[0] += 1
                    reasoner.ask(Question(text, camera.last_pts, id=f"q{asked[0]}"))
        except (OSError, ValueError):
            return

    audio_thread = None
    interrupted = False
    reasoner.start()
    try:
        with view:
            camera.start()
            if session is not None:
                audio_thread = threading.Thread(target=session.run, name="livesense-mic")
                audio_thread.start()
            if sys.stdin is not None and not sys.stdin.closed:
                threading.Thread(target=read_questions, daemon=True).start()
            while not camera.done.wait(0.25):
                st = reasoner.stats()
                view.status = (
                    f"t={camera.last_pts:6.1f}s frames {camera.frames}, watched "
                    f"{st.frames_ingested}, dropped {st.frames_dropped}, notes {st.notes_emitted}"
                )
    except KeyboardInterrupt:
        interrupted = True
    finally:
        camera.stop()
        camera.join(timeout=5)
        if session is not None:
            session.stop("interrupted" if interrupted else "camera ended")
            if audio_thread is not None:
                audio_thread.join(timeout=10)
        if interrupted:
            reasoner.close()
            rstats = reasoner.stats()
        else:
            rstats = reasoner.finish(timeout=60)
        if writer is not None:
            writer.close()
        if record is not None:
            import json

            (record / "reasoner_stats.json").write_text(json.dumps(rstats.to_json(), indent=2))
    if camera.error is not None:
        if isinstance(camera.error, LivesenseError):
            raise camera.error
        raise LivesenseError(f"camera {args.camera}: {camera.error}")
    if not args.quiet:
        print(
            f"{'interrupted' if interrupted else 'done'}: {camera.frames} frames, "
            f"{rstats.notes_emitted} notes, {rstats.answers} answers"
            + (f" -> {record}/" if record else "")
        )
    return 130 if interrupted else 0


def _progress_bar():
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.1f}/{task.total:.1f} s"),
        TimeElapsedColumn(),
        transient=False,
    )


def _cmd_serve(args: argparse.Namespace) -> int:
    from livesense.live import engines
    from livesense.live.server.app import cmd_serve

    if args.random_weights and not args.checkpoint:
        print("*** livesense: UNTRAINED neural renderer (--random-weights) ***", file=sys.stderr)

    def neural() -> engines.NeuralEngine:
        return engines.NeuralEngine(args.checkpoint, args.random_weights, args.nfe)

    if args.renderer == "neural" or args.checkpoint or args.random_weights:
        engine = neural()  # the default renderer (or an explicit checkpoint): fail fast
        engines.register_renderer("neural", lambda: engine)
    else:  # sessions may still ask for the bundled neural renderer: load it on first use
        engines.register_renderer("neural", neural)
    import torch

    torch.set_num_threads(1)  # sessions run on several audio workers: no oversubscription
    return cmd_serve(args)


def _cmd_synth(args: argparse.Namespace) -> int:
    from livesense.audio.synth import cmd_synth

    return cmd_synth(args)


def _cmd_train(args: argparse.Namespace) -> int:
    from livesense.models.binaural.training import cmd_train

    return cmd_train(args)


def _cmd_eval(args: argparse.Namespace) -> int:
    from livesense.models.binaural.evaluation import cmd_eval

    return cmd_eval(args)


def _cmd_client(args: argparse.Namespace) -> int:
    from livesense.live.server.client import cmd_client

    return cmd_client(args)


COMMANDS = {
    "info": _cmd_info,
    "replay": _cmd_replay,
    "mic": _cmd_mic,
    "webcam": _cmd_webcam,
    "serve": _cmd_serve,
    "client": _cmd_client,
    "synth-binaural": _cmd_synth,
    "train-binaural": _cmd_train,
    "eval-binaural": _cmd_eval,
}


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
