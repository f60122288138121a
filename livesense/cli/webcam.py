"""``livesense webcam``: a camera watched by the video reasoner, notes and answers live."""

from __future__ import annotations

import argparse
import gc
import json
import sys
import threading
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.text import Text

from livesense.cli.options import (
    add_device_options,
    add_neural_options,
    add_pose_options,
    build_renderer,
    close_renderer,
    device_dtype,
)
from livesense.cli.options import positive_float as pos_float
from livesense.cli.outputs import FORCE_HELP, WEBCAM_OUTPUTS, prepare_out_dir
from livesense.errors import ConfigError, LivesenseError
from livesense.live.camera import CameraSource, CameraSpec
from livesense.live.devices import resolve_device
from livesense.live.mic import MicConfig, MicLoop
from livesense.models.binaural import SlotStream, live_block
from livesense.models.vlm import load_vlm
from livesense.streaming.frames import Question, TextEvent, VideoFrame
from livesense.video.reasoner import ReasonerConfig, VideoReasoner
from livesense.video.transcript import TranscriptWriter

DESCRIPTION = """\
Watch a camera with a vision-language model: notes appear per segment and questions typed at \
the prompt (one per line) are answered from what has been seen so far. With --mic the \
microphone is rendered to binaural audio at the same time (both models run concurrently). \
Ctrl-C stops; with --record DIR the transcript (and, with --mic, the binaural audio) is kept \
in DIR."""

DEFAULT_VLM = "HuggingFaceTB/SmolVLM2-256M-Video-Instruct"
_REASONER = ReasonerConfig()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--camera",
        default="/dev/video0",
        metavar="SRC",
        help="/dev/videoN (v4l2), an rtsp/http URL, lavfi:GRAPH (e.g. "
        "lavfi:testsrc2=size=320x240:rate=10) or a video file (default: /dev/video0)",
    )
    p.add_argument(
        "--vlm",
        default=DEFAULT_VLM,
        metavar="MODEL|tiny",
        help="Hugging Face model id or local folder (default: SmolVLM2-256M, CPU-friendly); "
        "tiny = a tiny random model whose text is meaningless (for testing)",
    )
    p.add_argument(
        "--segment-seconds",
        type=pos_float,
        default=_REASONER.segment_seconds,
        metavar="S",
        help=f"a note per segment of S seconds (default: {_REASONER.segment_seconds:g})",
    )
    p.add_argument(
        "--vlm-fps",
        type=pos_float,
        default=_REASONER.fps,
        metavar="FPS",
        help=f"frames per second the model watches (default: {_REASONER.fps:g})",
    )
    p.add_argument("--duration", type=pos_float, metavar="SECONDS", help="stop after this long")
    p.add_argument("--record", metavar="DIR", help="write transcript.jsonl (and more) into DIR")
    p.add_argument("--force", action="store_true", help=f"with --record: {FORCE_HELP}")
    p.add_argument(
        "--mic",
        action="store_true",
        help="also render the microphone to binaural audio on the headphones",
    )
    p.add_argument("--input", metavar="DEV", help="with --mic: input device")
    p.add_argument("--output", metavar="DEV", help="with --mic: output device")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    g = p.add_argument_group("binaural rendering (with --mic)")
    g.add_argument("--renderer", choices=("dsp", "neural"), default="dsp", help="dsp (default)")
    add_neural_options(g)
    add_pose_options(g, poses_file=False)
    add_device_options(p.add_argument_group("device"))


# options of the microphone path: without --mic nothing would use them
_MIC_OPTIONS = (
    "--input",
    "--output",
    "--speaker-pose",
    "--listener-pose",
    "--orbit",
    "--hrtf",
    "--checkpoint",
    "--random-weights",
    "--nfe",
)


class EventView:
    """Shows notes and answers as they arrive: a rich live panel on a terminal, plain lines
    otherwise."""

    def __init__(self, quiet: bool):
        self.console = Console(stderr=False)
        self.quiet = quiet
        self.events: list[TextEvent] = []
        self.status = ""
        self.live: Live | None = None
        if not quiet and self.console.is_terminal:
            self.live = Live(self, console=self.console, refresh_per_second=4, transient=False)

    def __rich__(self) -> Group:
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

    def add(self, event: TextEvent) -> None:
        self.events.append(event)
        if self.live is None and not self.quiet:
            q = f" [{event.question}]" if event.question else ""
            print(f"{event.t0:.1f}-{event.t1:.1f}s {event.type}{q}: {event.text}", flush=True)

    def __enter__(self) -> EventView:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)


def _mic_loop(args: argparse.Namespace, record: Path | None) -> MicLoop:
    in_dev, out_dev = resolve_device(args.input, "input"), resolve_device(args.output, "output")
    renderer, _, _ = build_renderer(args, MicConfig.sample_rate, live=True)
    block = live_block(renderer.config) if isinstance(renderer, SlotStream) else None
    return MicLoop(
        renderer, MicConfig(duration_s=args.duration, render_block=block), in_dev, out_dev, record
    )


def run(args: argparse.Namespace) -> int:
    spec = CameraSpec.parse(args.camera)
    if args.force and not args.record:
        raise ConfigError("--force applies to --record DIR")
    if not args.mic:
        unused = [f for f in _MIC_OPTIONS if getattr(args, f.lstrip("-").replace("-", "_"))]
        if args.renderer != "dsp":
            unused.insert(0, "--renderer")
        if unused:
            raise ConfigError(f"{unused[0]} applies to --mic (the binaural audio): add --mic")
    record = (
        prepare_out_dir(args.record, "--record", WEBCAM_OUTPUTS, args.force)
        if args.record
        else None
    )
    mic = _mic_loop(args, record) if args.mic else None
    sink: list[VideoReasoner] = []  # the reasoner, once loaded; the camera opens first to fail fast

    def on_frame(frame: VideoFrame) -> None:
        sink[0].submit_frame(frame)

    camera = CameraSource(spec, on_frame, duration=args.duration)
    device, dtype = device_dtype(args, None)
    backend = load_vlm(args.vlm, str(device), dtype)
    view = EventView(args.quiet)
    writer = TranscriptWriter(record / "transcript.jsonl") if record else None

    def on_event(event: TextEvent) -> None:
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
    gc.freeze()  # the loaded models live on: full collections skip them (no long pauses live)
    reasoner.start()
    try:
        with view:
            camera.start()
            if mic is not None:
                audio_thread = threading.Thread(target=mic.run, name="livesense-mic")
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
        if mic is not None:
            mic.stop("interrupted" if interrupted else "camera ended")
            if audio_thread is not None:
                audio_thread.join(timeout=10)
            close_renderer(mic.renderer)
        if interrupted:
            reasoner.close()
            rstats = reasoner.stats()
        else:
            rstats = reasoner.finish(timeout=60)
        if writer is not None:
            writer.close()
        if record is not None:
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
