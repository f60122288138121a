"""A private PulseAudio daemon with a virtual microphone and headphone, for tests, benchmarks
and trying ``livesense mic`` on a machine without a sound card.

``vmic`` is the monitor of the null sink ``vsink`` (``paplay --device=vsink file.wav`` talks
into it, paced in real time); ``hp`` is a stereo null sink standing in for headphones. Needs
Debian ``pulseaudio pulseaudio-utils libasound2-plugins``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from livesense.errors import LivesenseError

MODULES = (
    "module-native-protocol-unix",
    "module-null-sink sink_name=vsink rate=48000 channels=1 format=s16le",
    "module-remap-source source_name=vmic master=vsink.monitor",
    "module-null-sink sink_name=hp rate=48000 channels=2 format=s16le",
)


def pulse_available() -> bool:
    return all(shutil.which(b) for b in ("pulseaudio", "paplay", "pactl"))


def start_virtual_pulse(root: str | Path, timeout: float = 10.0) -> tuple[subprocess.Popen, dict]:
    """Start the daemon with HOME and XDG_RUNTIME_DIR under ``root``; returns the process and
    the environment for clients (PULSE_SOURCE=vmic, PULSE_SINK=hp). Stop it with
    ``proc.terminate()``."""
    if not pulse_available():
        raise LivesenseError("needs pulseaudio pulseaudio-utils libasound2-plugins (apt-get)")
    root = Path(root)
    run = root / "run"
    run.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "HOME": str(root), "XDG_RUNTIME_DIR": str(run)}
    args = ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disable-shm=yes"]
    for m in MODULES:
        args += ["-L", m]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode == 0:
            return proc, {**env, "PULSE_SOURCE": "vmic", "PULSE_SINK": "hp"}
        time.sleep(0.1)
    proc.kill()
    raise LivesenseError("pulseaudio did not start")
