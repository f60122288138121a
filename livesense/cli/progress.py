"""The one progress bar of the command line (rich, on stderr), or a silent stand-in.

Library code never draws: long work (replay, dataset synthesis, evaluation, training) reports
through callbacks, and the command feeds this bar.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["ProgressBar"]


class ProgressBar:
    """``with ProgressBar("replay", total=10.0, unit="s") as bar: bar.update(3.5)``.

    ``unit``: ``"items"`` (``done/total``) or ``"s"`` (seconds of media); ``fields`` are extra
    columns (``{"loss": "loss {:.4f}"}``) filled by ``update(..., loss=0.1)``. Disabled (or with
    stderr not a terminal, unless ``force``) it draws nothing and :meth:`log` prints plain lines.
    """

    def __init__(
        self,
        label: str,
        total: float | None,
        unit: str = "items",
        enabled: bool = True,
        fields: dict[str, str] | None = None,
        eta: bool = False,
        force: bool = False,
    ):
        self.enabled = enabled and (force or sys.stderr.isatty())
        self.fields = dict(fields or {})
        self._progress: Progress | None = None
        self._task: Any = None
        self._label, self._total = label, total
        if not self.enabled:
            return
        done: ProgressColumn = (
            MofNCompleteColumn()
            if unit == "items"
            else TextColumn("{task.completed:.1f}/{task.total:.1f} s")
        )
        columns: list[ProgressColumn] = [TextColumn("[bold]{task.description}"), BarColumn(), done]
        columns += [TextColumn(f"{{task.fields[{k}]}}") for k in self.fields]
        columns += [TimeRemainingColumn()] if eta else [TimeElapsedColumn()]
        self._progress = Progress(*columns, console=Console(stderr=True))

    def __enter__(self) -> ProgressBar:
        if self._progress is not None:
            self._progress.__enter__()
            blank = {k: "" for k in self.fields}
            self._task = self._progress.add_task(self._label, total=self._total, **blank)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)

    def update(self, completed: float, **values: float) -> None:
        """Move the bar to ``completed``; ``values`` fill the named fields."""
        if self._progress is None:
            return
        shown = {k: self.fields[k].format(v) for k, v in values.items() if k in self.fields}
        self._progress.update(self._task, completed=completed, **shown)

    def count(self, done: int, total: int) -> None:
        """``on_progress(done, total)`` callbacks of the library: ``done`` of ``total`` items."""
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total)

    def log(self, message: str) -> None:
        """A line above the bar (or on stderr without one)."""
        if self._progress is not None:
            self._progress.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=sys.stderr)
