"""The ``livesense`` command line as a whole: help, lazy command loading, defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from livesense.audio.geometry import DEFAULT_SPEAKER
from livesense.cli import COMMANDS, build_parser
from livesense.errors import LivesenseError
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


@pytest.mark.parametrize(
    ("argv", "needle", "help_of"),
    [
        (["replay"], "the following arguments are required: FILE", "livesense replay"),
        (
            ["replay", "f.mp4", "--chunk-ms", "x"],
            "argument --chunk-ms: not a number",
            "livesense replay",
        ),
        (["replay", "f.mp4", "--bogus"], "unrecognized arguments: --bogus", "livesense replay"),
        (["dance"], "invalid choice: 'dance'", "livesense"),
        (["mic", "--block-ms", "-5"], "argument --block-ms: must be > 0", "livesense mic"),
    ],
)
def test_parser_errors_are_one_error_line(argv, needle, help_of, livesense_process) -> None:
    """No usage dump: one ``error:`` line naming the option, a pointer to --help, exit 2."""
    r = livesense_process(*argv)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == f"error: {r.stderr[7:].strip()}\n" and "usage:" not in r.stderr
    assert needle in r.stderr and r.stderr.rstrip().endswith(f"(see `{help_of} --help`)")


def test_negative_values_are_values_not_options(cli_args) -> None:
    args = cli_args("replay", "f.mp4", speaker_pose="-1,0,0", listener_pose="-0.5,2,0")
    assert (args.speaker_pose, args.listener_pose) == ("-1,0,0", "-0.5,2,0")
    assert cli_args("client", "f.wav", speaker_pose="-1e-1,1,0").speaker_pose == "-1e-1,1,0"


class _Command:
    """A stand-in command module: ``run`` does what the test says."""

    DESCRIPTION = "a test command"

    def __init__(self, run) -> None:
        self.run = run

    @staticmethod
    def add_arguments(p) -> None:
        pass


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (
            LivesenseError("cannot read x.pt: Weights only load failed.\nRe-running with pickle"),
            "error: cannot read x.pt: Weights only load failed.\n",
        ),
        (OSError(28, "No space left on device", "/tmp/o/binaural.wav"),
         "error: /tmp/o/binaural.wav: No space left on device\n"),
    ],
)  # fmt: skip
def test_errors_are_one_line(monkeypatch, capsys, exc, line) -> None:
    """Multi-line messages of the libraries underneath keep their first line only; an OSError
    mid-run (a full disk) is an error line, not a traceback."""
    import livesense.cli as cli

    def run(args):
        raise exc

    monkeypatch.setattr(cli, "load", lambda name: _Command(run))
    assert cli.main(["info"]) == 2
    assert capsys.readouterr().err == line


def test_library_warnings_do_not_leak() -> None:
    """numpy/torch RuntimeWarnings and UserWarnings are not the user's business (``-W`` shows
    them); livesense's own warnings are ``warning:`` lines, each said once."""
    code = (
        "import logging, warnings, numpy as np\n"
        "import livesense.cli as cli\n"
        "class C:\n"
        "    DESCRIPTION = 'x'\n"
        "    add_arguments = staticmethod(lambda p: None)\n"
        "    @staticmethod\n"
        "    def run(args):\n"
        "        np.log(np.zeros(1))\n"
        "        warnings.warn('torch.load advice')\n"
        "        log = logging.getLogger('livesense.media.audio')\n"
        "        for _ in range(2):\n"
        "            log.warning('%s: cut', 'f.wav', extra={'once': ('truncated', 'f.wav')})\n"
        "        return 0\n"
        "cli.load = lambda name: C\n"
        "raise SystemExit(cli.main(['info']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0
    assert r.stderr == "warning: f.wav: cut\n"
    r = subprocess.run(
        [sys.executable, "-W", "default", "-c", code], capture_output=True, text=True
    )
    assert "RuntimeWarning" in r.stderr and "torch.load advice" in r.stderr
