"""``livesense eval-binaural`` on tiny hand-made sequences: JSON, DSP-only, the bundled model
with a picture, one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from livesense.audio.metrics import METRIC_KEYS
from livesense.errors import ConfigError, LivesenseError


def test_json_has_both_renderers_and_all_metrics(
    eval_data: tuple[Path, Path], run_command, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data, ckpt = eval_data
    out = tmp_path / "r.json"
    assert run_command("eval-binaural", data=data, checkpoint=ckpt, nfe=1, json=out) == 0
    doc = json.loads(out.read_text())
    assert doc["sequences"] == 2 and doc["seconds"] == pytest.approx(1.0)
    for key in ("neural", "dsp"):
        assert set(doc[key]) == set(METRIC_KEYS)
        assert all(math.isfinite(v) for v in doc[key].values())
    assert doc["neural"] != doc["dsp"]
    printed = capsys.readouterr().out
    assert "mrstft" in printed and "neural" in printed


def test_dsp_only_and_max_seconds(
    eval_data: tuple[Path, Path], run_command, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data, _ = eval_data
    out = tmp_path / "r.json"
    assert run_command("eval-binaural", data=data, json=out, max_seconds=0.25, dsp_only=True) == 0
    doc = json.loads(out.read_text())
    assert doc["neural"] is None and set(doc["dsp"]) == set(METRIC_KEYS)
    assert doc["sequences"] == 2 and doc["seconds"] == pytest.approx(0.5)
    assert "neural (no checkpoint)" in capsys.readouterr().out


def test_default_is_the_bundled_model_with_a_picture(
    eval_data: tuple[Path, Path], run_command, tmp_path: Path
) -> None:
    data, _ = eval_data
    out, png = tmp_path / "r.json", tmp_path / "fig" / "spec.png"
    args = dict(data=data, json=out, max_seconds=0.25, plot=png, plot_sequence="seq_1")
    assert run_command("eval-binaural", **args) == 0
    doc = json.loads(out.read_text())
    assert doc["checkpoint"].endswith("binauralflow_small") and doc["nfe"] == 2
    assert set(doc["neural"]) == set(METRIC_KEYS) and doc["temperature"] == 0.25
    data_png = png.read_bytes()
    assert data_png[:8] == b"\x89PNG\r\n\x1a\n" and len(data_png) > 20_000
    with pytest.raises(ConfigError, match="--plot-sequence 'nope'"):
        run_command("eval-binaural", data=data, plot=png, plot_sequence="nope", dsp_only=True)


def test_bad_inputs_give_clear_errors(
    eval_data: tuple[Path, Path], run_command, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _ = eval_data
    with pytest.raises(LivesenseError, match="folder not found"):
        run_command("eval-binaural", data=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LivesenseError, match="holds no sequences"):
        run_command("eval-binaural", data=tmp_path / "empty")
    with pytest.raises(LivesenseError, match="--checkpoint .*not found"):
        run_command("eval-binaural", data=data, checkpoint=tmp_path / "missing")
    with pytest.raises(SystemExit) as e:  # the parser names the option
        run_command("eval-binaural", data=data, nfe=0)
    assert e.value.code == 2 and "argument --nfe: must be > 0" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--dsp-only and --nfe exclude each other"):
        run_command("eval-binaural", data=data, nfe=2, dsp_only=True)
    with pytest.raises(ConfigError, match="exclude each other"):
        run_command("eval-binaural", data=data, checkpoint=tmp_path / "x", dsp_only=True)
