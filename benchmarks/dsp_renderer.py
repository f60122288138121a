"""DSP binaural renderer: 60 s of an orbiting source streamed in 10 ms chunks vs offline.

Prints one JSON line. Both sides render the same 60 s of mono 48 kHz float32 noise for a source
orbiting the listener once per 4 s (the HRIR direction changes every few blocks, so crossfades
are exercised); best of 3 runs each. Single thread: the renderer is numpy (pocketfft is
single-threaded); BLAS threads are pinned to 1 through the environment before numpy loads.
``rtf`` = processing time / audio duration; ``chunk_ms_p50/p99`` are per-``step`` times of the
best streaming run. ``latency_ms`` is the renderer's algorithmic latency (0: every step returns
the output for every sample it consumed).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from livesense.audio.dsp_renderer import DspBinauralRenderer  # noqa: E402
from livesense.audio.geometry import Pose  # noqa: E402
from livesense.audio.trajectory import OrbitTrajectory  # noqa: E402
from livesense.stats import LatencySummary  # noqa: E402

SECONDS = 60.0
CHUNK_MS = 10.0
RUNS = 3


def make() -> DspBinauralRenderer:
    return DspBinauralRenderer(OrbitTrajectory(radius=1.5, period_s=4.0, height=0.3), Pose())


def run_stream(
    proc: DspBinauralRenderer, x: np.ndarray, chunk: int
) -> tuple[float, np.ndarray, np.ndarray]:
    proc.reset()
    n_chunks = -(-x.shape[-1] // chunk)
    step_ns = np.empty(n_chunks, dtype=np.int64)
    out = np.empty((2, x.shape[-1]), np.float32)
    t0 = time.perf_counter()
    for i in range(n_chunks):
        s = time.perf_counter_ns()
        y = proc.step(x[i * chunk : (i + 1) * chunk])
        step_ns[i] = time.perf_counter_ns() - s
        out[:, i * chunk : i * chunk + y.shape[-1]] = y
    return time.perf_counter() - t0, step_ns, out


def run_offline(proc: DspBinauralRenderer, x: np.ndarray) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    y = proc.process(x)
    return time.perf_counter() - t0, y


def main() -> None:
    proc = make()
    fs = proc.config.sample_rate
    chunk = int(CHUNK_MS * fs / 1000)
    x = np.random.default_rng(0).standard_normal(int(SECONDS * fs)).astype(np.float32)

    run_stream(proc, x[: 50 * chunk], chunk)  # warm-up
    stream = [run_stream(proc, x, chunk) for _ in range(RUNS)]
    offline = [run_offline(proc, x) for _ in range(RUNS)]
    stream_s, step_ns, y_stream = min(stream, key=lambda r: r[0])
    offline_s, y_offline = min(offline, key=lambda r: r[0])

    print(
        json.dumps(
            {
                "name": "dsp_renderer",
                "rtf_stream": round(stream_s / SECONDS, 5),
                "rtf_offline": round(offline_s / SECONDS, 5),
                "stream_over_offline": round(stream_s / offline_s, 2),
                "chunk_ms": CHUNK_MS,
                "latency_ms": proc.latency / fs * 1e3,
                "block": proc.block,
                **{
                    f"chunk_ms_{k}": v
                    for k, v in LatencySummary.of(step_ns, 1e-6).to_json(4).items()
                },
                "seconds_audio": SECONDS,
                "sample_rate": fs,
                "hrir_taps": proc.hrirs.n_taps,
                "runs": RUNS,
                "stream_vs_offline_max_abs_diff": float(np.max(np.abs(y_stream - y_offline))),
                "numpy": np.__version__,
                "machine": platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
