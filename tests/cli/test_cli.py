"""The ``livesense`` command line as a whole: help, lazy command loading, defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from livesense.audio.geometry import DEFAULT_SPEAKER
from livesense.cli import COMMANDS, build_parser
from livesense.live.mic import MicConfig
from livesense.live.replay import ReplayConfig
from livesense.live.server.client import ClientOptions
from livesense.live.server.config import ServerConfig
from livesense.models.binaural.training import TrainConfig
from livesense.video.reasoner import ReasonerConfig


def test_help_lists_commands(livesense_process):
    r = livesense_process("--help")
    assert r.returncode == 0
    for word in ("info", "replay", "examples"):
        assert word in r.stdout
    r = livesense_process("replay", "--help")
    assert r.returncode == 0 and "--fast" in r.stdout and "stats.json" in r.stdout


def test_top_level_help_loads_no_command_module(sample_clip) -> None:
    """``livesense --help`` and ``livesense info`` never import torch (only the chosen
    command's module is loaded)."""
    code = (
        "import sys\n"
        "from livesense.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported for --help'\n"
        "assert not any(m.startswith('livesense.cli.') for m in sys.modules)\n"
        "main(['info', sys.argv[1]])\n"
        "assert 'torch' not in sys.modules, 'torch imported for info'\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(sample_clip)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert "audio" in r.stdout


def test_defaults_are_read_from_the_configs(cli_args, capsys: pytest.CaptureFixture[str]) -> None:
    """One home per default: the CLI shows what the library's dataclasses say."""
    serve = cli_args("serve")
    cfg = ServerConfig()
    assert (serve.renderer, serve.port, serve.max_sessions, serve.host) == (
        cfg.renderer, cfg.port, cfg.max_sessions, cfg.host,
    )  # fmt: skip
    assert serve.idle_timeout == cfg.idle_timeout_s and serve.max_session == cfg.max_session_s
    client = cli_args("client", "f.wav")
    opts = ClientOptions()
    assert (client.renderer, client.format, client.fps) == (opts.renderer, opts.format, opts.fps)
    assert client.url.endswith(f":{cfg.port}/v1/session")
    assert cli_args("mic").block_ms == 1000 * MicConfig().block / MicConfig().sample_rate
    replay = cli_args("replay", "f.mp4")
    assert replay.sample_rate == ReplayConfig().sample_rate
    assert replay.segment_seconds == ReasonerConfig().segment_seconds
    train = cli_args("train-binaural", data="d", out="o", steps=1)
    t = TrainConfig(data=Path("d"), out=Path("o"), steps=1)
    assert (train.batch, train.lr, train.segment_seconds) == (t.batch, t.lr, t.segment_seconds)
    with pytest.raises(SystemExit):
        build_parser("replay").parse_args(["replay", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert f"default {','.join(f'{v:g}' for v in DEFAULT_SPEAKER.position)}" in shown


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help_with_a_description(command: str) -> None:
    parser = build_parser(command)
    with pytest.raises(SystemExit) as e:
        parser.parse_args([command, "--help"])
    assert e.value.code == 0


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from livesense.cli import main

    with pytest.raises(SystemExit) as e:
        main(["dance"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err
