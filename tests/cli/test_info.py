"""``livesense info``: streams, durations and rates, as text and JSON."""

from __future__ import annotations

import json

from livesense.cli import main


def test_info_on_sample(capsys, sample_clip):
    assert main(["info", str(sample_clip)]) == 0
    out = capsys.readouterr().out
    assert "audio" in out and "video" in out and "48000" in out
    assert main(["info", "--json", str(sample_clip)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert 9.0 < float(data["duration"]) < 11.5
