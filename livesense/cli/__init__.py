"""The ``livesense`` command line: one module per command in this package.

Each command module has ``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> int``.
Only the chosen command's module is imported (``livesense info`` never loads torch), and every
user mistake (missing file, bad option value, unreadable media, an unwritable output folder)
ends with one ``error: ...`` line on stderr and exit status 2, never a traceback or a usage dump;
Ctrl-C ends with 130. Library warnings (a truncated input file) are ``warning: ...`` lines;
Python warnings of the libraries underneath (numpy, torch) are not shown unless asked for with
``python -W`` / ``PYTHONWARNINGS``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

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


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error style: one ``error:`` line naming the option, exit 2, and
    values that start with a minus sign (``--speaker-pose -1,0,0``) taken as values."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # argparse takes only "-5" / "-.5" for numbers; coordinates lists and exponents too
        # (no livesense option starts with "-" + digit, so nothing is shadowed).
        self._negative_number_matcher = re.compile(r"^-\.?\d")
        self.help_prog = self.prog  # the command whose --help the error points to

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.help_prog} --help`)\n")


def one_line(exc: BaseException) -> str:
    """The first line of an error's message (libraries underneath add paragraphs of advice)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].strip()


class _DedupeFilter(logging.Filter):
    """Drops a second record about the same thing (``extra={"once": key}``): a truncated
    file read by an audio and a video reader gets one warning, not two."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[object] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = getattr(record, "once", None)
        if key is None:
            return True
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


class _LevelFormatter(logging.Formatter):
    """``warning: message`` (a bug's traceback, if the record has one, still follows)."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _quiet_libraries() -> None:
    """Library warnings as ``warning: ...`` lines on stderr; Python warnings of numpy/torch
    hidden unless the user asked for them (``-W``, ``PYTHONWARNINGS``)."""
    if not sys.warnoptions:
        warnings.simplefilter("ignore")
    if not logging.root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_LevelFormatter())
        handler.addFilter(_DedupeFilter())
        logging.root.addHandler(handler)


def load(command: str) -> ModuleType:
    """The module of ``command`` (imported on demand: only the chosen command's dependencies)."""
    return importlib.import_module(f"livesense.cli.{COMMANDS[command][0]}")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``livesense`` parser; ``command``'s sub-parser gets its full options (the others
    only their one-line help, enough for ``livesense --help``)."""
    parser = _Parser(
        prog="livesense",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"livesense {__version__}")
    if command is not None:  # "unrecognized arguments" are reported by the top parser
        parser.help_prog = f"livesense {command}"
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
    _quiet_libraries()
    try:
        return int(load(args.command).run(args))
    except LivesenseError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # the disk filled up, a folder vanished mid-run: not a bug to trace
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
