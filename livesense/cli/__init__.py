"""The ``livesense`` command line: one module per command in this package.

Each command module has ``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> int``.
Only the chosen command's module is imported (``livesense info`` never loads torch), and every
user mistake (missing file, bad option value, unreadable media) ends with a one-line
``error: ...`` on stderr and exit status 2, never a traceback; Ctrl-C ends with 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from livesense import __version__
from livesense.errors import LivesenseError

__all__ = ["COMMANDS", "build_parser", "main"]

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

# command -> (module in this package, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("info", "show the streams, durations and rates of a media file"),
    "replay": (
        "replay",
        "replay a recorded file through the streaming pipeline (binaural rendering)",
    ),
    "mic": ("mic", "microphone -> binaural renderer -> headphones, live"),
    "webcam": ("webcam", "camera -> video reasoner, notes and answers live in the terminal"),
    "serve": ("serve", "run the live-session websocket server (and the browser client)"),
    "client": (
        "client",
        "stream a recorded file to a live-session server and save what comes back",
    ),
    "synth-binaural": (
        "synth_binaural",
        "generate synthetic binaural training data (Richard et al. layout)",
    ),
    "train-binaural": (
        "train_binaural",
        "train a BinauralFlow model on binaural data (Richard et al. layout)",
    ),
    "eval-binaural": (
        "eval_binaural",
        "evaluate the neural and DSP binaural renderers on a dataset",
    ),
}


def load(command: str) -> ModuleType:
    """The module of ``command`` (imported on demand: only the chosen command's dependencies)."""
    return importlib.import_module(f"livesense.cli.{COMMANDS[command][0]}")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``livesense`` parser; ``command``'s sub-parser gets its full options (the others
    only their one-line help, enough for ``livesense --help``)."""
    parser = argparse.ArgumentParser(
        prog="livesense",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"livesense {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        if name != command:
            sub.add_parser(name, help=help_text)
            continue
        module = load(name)
        p = sub.add_parser(
            name,
            help=help_text,
            description=module.DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The command named on the line (the first word that is not an option)."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_in(argv)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(load(args.command).run(args))
    except LivesenseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
