"""Progress bars for long work (rich, on stderr), or a silent stand-in with the same calls."""

from __future__ import annotations

from typing import Any


class NoProgress:
    """Accepts the calls of :class:`rich.progress.Progress` used here and shows nothing."""

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *a: object, **k: object) -> int:
        return 0

    def advance(self, *a: object, **k: object) -> None:
        return None

    def update(self, *a: object, **k: object) -> None:
        return None


def count_progress(enabled: bool) -> Any:
    """A bar counting items (``done/total``, elapsed time), or :class:`NoProgress`."""
    if not enabled:
        return NoProgress()
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
