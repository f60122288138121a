"""``livesense info FILE``: the container, duration and streams of a media file."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from livesense.media.container import probe

DESCRIPTION = "Print the container format, duration and every stream (codec, rate, size) of FILE."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="any file PyAV/FFmpeg can read")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    info = probe(args.file)
    print(json.dumps(asdict(info), indent=2, default=str) if args.json else info.describe())
    return 0
