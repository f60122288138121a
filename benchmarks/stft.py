"""Streaming STFT -> ISTFT roundtrip in 10 ms chunks vs offline torch.stft + torch.istft.

Prints one JSON line. Both sides process the same 60 s of mono 48 kHz float32 noise with the
default StftConfig (n_fft 512, hop 128); best of 3 runs each, default torch threads (reported).
``per_chunk_us`` is the distribution of single ``step`` times over the best streaming run.
"""

from __future__ import annotations

import json
import platform
import time

import numpy as np
import torch

from livesense.audio.stft import StftConfig, stft_roundtrip
from livesense.stats import LatencySummary

SECONDS = 60.0
CHUNK_MS = 10.0
RUNS = 3


def run_stream(
    x: torch.Tensor, chunk: int, cfg: StftConfig
) -> tuple[float, np.ndarray, torch.Tensor]:
    proc = stft_roundtrip(cfg)
    n_chunks = -(-x.shape[-1] // chunk)
    step_ns = np.empty(n_chunks, dtype=np.int64)
    outs = []
    t0 = time.perf_counter()
    for i in range(n_chunks):
        c = x[..., i * chunk : (i + 1) * chunk]
        s = time.perf_counter_ns()
        y = proc.step(c)
        step_ns[i] = time.perf_counter_ns() - s
        if y is not None:
            outs.append(y)
    tail = proc.flush()
    elapsed = time.perf_counter() - t0
    if tail is not None:
        outs.append(tail)
    return elapsed, step_ns, torch.cat(outs, dim=-1)


def run_offline(x: torch.Tensor, cfg: StftConfig) -> tuple[float, torch.Tensor]:
    window = cfg.window()
    t0 = time.perf_counter()
    spec = torch.stft(x, cfg.n_fft, cfg.hop, window=window, center=True, return_complex=True)
    y = torch.istft(spec, cfg.n_fft, cfg.hop, window=window, center=True, length=x.shape[-1])
    return time.perf_counter() - t0, y


def main() -> None:
    cfg = StftConfig()
    n = int(SECONDS * cfg.sample_rate)
    chunk = int(CHUNK_MS * cfg.sample_rate / 1000)
    x = torch.randn(n, generator=torch.Generator().manual_seed(0))

    run_stream(x[: 10 * chunk], chunk, cfg)  # warm-up
    run_offline(x[: 10 * chunk], cfg)
    stream = [run_stream(x, chunk, cfg) for _ in range(RUNS)]
    offline = [run_offline(x, cfg) for _ in range(RUNS)]
    best = min(stream, key=lambda r: r[0])
    stream_s, step_ns, y_stream = best
    offline_s = min(r[0] for r in offline)
    y_offline = offline[0][1]

    print(
        json.dumps(
            {
                "name": "stft",
                "n_fft": cfg.n_fft,
                "hop": cfg.hop,
                "sample_rate": cfg.sample_rate,
                "seconds_audio": SECONDS,
                "chunk_ms": CHUNK_MS,
                "chunk_samples": chunk,
                "runs": RUNS,
                "torch_threads": torch.get_num_threads(),
                "stream_s": round(stream_s, 4),
                "offline_s": round(offline_s, 4),
                "stream_over_offline": round(stream_s / offline_s, 2),
                "x_realtime_stream": round(SECONDS / stream_s, 1),
                "x_realtime_offline": round(SECONDS / offline_s, 1),
                "per_chunk_us": LatencySummary.of(step_ns, 1e-3).to_json(1),
                "latency_samples": cfg.latency,
                "latency_ms": cfg.latency_s * 1e3,
                "stream_max_abs_err": float((y_stream - x).abs().max()),
                "offline_max_abs_err": float((y_offline - x).abs().max()),
                "torch": torch.__version__,
                "machine": platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
