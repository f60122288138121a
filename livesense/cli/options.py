"""Options shared by several commands, and the renderer they choose.

Defaults come from the library (:data:`~livesense.audio.geometry.DEFAULT_SPEAKER`, the config
dataclasses), written once there; help texts show them.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

import torch

from livesense.audio.dsp_renderer import DspBinauralRenderer, DspRendererConfig
from livesense.audio.geometry import DEFAULT_LISTENER, DEFAULT_SPEAKER, Pose, source_direction
from livesense.audio.hrtf import load_hrirs
from livesense.audio.stft import StftConfig, stft_roundtrip
from livesense.audio.trajectory import (
    OrbitTrajectory,
    PoseFileTrajectory,
    StaticTrajectory,
    Trajectory,
)
from livesense.errors import ConfigError
from livesense.models.binaural import NfePolicy, RenderEngine, SlotStream, load_model
from livesense.models.devices import DTYPES, parse_device, parse_dtype
from livesense.streaming.processor import StreamProcessor

__all__ = [
    "MAX_POSITION_M",
    "SAMPLE_RATES",
    "add_device_options",
    "add_neural_options",
    "add_pose_options",
    "build_renderer",
    "close_renderer",
    "device_dtype",
    "float_in",
    "int_in",
    "parse_pose",
    "positive_float",
    "positive_int",
    "reject_unused",
    "warn_untrained",
]

SAMPLE_RATES = (8000, 192000)  # --sample-rate bounds (Hz): telephone to studio rates
MAX_POSITION_M = 1000.0  # pose coordinates beyond a kilometre are a typo, not a scene


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def float_in(low: float, high: float, unit: str = "") -> Callable[[str], float]:
    """An argparse type: a number in (``low``, ``high``] (``unit`` shown in the error)."""

    def parse(text: str) -> float:
        value = positive_float(text) if low >= 0 else float(text)
        if not low < value <= high:
            raise argparse.ArgumentTypeError(
                f"must be > {low:g} and at most {high:g}{unit}, got {text}"
            )
        return value

    return parse


def int_in(low: int, high: int, unit: str = "") -> Callable[[str], int]:
    """An argparse type: an integer in [``low``, ``high``] (``unit`` shown in the error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}{unit}, got {text}")
        return value

    return parse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _pose_text(pose: Pose) -> str:
    return ",".join(f"{v:g}" for v in pose.position)


def add_pose_options(
    g: argparse._ArgumentGroup | argparse.ArgumentParser, *, poses_file: bool, hrtf: bool = True
) -> None:
    """``--speaker-pose``, ``--listener-pose``, ``--orbit`` (``--poses``) (``--hrtf``)."""
    ahead = DEFAULT_SPEAKER.position[0]
    g.add_argument(
        "--speaker-pose",
        metavar="x,y,z[,qx,qy,qz,qw]",
        default=None,
        help=f"speaker position (and orientation); default {_pose_text(DEFAULT_SPEAKER)} "
        f"({ahead:g} m straight ahead)",
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
        type=positive_float,
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
    if hrtf:
        g.add_argument(
            "--hrtf",
            metavar="FILE",
            help="with --renderer dsp: HRIR set (.sofa) instead of the bundled MIT KEMAR",
        )


def add_neural_options(g: argparse._ArgumentGroup) -> None:
    """``--checkpoint``, ``--random-weights``, ``--nfe``."""
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
        type=positive_int,
        metavar="N",
        help="with --renderer neural: network evaluations per frame (default: the model's)",
    )


def add_device_options(g: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    """``--device`` and ``--dtype``: where and in what precision the models run."""
    g.add_argument(
        "--device",
        default="auto",
        metavar="auto|cpu|cuda[:N]",
        help="where the neural renderer and the video reasoner run: auto (default) is the "
        "first CUDA GPU when there is one, else the CPU",
    )
    g.add_argument(
        "--dtype",
        choices=list(DTYPES),
        default=None,
        help="model precision: the neural renderer defaults to float32 (bfloat16 halves its "
        "memory and on a GPU its time; norm statistics, the solver and the STFT stay float32); "
        "the video reasoner defaults to bfloat16 on CUDA and float32 on the CPU",
    )


def device_dtype(
    args: argparse.Namespace, default: torch.dtype | None = torch.float32
) -> tuple[torch.device, torch.dtype | None]:
    """The ``--device`` / ``--dtype`` of ``args`` (``default`` when --dtype is not given)."""
    dev = parse_device(getattr(args, "device", "auto"))
    name = getattr(args, "dtype", None)
    return dev, (default if name is None else parse_dtype(name))


def close_renderer(processor: StreamProcessor) -> None:
    """Stop the engine behind a neural renderer of :func:`build_renderer` (no-op otherwise)."""
    if isinstance(processor, SlotStream):
        processor.close()
        processor.engine.close()


def parse_pose(text: str | None, option: str, default: Pose) -> Pose:
    """A ``--*-pose`` value (``default`` when not given); the option is named in errors."""
    if text is None:
        return default
    try:
        pose = Pose.parse(text)
    except ConfigError as exc:
        raise ConfigError(f"{option}: {exc}") from None
    if max(abs(v) for v in pose.position) > MAX_POSITION_M:
        raise ConfigError(
            f"{option} {text}: coordinates are metres and must be within "
            f"+-{MAX_POSITION_M:g} m of the origin"
        )
    return pose


# option (its attribute) -> the renderers that use it; any other renderer rejects it
_RENDERER_OPTIONS: dict[str, tuple[str, ...]] = {
    "checkpoint": ("neural",),
    "random_weights": ("neural",),
    "nfe": ("neural",),
    "hrtf": ("dsp",),
    "speaker_pose": ("dsp", "neural"),
    "listener_pose": ("dsp", "neural"),
    "orbit": ("dsp", "neural"),
    "poses": ("dsp", "neural"),
}


def reject_unused(args: argparse.Namespace) -> None:
    """A ConfigError for an option that ``--renderer`` would silently ignore."""
    for name, users in _RENDERER_OPTIONS.items():
        if getattr(args, name, None) in (None, False) or args.renderer in users:
            continue
        flag = "--" + name.replace("_", "-")
        if name == "hrtf":
            raise ConfigError(
                f"--hrtf applies to --renderer dsp: the {args.renderer} renderer does not use "
                "HRIRs (the neural model was trained with the bundled MIT KEMAR ones; add "
                "--renderer dsp to use your own)"
            )
        which = " or ".join(f"--renderer {u}" for u in users)
        raise ConfigError(f"{flag} applies to {which}, not --renderer {args.renderer}")
    given = [
        f for f, v in (("--device", getattr(args, "device", "auto") != "auto"),
                       ("--dtype", getattr(args, "dtype", None) is not None)) if v
    ]  # fmt: skip
    if given and args.renderer != "neural" and getattr(args, "vlm", "none") == "none":
        with_vlm = " or --vlm" if hasattr(args, "vlm") else ""
        raise ConfigError(
            f"{given[0]} applies to --renderer neural{with_vlm}: the {args.renderer} renderer "
            "runs on the CPU in float32"
        )


def warn_untrained(args: argparse.Namespace) -> None:
    """Say loudly that ``--random-weights`` renders meaningless audio."""
    if args.random_weights and not args.checkpoint:
        print(
            "*** livesense: UNTRAINED neural renderer (--random-weights): its audio is "
            "meaningless; drop --random-weights for the bundled model ***",
            file=sys.stderr,
        )


def build_renderer(
    args: argparse.Namespace, sample_rate: int, live: bool = False
) -> tuple[StreamProcessor, Trajectory | None, Trajectory | None]:
    """The audio processor ``--renderer`` names and the speaker/listener trajectories of the
    pose options. The neural renderer is a one-slot :class:`RenderEngine` stream on
    ``--device`` in ``--dtype`` (:func:`close_renderer` stops it). ``live``: a device that
    cannot wait, so the neural renderer lowers its evaluations when a block renders too slowly
    (unless ``--nfe`` fixes them). Options that the chosen renderer would ignore are errors."""
    reject_unused(args)
    if args.renderer == "passthrough":
        return stft_roundtrip(StftConfig(sample_rate=sample_rate)), None, None
    speaker_pose = parse_pose(args.speaker_pose, "--speaker-pose", DEFAULT_SPEAKER)
    listener_pose = parse_pose(args.listener_pose, "--listener-pose", DEFAULT_LISTENER)
    listener = StaticTrajectory(listener_pose)
    speaker: Trajectory
    if getattr(args, "poses", None):
        speaker = PoseFileTrajectory(args.poses)
    elif getattr(args, "orbit", None):
        try:
            speaker = OrbitTrajectory.around(speaker_pose, listener_pose, args.orbit)
        except ConfigError as e:
            raise ConfigError(f"--orbit: {e} (--speaker-pose)") from None
    else:
        speaker = StaticTrajectory(speaker_pose)
        if source_direction(speaker_pose, listener_pose)[2] < 0.05:
            raise ConfigError("--speaker-pose puts the speaker inside the listener's head")
    if args.renderer == "neural":
        warn_untrained(args)
        model = load_model(args.checkpoint, args.random_weights)
        if model.config.sample_rate != sample_rate:
            raise ConfigError(
                f"the checkpoint renders {model.config.sample_rate} Hz, not {sample_rate} Hz"
            )
        policy = NfePolicy() if live and args.nfe is None else None
        device, dtype = device_dtype(args)
        assert dtype is not None
        engine = RenderEngine(model, 1, nfe=args.nfe, device=device, dtype=dtype, policy=policy)
        return engine.open(speaker, listener), speaker, listener
    hrirs = load_hrirs(args.hrtf, sample_rate)
    config = DspRendererConfig(sample_rate=sample_rate)
    return DspBinauralRenderer(speaker, listener, hrirs=hrirs, config=config), speaker, listener
