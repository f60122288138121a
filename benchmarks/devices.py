"""Mic -> headphone latency and underruns through PulseAudio virtual devices (one JSON line).

Starts a private PulseAudio daemon with a virtual microphone (a null sink's monitor, fed by
paplay) and a virtual headphone (another null sink), runs `livesense mic` for SECONDS per
renderer, and reports PortAudio-timed latency (ADC time of a sample -> DAC time of its
rendering) and the underrun / drop counters. Needs pulseaudio, pulseaudio-utils,
libasound2-plugins and libportaudio2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from livesense.live.virtual_audio import pulse_available, start_virtual_pulse

SECONDS = float(os.environ.get("LIVESENSE_BENCH_SECONDS", "30"))
SR = 48000


def talk(path: Path, seconds: float) -> None:
    from livesense.media.wav import write_wav

    t = np.arange(int(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t))
    write_wav(path, x[None].astype(np.float32), SR)


def run_mic(root: Path, env: dict, renderer_args: list[str]) -> dict:
    rec = root / f"rec-{len(list(root.glob('rec-*')))}"
    player = subprocess.Popen(["paplay", "--device=vsink", str(root / "talk.wav")], env=env)
    try:
        r = subprocess.run(
            [sys.executable, "-m", "livesense", "mic", "--input", "pulse", "--output", "pulse",
             "--duration", str(SECONDS), "--record", str(rec), "-q", *renderer_args],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=SECONDS * 3 + 60,
        )  # fmt: skip
    finally:
        player.kill()
    if r.returncode != 0:
        return {"error": r.stderr.strip()[-300:]}
    s = json.loads((rec / "stats.json").read_text())
    return {
        "latency_ms_p50": round(s["measured_latency_ms_p50"], 1),
        "latency_ms_p99": round(s["measured_latency_ms_p99"], 1),
        "latency_ms_estimate": round(s["latency_ms"], 1),
        "output_underruns": s["output_underruns"],
        "output_underrun_samples": s["output_underrun_samples"],
        "input_dropped_samples": s["input_overrun_samples"],
        "output_skipped_samples": s["output_skipped_samples"],
        "rendered_s": s["rendered_samples"] / SR,
        "rtf": round(s["rtf"], 4),
    }


def main() -> None:
    out: dict = {"name": "devices", "seconds": SECONDS, "sample_rate": SR, "block_ms": 10}
    if not pulse_available():
        out["skipped"] = "needs pulseaudio pulseaudio-utils libasound2-plugins"
        print(json.dumps(out))
        return
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        talk(root / "talk.wav", SECONDS + 10)
        proc, env = start_virtual_pulse(root)
        try:
            out["dsp"] = run_mic(root, env, ["--renderer", "dsp", "--orbit", "4"])
            # The bundled small model (mic's default stays DSP: lower latency).
            neural = run_mic(root, env, ["--renderer", "neural", "--orbit", "4"])
            out["neural_small"] = neural
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
