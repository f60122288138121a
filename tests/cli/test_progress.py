"""The one progress bar of the command line."""

from __future__ import annotations

import pytest

from livesense.cli.progress import ProgressBar


def test_progress_bar_without_a_terminal_logs_plain_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with ProgressBar("work", 3, "items", fields={"loss": "loss {:.2f}"}) as bar:
        assert not bar.enabled  # stderr is captured, not a terminal
        bar.update(1, loss=0.5)
        bar.count(2, 3)
        bar.log("step 2: fine")
    assert capsys.readouterr().err == "step 2: fine\n"


def test_progress_bar_forced_draws_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with ProgressBar("work", 4.0, "s", force=True, fields={"loss": "loss {:.2f}"}) as bar:
        bar.update(2.0, loss=0.25)
        bar.log("a line")
    err = capsys.readouterr().err
    assert "work" in err and "a line" in err


@pytest.mark.parametrize("unit", ["s", "items"])
def test_progress_bar_without_a_total_counts(unit: str, capsys: pytest.CaptureFixture[str]):
    """A live-recorded WebM has no duration: the bar pulses and counts instead of raising."""
    with ProgressBar("replay", None, unit, force=True) as bar:
        bar.update(2.5)
        bar._progress.refresh()  # render now (rich formats the columns here)
    err = capsys.readouterr().err
    assert "replay" in err and "?" not in err
    assert ("2.5 s" if unit == "s" else "2") in err
