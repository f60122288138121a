"""Live sessions: end-to-end audio latency and RTF for 1, 4 and 8 concurrent sessions.

Starts ``python -m livesense serve`` in a subprocess (fake video reasoner), then runs
N real-time clients in this process, each sending 10 ms audio packets paced by the clock plus a
1 fps JPEG frame. Latency = the client sends an input packet -> the binaural samples for it are
received. Prints ONE JSON line.

    python benchmarks/live_sessions.py [--seconds 4] [--sessions 1 4 8]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import subprocess
import sys
import time
from typing import Any

import numpy as np

from livesense.audio.geometry import Pose
from livesense.live.server.client import LiveClient
from livesense.live.server.protocol import StartConfig
from livesense.stats import LatencySummary

CHUNK = 480


def _jpeg(i: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (20 * i % 255, 80, 160)).save(buf, format="JPEG", quality=70)
    return buf.getvalue()


async def _session(url: str, k: int, seconds: float, renderer: str) -> dict[str, Any]:
    rng = np.random.default_rng(k)
    x = (0.05 * rng.standard_normal(int(seconds * 48000))).astype(np.float32)
    sp = Pose((1.5 * np.cos(k), 1.5 * np.sin(k), 0.0))
    start = StartConfig(speaker=sp, video=True, reasoning=True, renderer=renderer)
    async with LiveClient(url, start) as c:
        frames = [_jpeg(i) for i in range(int(seconds) + 1)]
        t0 = time.perf_counter()
        for s in range(0, x.shape[0], CHUNK):
            t = s / 48000
            delay = t0 + t - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if s % 48000 == 0:
                await c.send_jpeg(frames[s // 48000], t)
            await c.send_audio(x[s : s + CHUNK])
        await c.stop(60)
        r = c.result()
    assert r.audio.shape[1] == x.shape[0], "lost samples"
    return {"lat": r.latencies_ms, "stats": r.stats or {}, "renderer": r.ready.get("renderer")}


async def _run(url: str, n: int, seconds: float, renderer: str) -> dict[str, Any]:
    res = await asyncio.gather(*(_session(url, k, seconds, renderer) for k in range(n)))
    lat = np.concatenate([np.asarray(r["lat"]) for r in res])
    rtfs = [r["stats"].get("rtf") or 0.0 for r in res]
    ms = LatencySummary.of(lat)
    assert ms is not None, "no audio came back"
    return {
        "p50_ms": round(ms.p50, 2),
        "p99_ms": round(ms.p99, 2),
        "max_ms": round(ms.max, 2),
        "rtf_per_session": round(float(np.mean(rtfs)), 4),
        "rtf_total": round(float(np.sum(rtfs)), 4),
        "renderer": res[0]["renderer"],
        "degraded": sum(bool(r["stats"].get("degraded")) for r in res),
        "frames_dropped": sum(int(r["stats"].get("frames_dropped") or 0) for r in res),
        "evaluations": sum(int(r["stats"].get("evaluations") or 0) for r in res),
    }


def _start_server(max_sessions: int) -> tuple[subprocess.Popen, str]:
    # The neural engine: the bundled small model (the server's default renderer).
    cmd = [sys.executable, "-m", "livesense", "serve", "--port", "0", "--no-auth",
           "--vlm", "fake", "--max-sessions", str(max_sessions)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"(ws://\S+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(
            f"server did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}"
        )
    return proc, m.group(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 8])
    args = ap.parse_args()
    out: dict[str, Any] = {
        "benchmark": "live_sessions",
        "chunk_ms": 1000 * CHUNK / 48000,
        "seconds_per_session": args.seconds,
        "video_fps_per_session": 1,
        "reasoner": "fake",
        "cpu_count": os.cpu_count(),
    }
    proc, url = _start_server(max(args.sessions))
    try:
        asyncio.run(_run(url, 1, 1.0, "dsp"))  # warm-up (imports, FFT plans), not measured
        for n in args.sessions:
            out[f"dsp_{n}"] = asyncio.run(_run(url, n, args.seconds, "dsp"))
        for n in args.sessions:
            out[f"neural_small_{n}"] = asyncio.run(_run(url, n, args.seconds, "neural"))
        out["neural_note"] = "bundled small model, 42.7 ms blocks, NFE policy, 1 torch thread"
    finally:
        proc.terminate()
        proc.wait(10)
    target = out["chunk_ms"] + 20.0
    if "dsp_4" in out:
        out["target_dsp_4_p99_ms"] = target
        out["meets_target"] = out["dsp_4"]["p99_ms"] <= target
    print(json.dumps(out))


if __name__ == "__main__":
    main()
