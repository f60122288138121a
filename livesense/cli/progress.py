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
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["ProgressBar"]


class _Done(ProgressColumn):
    """``3/10`` items or ``3.5/10.0 s``; just ``3`` / ``3.5 s`` while the total is unknown (a
    live recording without a duration, a dataset not counted yet)."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        if self.unit == "items":
            done = f"{int(task.completed)}" + ("" if task.total is None else f"/{int(task.total)}")
        else:
            total = "" if task.total is None else f"/{task.total:.1f}"
            done = f"{task.completed:.1f}{total} s"
        return Text(done, style="progress.download")


class ProgressBar:
    """``with ProgressBar("replay", total=10.0, unit="s") as bar: bar.update(3.5)``.

    ``unit``: ``"items"`` (``done/total``) or ``"s"`` (seconds of media); ``total=None`` (not
    known) draws a pulsing bar and a counter; ``fields`` are extra
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
        columns: list[ProgressColumn] = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),  # pulses while the total is unknown
            _Done(unit),
        ]
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
