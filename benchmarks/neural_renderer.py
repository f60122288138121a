"""Neural binaural renderer (BinauralFlow) real-time factors on CPU. Prints one JSON line.

For the ``small`` preset (random weights: cost does not depend on their values) it streams
``SECONDS`` of a speech-like test signal in live-sized chunks (``CHUNK`` samples = 42.7 ms at
48 kHz) and reports, per NFE, the real-time factor (compute time / audio time, best of
``RUNS``), the streaming/offline time ratio at the default NFE, the algorithmic latency and
the parameter count (``rtf_1thread``: the same with one thread); ``paper_rtf_cpu`` is the
``paper`` preset's offline RTF at NFE 1 on a short clip, to compare with a GPU later.
``torch.set_num_threads(--threads)`` (default 2).

Usage: ``python benchmarks/neural_renderer.py [--threads N] [--seconds S]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from livesense.models.binaural.config import BinauralFlowConfig
from livesense.models.binaural.renderer import NeuralBinauralRenderer

CHUNK = 2048
NFES = (1, 2, 4, 6)
RUNS = 2


def test_signal(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """Amplitude-modulated harmonic tone + noise, float32 (n,): spectrally busy, like speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    x = sum(np.sin(k * phase) / k for k in range(1, 20))
    x *= 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    x = 0.1 * x + 0.01 * rng.standard_normal(t.shape[0])
    return x.astype(np.float32)


def stream_time(r: NeuralBinauralRenderer, x: np.ndarray, chunk: int) -> float:
    r.reset()
    t0 = time.perf_counter()
    for i in range(0, x.shape[0], chunk):
        r.step(x[i : i + chunk])
    r.flush()
    return time.perf_counter() - t0


def offline_time(r: NeuralBinauralRenderer, x: np.ndarray) -> float:
    t0 = time.perf_counter()
    r.process(x)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = BinauralFlowConfig.preset("small")
    x = test_signal(args.seconds, cfg.sample_rate)
    audio_s = x.shape[0] / cfg.sample_rate
    r = NeuralBinauralRenderer.random("small", seed=0, max_frames=CHUNK // cfg.hop)
    r.process(x[: CHUNK * 4])  # warm-up (allocations, oneDNN kernels)

    def rtf_map() -> dict[str, float]:
        out = {}
        for nfe in NFES:
            r.set_nfe(nfe)
            best = min(stream_time(r, x, CHUNK) for _ in range(RUNS))
            out[str(nfe)] = round(best / audio_s, 4)
        return out

    rtf = rtf_map()
    r.set_nfe(cfg.nfe)
    stream = min(stream_time(r, x, CHUNK) for _ in range(RUNS))
    offline = min(offline_time(r, x) for _ in range(RUNS))
    # One intra-op thread is far more robust when other processes share the 2 cores (OpenMP
    # spin-waiting with 2 threads on a busy machine can cost several times the compute).
    torch.set_num_threads(1)
    rtf_1 = rtf_map()
    torch.set_num_threads(args.threads)

    paper = NeuralBinauralRenderer.random("paper", seed=0, nfe=1)
    xp = x[: round(0.25 * cfg.sample_rate)]
    paper.process(xp[:CHUNK])
    paper_rtf = offline_time(paper, xp) / (xp.shape[0] / cfg.sample_rate)

    print(
        json.dumps(
            {
                "preset": cfg.name,
                "chunk": CHUNK,
                "chunk_ms": round(1000 * CHUNK / cfg.sample_rate, 2),
                "latency_ms": round(cfg.latency_ms, 2),
                "max_delay_ms": round(cfg.max_delay_ms, 2),
                "params": r.model.num_parameters(),
                "default_nfe": cfg.nfe,
                "rtf": rtf,
                "rtf_1thread": rtf_1,
                "stream_over_offline": round(stream / offline, 3),
                "paper_params": paper.model.num_parameters(),
                "paper_rtf_cpu": round(paper_rtf, 3),
                "audio_s": round(audio_s, 2),
                "threads": torch.get_num_threads(),
                "cpus": os.cpu_count(),
                "load_avg_1m": round(os.getloadavg()[0], 2),
                "torch": torch.__version__,
                "machine": platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
