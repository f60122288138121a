"""Output folders of the commands: created up front, never silently mixed with an earlier run.

One policy for every command that writes a folder (``replay --out``, ``mic --record``,
``webcam --record``, ``synth-binaural --out``): a folder that already holds the files of an
earlier run is refused with an ``error:`` line unless ``--force`` is given; with ``--force``
exactly those files are deleted first (nothing else in the folder is touched), so no stale
output of the earlier run (a ``binaural.png``, an ``accuracy.json``) is left next to the new
ones. A path that is a file, lies under a file, or cannot be created or written is a one-line
error naming the option.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from livesense.errors import ConfigError

__all__ = [
    "FORCE_HELP",
    "MIC_OUTPUTS",
    "REPLAY_OUTPUTS",
    "SEQUENCE_FILES",
    "WEBCAM_OUTPUTS",
    "prepare_dataset_dir",
    "prepare_out_dir",
]

REPLAY_OUTPUTS = (
    "binaural.wav",
    "audio.wav",
    "output.mp4",
    "stats.json",
    "binaural.png",
    "transcript.jsonl",
    "accuracy.json",
)
MIC_OUTPUTS = ("binaural.wav", "transcript.jsonl", "stats.json")
WEBCAM_OUTPUTS = (*MIC_OUTPUTS, "reasoner_stats.json")
SEQUENCE_FILES = frozenset(
    {"mono.wav", "binaural.wav", "tx_positions.txt", "rx_positions.txt", "meta.json"}
)
_SPLITS = ("train", "val", "test")
_SEQUENCE = re.compile(r"^seq_\d+$")

FORCE_HELP = (
    "replace the outputs of an earlier run in the folder (without it such a folder is refused; "
    "with it only those files are deleted first)"
)


def _reason(exc: OSError) -> str:
    if isinstance(exc, NotADirectoryError):
        return "a part of the path is a file, not a folder"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or str(exc)


def _writable_dir(path: Path, option: str) -> None:
    """Create ``path`` (and parents) and check a file can be written into it."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise ConfigError(f"{option} {path}: cannot write there: {_reason(e)}") from None


def _delete(paths: Iterable[Path], option: str) -> None:
    try:
        for p in paths:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
    except OSError as e:
        raise ConfigError(f"{option}: cannot replace the earlier outputs: {_reason(e)}") from None


def _listing(found: list[str], most: int) -> str:
    return ", ".join(found[:most]) + (", ..." if len(found) > most else "")


def prepare_out_dir(
    path: str | Path, option: str, outputs: Iterable[str], force: bool = False
) -> Path:
    """The folder ``path`` created and writable, with none of ``outputs`` (file names) in it:
    refused if it has some, unless ``force``, which deletes them."""
    out = Path(path)
    found = [n for n in outputs if os.path.lexists(out / n)]  # none when ``out`` is a file
    if found and not force:
        raise ConfigError(
            f"{option} {out} already holds the outputs of an earlier run "
            f"({_listing(found, 4)}): add --force to replace them, or choose another folder"
        )
    _writable_dir(out, option)  # also: a file, or under a file, is an error
    _delete((out / n for n in found), option)
    return out


def _dataset_parts(root: Path) -> tuple[list[Path], list[Path]]:
    """(what an earlier synth-binaural run wrote under ``root``, sequence folders holding
    files it did not write)."""
    parts: list[Path] = []
    foreign: list[Path] = []
    if (root / "split.json").exists():
        parts.append(root / "split.json")
    for folder in (root, *(root / s for s in _SPLITS)):
        if not folder.is_dir():
            continue
        for seq in sorted(folder.iterdir()):
            if not (seq.is_dir() and _SEQUENCE.match(seq.name)):
                continue
            names = {p.name for p in seq.iterdir()}
            (parts if names <= SEQUENCE_FILES else foreign).append(seq)
    return parts, foreign


def prepare_dataset_dir(path: str | Path, option: str, force: bool = False) -> Path:
    """``synth-binaural --out``: refused if it holds a dataset (``split.json`` or ``seq_*``
    folders), unless ``force``, which deletes the earlier dataset's files and sequence folders
    first (a sequence folder with other files in it is never deleted)."""
    root = Path(path)
    parts, foreign = _dataset_parts(root) if root.is_dir() else ([], [])
    found = [str(p.relative_to(root)) for p in parts + foreign]
    if found and not force:
        raise ConfigError(
            f"{option} {root} already holds a dataset ({_listing(found, 3)}): add --force to "
            "replace it, or choose another folder"
        )
    if foreign:
        raise ConfigError(
            f"{option} {root}: {foreign[0].relative_to(root)} holds files synth-binaural did "
            "not write; not deleting it (move it away or choose another folder)"
        )
    _writable_dir(root, option)
    _delete(parts, option)
    return root
