"""Soak: N real-time sessions for M minutes through an in-process server; lost samples, abnormal
closes, latency and the memory trend. Prints ONE JSON line.

Each session streams 10 ms packets of quiet noise paced by the clock (the DSP renderer unless
``--renderer neural``), then ``stop``; the clients keep counts, not audio, so the process's RSS
is the server's. Latency = an input packet is sent -> the binaural samples for its last sample
are received. RSS is sampled every few seconds after a warm-up; ``rss_slope_mb_per_min`` is the
least-squares slope. ``crashes`` counts tracebacks the server logged.

    python benchmarks/soak.py [--sessions 8] [--minutes 5] [--renderer dsp] [--short]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from livesense.audio.geometry import Pose
from livesense.live.engines import Engines, NeuralEngine
from livesense.live.server.app import ServerThread
from livesense.live.server.config import ServerConfig
from livesense.live.server.protocol import Kind, StartConfig, encode_audio, pack_frame, unpack_frame
from livesense.stats import LatencySummary

CHUNK = 480
RATE = 48000
TOKEN = "soak"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


class _Tracebacks(logging.Handler):
    """Counts the server's log records that carry a traceback (or are errors)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.first: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.count += 1
            self.first = self.first or self.format(record)


@dataclass
class _Session:
    """One session's counters; ``lat`` is written in place (preallocated: no growth)."""

    lat: np.ndarray
    n_lat: int = 0
    sent: int = 0
    received: int = 0
    errors: int = 0
    done: dict[str, Any] | None = None
    close_code: int | None = None
    close_reason: str = ""


async def _read(ws: Any, s: _Session, ends: deque[tuple[int, float]]) -> None:
    try:
        async for m in ws:
            if isinstance(m, bytes):
                now = time.perf_counter()
                f = unpack_frame(m)
                if f.kind != Kind.AUDIO_OUT:
                    continue
                s.received += len(f.payload) // 4  # s16le stereo
                while ends and ends[0][0] <= s.received:
                    _, t = ends.popleft()
                    if s.n_lat < s.lat.size:
                        s.lat[s.n_lat] = 1000.0 * (now - t)
                        s.n_lat += 1
                continue
            msg = json.loads(m)
            if msg.get("type") == "error":
                s.errors += 1
            elif msg.get("type") == "done":
                s.done = msg
    except ConnectionClosed:
        pass
    s.close_code, s.close_reason = ws.close_code, ws.close_reason or ""


async def _session(
    url: str, k: int, seconds: float, renderer: str, seed: int, opening: asyncio.Lock
) -> _Session:
    rng = np.random.default_rng(seed + k)
    noise = (0.05 * rng.standard_normal(RATE)).astype(np.float32)  # 1 s, looped
    packets = [encode_audio(noise[i : i + CHUNK][None], "s16le") for i in range(0, RATE, CHUNK)]
    n = int(seconds * RATE / CHUNK)
    s = _Session(lat=np.full(n, np.nan))  # written now: its pages are resident from the start
    start = StartConfig(speaker=Pose((1.5 * np.cos(k), 1.5 * np.sin(k), 0.0)), renderer=renderer)
    async with opening:  # one handshake at a time: the server caps unstarted connections per IP
        ws = await connect(url, compression=None, max_size=None)
        await ws.send(json.dumps(start.to_json()))
        ready = json.loads(await ws.recv())
    if ready.get("type") != "ready":
        raise RuntimeError(f"session {k} was not started: {ready}")
    async with ws:
        ends: deque[tuple[int, float]] = deque()
        reader = asyncio.create_task(_read(ws, s, ends))
        t0 = time.perf_counter()
        try:
            for i in range(n):
                delay = t0 + i * CHUNK / RATE - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                frame = pack_frame(Kind.AUDIO_IN, i, s.sent, packets[i % len(packets)])
                s.sent += CHUNK
                ends.append((s.sent, time.perf_counter()))
                await ws.send(frame)
            await ws.send(json.dumps({"type": "stop"}))
        except ConnectionClosed:
            pass
        await asyncio.wait_for(reader, 60)
    return s


async def _rss_sampler(every: float, warmup: float, out: list[tuple[float, float]]) -> None:
    await asyncio.sleep(warmup)
    t0 = time.monotonic()
    while True:
        out.append((time.monotonic() - t0, rss_mb()))
        await asyncio.sleep(every)


async def _run(url: str, args: argparse.Namespace) -> tuple[list[_Session], list]:
    seconds = 60.0 * args.minutes
    samples: list[tuple[float, float]] = []
    warmup = min(10.0, 0.2 * seconds)
    every = min(args.rss_every, max(0.5, seconds / 20))
    sampler = asyncio.create_task(_rss_sampler(every, warmup, samples))
    opening = asyncio.Lock()
    jobs = (
        _session(url, k, seconds, args.renderer, args.seed, opening) for k in range(args.sessions)
    )
    res = await asyncio.gather(*jobs)
    sampler.cancel()
    samples.append((samples[-1][0] + every if samples else 0.0, rss_mb()))
    return list(res), samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--renderer", choices=("dsp", "neural"), default="dsp")
    ap.add_argument("--short", action="store_true", help="a 15 s check (same output)")
    ap.add_argument("--rss-every", type=float, default=5.0, metavar="S")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.short:
        args.minutes = 0.25
    if args.renderer == "neural":
        torch.set_num_threads(1)  # as ``livesense serve``: several audio workers
    tracebacks = _Tracebacks()
    for name in ("livesense", "websockets.server"):
        logging.getLogger(name).addHandler(tracebacks)
    cfg = ServerConfig(
        port=0, token=TOKEN, renderer=args.renderer, max_sessions=max(8, args.sessions)
    )
    rss_before = rss_mb()
    with ServerThread(cfg, Engines({"neural": NeuralEngine})) as st:
        t0 = time.perf_counter()
        res, rss = asyncio.run(_run(st.url, args))
        wall = time.perf_counter() - t0
        left = len(st.server.sessions)
    lat = LatencySummary.of(np.concatenate([s.lat[: s.n_lat] for s in res]))
    t_min = np.array([t for t, _ in rss]) / 60.0
    mb = np.array([m for _, m in rss])
    slope = float(np.polyfit(t_min, mb, 1)[0]) if len(rss) >= 3 else None
    sent, received = sum(s.sent for s in res), sum(s.received for s in res)
    abnormal = [s for s in res if s.close_code != 1000 or s.done is None]
    mismatched = [
        s for s in res if s.done and not s.sent == s.done["samples_in"] == s.done["samples_out"]
    ]
    out = {
        "benchmark": "soak",
        "sessions": args.sessions,
        "minutes": args.minutes,
        "renderer": args.renderer,
        "chunk_ms": 1000 * CHUNK / RATE,
        "wall_s": round(wall, 1),
        "samples_sent": sent,
        "samples_received": received,
        "lost_samples": sent - received,
        "sessions_with_mismatched_counts": len(mismatched),
        "crashes": tracebacks.count,
        "abnormal_closes": len(abnormal),
        "close_codes": sorted({s.close_code for s in abnormal if s.close_code is not None}),
        "error_events": sum(s.errors for s in res),
        "sessions_left_open": left,
        "p50_ms": round(lat.p50, 2) if lat else None,
        "p99_ms": round(lat.p99, 2) if lat else None,
        "max_ms": round(lat.max, 2) if lat else None,
        "rss_before_mb": round(rss_before, 1),
        "rss_start_mb": round(float(mb[0]), 1) if len(mb) else None,
        "rss_end_mb": round(float(mb[-1]), 1) if len(mb) else None,
        "rss_slope_mb_per_min": None if slope is None else round(slope, 3),
        "rss_samples": len(rss),
        "cpu_count": os.cpu_count(),
    }
    if tracebacks.first:
        out["first_traceback"] = tracebacks.first.splitlines()[-1][:200]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
