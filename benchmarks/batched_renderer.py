"""Batched render engine: the cost of one tick (every active slot's next block in one call) by
device, preset, NFE, dtype, slot count and (on CUDA) eager vs CUDA graph. Prints ONE JSON line.

Models are random-initialised at their real sizes (``random_model``: cost does not depend on
the weights; nothing is downloaded). Each measurement renders one 16-frame block (2,048
samples, 42.67 ms at 48 kHz) for ``slots`` streams at once:

- CPU: :meth:`SlotKernel.tick_host` (what the engine's CPU path calls) timed with
  ``perf_counter``; ``torch.set_num_threads(--threads)`` (default 2).
- CUDA: a :class:`RenderEngine` of ``capacity = slots`` per measurement, its own tick path
  (``RenderEngine._run_cuda``: pinned host -> device copy, the captured graph or the eager
  kernel, device -> host copy, sync) on its high-priority stream, timed with CUDA events
  (``tick_ms``); ``compute_ms`` is the tick alone on a device-resident batch (graph replay or
  eager kernel), ``gather_ms`` the engine's host-side packing of the batch (numpy);
  ``max_realtime_slots_compute`` is the real-time count by ``compute_ms``.

Definitions: ``load = tick_ms / block_ms`` (> 1: the tick does not keep up);
``rtf_per_slot = tick_ms / slots / block_ms``; a slot count is real-time when
``tick_ms <= 0.7 * block_ms`` (30% headroom) and ``max_realtime_slots`` is the largest measured
real-time count; ``separate_ms = slots * tick_ms(slots=1)`` of the same configuration (what
unbatched per-session calls cost) and ``speedup = separate_ms / tick_ms``;
``tick8_over_tick1 = tick_ms(8) / tick_ms(1)``. ``tick_ms`` is the median of the timed ticks.

Plans: NFE 2 and 6, slots 1, 4, 8, 16, 64, 256 (on CUDA also 128, the engine's batch bucket
of 100 sessions); paper on the CPU only NFE 2 at slots 1 and 4 with 2 timed ticks (one paper
block takes ~0.6 s there); on CUDA float32 and bfloat16, eager and graph, and while
the largest count is still real-time it goes on with 512, 1,024, 2,048, 4,096, 5,120 and 8,192
slots. A config stops growing at a CUDA out-of-memory error (recorded) or when a tick exceeds
--max-tick-ms; nothing starts after --max-seconds. What is not measured is listed with why.

    python benchmarks/batched_renderer.py [--quick] [--device cpu|cuda|cuda:N|all]
        [--presets small paper] [--slots 1 4 8] [--nfe 2 6] [--dtypes float32 bfloat16]
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from livesense.errors import ConfigError
from livesense.models.binaural.checkpoint import random_model
from livesense.models.binaural.config import PRESETS, BinauralFlowConfig
from livesense.models.binaural.engine import RenderEngine
from livesense.models.binaural.renderer import LIVE_BLOCK_FRAMES
from livesense.models.binaural.slots import SlotKernel
from livesense.models.binaural.unet import BinauralFlowUNet
from livesense.models.devices import cuda_timer, parse_device, parse_dtype

SLOTS = (1, 4, 8, 16, 64, 256)
CUDA_SLOTS = (1, 4, 8, 16, 64, 128, 256)  # 128: the engine's batch bucket of 100 sessions
GROW = (512, 1024, 2048, 4096, 5120, 8192)  # CUDA: tried while the previous count fits
NFES = (2, 6)
HEADROOM = 0.3
MODES = {False: ("eager",), True: ("eager", "graph")}  # by "on CUDA"
CPU_PAPER_SLOTS, CPU_PAPER_NFES, CPU_PAPER_TICKS = (1, 4), (2,), 2
TARGETS = {
    "cpu_small_tick8_over_tick1": "<= 3",
    "gpu_paper_nfe2_max_realtime_slots": ">= 100",
    "gpu_small_nfe2_max_realtime_slots": ">= 5000",
    "gpu_paper_nfe6_one_session_rtf": "<= 0.05",
}


def block_ms_of(cfg: BinauralFlowConfig) -> float:
    """One engine block (LIVE_BLOCK_FRAMES hops) in milliseconds."""
    return 1e3 * LIVE_BLOCK_FRAMES * cfg.hop / cfg.sample_rate


def log(msg: str) -> None:
    print(f"[batched_renderer] {msg}", file=sys.stderr, flush=True)


def packed_host(kernel: SlotKernel, slots: int) -> np.ndarray:
    """(slots, width) float64 packed rows for state rows 0..slots-1: noise-like audio, a
    speaker 1.5 m ahead, frame 0, seed = row (like the engine tests' ``_packed``)."""
    lay = kernel.layout
    host = np.zeros((slots, lay.width))
    poses = np.tile([1.5, 0.5, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1], (kernel.frames, 1))
    dsp = np.tile(poses[0], (lay.dsp_blocks + 1, 1))
    rng = np.random.default_rng(0)
    for i in range(slots):
        audio = rng.standard_normal(lay.block) * 0.1
        lay.pack(host[i], audio, poses, dsp, i, 0, i, lay.block)
    return host


def gather_ms(host: np.ndarray) -> float:
    """The engine's host-side batch assembly (``RenderEngine._tick``: one row copy per slot)."""
    rows, t0 = list(host), time.perf_counter()
    out = np.empty_like(host)
    for i, r in enumerate(rows):
        out[i] = r
    return (time.perf_counter() - t0) * 1e3


def on_device(model: BinauralFlowUNet, dev: torch.device, dtype: torch.dtype) -> BinauralFlowUNet:
    """The model as the engine holds it: trunk in ``dtype``, conditioning float32."""
    m = copy.deepcopy(model).to(device=dev, dtype=dtype).eval()
    m.cond.float()
    return m


def realtime(ms: float, block_ms: float) -> bool:
    return ms <= (1 - HEADROOM) * block_ms


def summarise(res: dict[str, Any], block_ms: float) -> dict[str, Any]:
    """Add load, RTF per slot and the separate-calls baseline to each row; the config's
    ``max_realtime_slots`` (and what it is) and ``tick8_over_tick1``."""
    rows = res["rows"]
    by = {r["slots"]: r["tick_ms"] for r in rows}
    for r in rows:
        n, ms = r["slots"], r["tick_ms"]
        r["load"], r["rtf_per_slot"] = round(ms / block_ms, 4), round(ms / n / block_ms, 5)
        r["realtime"] = realtime(ms, block_ms)
        if 1 in by:
            r["separate_ms"], r["speedup"] = round(n * by[1], 2), round(n * by[1] / ms, 2)
    fit = [n for n, ms in by.items() if realtime(ms, block_ms)]
    res["max_realtime_slots"] = best = max(fit, default=0)
    res["max_realtime_is"] = (
        "not measured" if not rows
        else "none of the measured counts" if not best
        else "below the next measured count" if any(n > best for n in by)
        else "a lower bound (out of memory above)" if "oom_at_slots" in res
        else "a lower bound (the largest count measured)"
    )  # fmt: skip
    res["tick8_over_tick1"] = round(by[8] / by[1], 3) if 8 in by and 1 in by else None
    if rows and "compute_ms" in rows[0]:
        fit = [r["slots"] for r in rows if realtime(r["compute_ms"], block_ms)]
        res["max_realtime_slots_compute"] = max(fit, default=0)
    return res


def sweep(
    measure: Callable[[int], dict[str, Any]],
    slots: list[int],
    grow: list[int],
    args: argparse.Namespace,
    what: str,
    block_ms: float,
) -> dict[str, Any]:
    """Measure each count of ``slots`` (then of ``grow`` while the last one was real-time);
    stop at the deadline, a CUDA out-of-memory error or a tick over --max-tick-ms."""
    res: dict[str, Any] = {"rows": [], "skipped": []}
    rows, stop = res["rows"], ""
    todo = [(n, False) for n in slots] + [(n, True) for n in grow if n > max(slots)]
    for n, growing in todo:
        if growing and (stop or not rows or not realtime(rows[-1]["tick_ms"], block_ms)):
            break
        if not stop and time.monotonic() > args.deadline:
            stop = f"--max-seconds {args.max_seconds:g} reached"
        if stop:
            res["skipped"].append({"slots": n, "reason": stop})
            continue
        row = measure(n)
        if "oom" in row:
            res["oom_at_slots"], stop = n, f"CUDA out of memory at {n} slots"
            res["skipped"].append({"slots": n, "reason": stop})
            log(f"{what} slots={n}: out of memory ({row['oom']})")
            continue
        rows.append(row)
        extra = f", compute {row['compute_ms']:.2f} ms" if "compute_ms" in row else ""
        log(f"{what} slots={n}: tick {row['tick_ms']:.2f} ms{extra} ({row['mode_used']})")
        if row["tick_ms"] > args.max_tick_ms:
            stop = f"a tick of {n} slots took {row['tick_ms']:.0f} ms (> --max-tick-ms)"
    return summarise(res, block_ms)


# ---------------------------------------------------------------------------- CPU


def cpu_measure(
    model: BinauralFlowUNet, nfe: int, capacity: int, ticks: int
) -> Callable[[int], dict[str, Any]]:
    """Timing of ``SlotKernel.tick_host`` (the engine's CPU path) over ``n`` rows."""
    kernel = SlotKernel(model, capacity)

    def measure(n: int) -> dict[str, Any]:
        host = packed_host(kernel, n)
        kernel.tick_host(nfe, host)  # warm: the first call of a shape builds its kernels
        times = []
        for _ in range(ticks):
            t0 = time.perf_counter()
            kernel.tick_host(nfe, host)
            times.append((time.perf_counter() - t0) * 1e3)
        return {
            "slots": n, "tick_ms": round(statistics.median(times), 2),
            "ticks_ms": [round(t, 1) for t in times], "mode_used": "eager",
            "gather_ms": round(gather_ms(host), 3),
        }  # fmt: skip

    return measure


# ---------------------------------------------------------------------------- CUDA


def _engine_stream(engine: RenderEngine, timeout_s: float = 30.0) -> torch.cuda.Stream:
    """The engine thread's high-priority stream (made as the thread starts)."""
    t_end = time.monotonic() + timeout_s
    while engine._stream is None:
        if engine._failure is not None or time.monotonic() > t_end:
            raise RuntimeError(f"render engine made no CUDA stream ({engine._failure})")
        time.sleep(0.01)
    return engine._stream


def cuda_one(
    model: BinauralFlowUNet, nfe: int, n: int, graphs: bool, ticks: int, dtype: torch.dtype
) -> dict[str, Any]:
    """One engine of capacity ``n``: its tick (host in, host out) and the device compute."""
    dev = next(model.parameters()).device
    engine = RenderEngine(model, n, nfe=nfe, device=dev, dtype=dtype, graphs=graphs)
    try:
        stream = _engine_stream(engine)
        host = packed_host(engine.kernel, n)
        times, walls, compute = [], [], []
        with torch.cuda.stream(stream):
            for _ in range(2):  # the first one captures the graph (when on)
                engine._run_cuda(host)
            for _ in range(ticks):
                t0 = time.perf_counter()
                with cuda_timer(stream) as timer:
                    engine._run_cuda(host)
                walls.append((time.perf_counter() - t0) * 1e3)
                times.append(timer.ms)
            graph = engine._graphs.get((nfe, n))
            dev_in = torch.from_numpy(host).to(dev)
            for _ in range(ticks):
                with cuda_timer(stream) as timer:
                    if graph is not None:
                        graph[0].replay()  # type: ignore[attr-defined]
                    else:
                        engine.kernel.tick(nfe, dev_in)
                compute.append(timer.ms)
        return {
            "slots": n, "tick_ms": round(statistics.median(times), 3),
            "wall_ms": round(statistics.median(walls), 3),
            "compute_ms": round(statistics.median(compute), 3),
            "ticks_ms": [round(t, 2) for t in times],
            "gather_ms": round(gather_ms(host), 3),
            "mode_used": "graph" if graph is not None else "eager",
            "graph_failures": engine.stats.graph_failures,
            "peak_mem_gib": round(torch.cuda.max_memory_allocated(dev) / 2**30, 2),
        }  # fmt: skip
    finally:
        engine.close()


def free_cuda(dev: torch.device) -> None:
    gc.collect()
    torch.cuda.synchronize(dev)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(dev)


def cuda_measure(
    model: BinauralFlowUNet, nfe: int, graphs: bool, ticks: int, dtype: torch.dtype
) -> Callable[[int], dict[str, Any]]:
    def measure(n: int) -> dict[str, Any]:
        try:
            row = cuda_one(model, nfe, n, graphs, ticks, dtype)
        except torch.cuda.OutOfMemoryError as e:
            row = {"slots": n, "oom": str(e).splitlines()[0]}
        free_cuda(next(model.parameters()).device)  # the error's frames (and tensors) are gone
        return row

    return measure


# ---------------------------------------------------------------------------- run


def devices(choice: str) -> list[torch.device]:
    if choice == "all":
        return [torch.device("cpu")] + [torch.device("cuda:0")] * torch.cuda.is_available()
    return [parse_device(choice)]


def plan(
    dev: torch.device, preset: str, args: argparse.Namespace
) -> tuple[list[int], list[int], int, str]:
    """(nfes, slots, timed ticks, why less than asked) of one device and preset."""
    nfes = list(args.nfe or NFES)
    slots = list(args.slots or (SLOTS if dev.type == "cpu" else CUDA_SLOTS))
    if dev.type != "cpu" or preset != "paper":
        return nfes, slots, args.ticks if dev.type == "cpu" else args.cuda_ticks, ""
    if args.nfe is None:
        nfes = [x for x in nfes if x in CPU_PAPER_NFES]
    if args.slots is None:
        slots = [s for s in slots if s in CPU_PAPER_SLOTS]
    why = f"paper on the CPU (~0.6 s per slot-block): NFE {CPU_PAPER_NFES} x {CPU_PAPER_SLOTS}"
    return nfes, slots, min(args.ticks, CPU_PAPER_TICKS), why


def run(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.monotonic()
    args.deadline = t0 + args.max_seconds
    configs: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for dev in devices(args.device):
        cuda = dev.type == "cuda"
        dtypes = args.dtypes or (["float32", "bfloat16"] if cuda else ["float32"])
        if cuda:
            torch.cuda.set_device(dev)
        for preset in args.presets:
            base = random_model(preset, 0)
            block_ms = block_ms_of(base.config)
            nfes, slots, ticks, why = plan(dev, preset, args)
            for nfe in sorted(set(args.nfe or NFES) - set(nfes)):
                skipped.append({"device": str(dev), "preset": preset, "nfe": nfe, "reason": why})
            for name in dtypes:
                dtype = parse_dtype(name)
                try:
                    model = on_device(base, dev, dtype)
                except torch.cuda.OutOfMemoryError:
                    skipped.append({"device": str(dev), "preset": preset, "dtype": name,
                                    "reason": "CUDA out of memory moving the model"})  # fmt: skip
                    continue
                for nfe, mode in [(k, m) for k in nfes for m in MODES[cuda]]:
                    cfg = {"device": str(dev), "preset": preset, "nfe": nfe, "dtype": name,
                           "mode": mode, "ticks": ticks, "note": why}  # fmt: skip
                    what = f"{dev} {preset} nfe={nfe} {name} {mode}"
                    try:
                        measure = (
                            cuda_measure(model, nfe, mode == "graph", ticks, dtype) if cuda
                            else cpu_measure(model, nfe, max(slots), ticks)
                        )  # fmt: skip
                        grow = list(GROW) if cuda and args.grow else []
                        res = sweep(measure, slots, grow, args, what, block_ms)
                    except Exception as e:  # one broken config must not lose the others
                        log(f"{what}: failed: {type(e).__name__}: {e}")
                        res = summarise({"rows": [], "error": f"{type(e).__name__}: {e}"}, 1.0)
                    configs.append({**cfg, **res})
                del model
                if cuda:
                    free_cuda(dev)
    return {"configs": configs, "skipped": skipped, "elapsed_s": round(time.monotonic() - t0, 1)}


def _best(configs: list[dict[str, Any]], key: str, pick: Any, **match: Any) -> dict[str, Any]:
    """The best value of ``key`` (``pick`` = max or min) over configs matching ``match``."""
    found = [
        (c[key], c) for c in configs
        if all(c.get(k) == v for k, v in match.items()) and c.get(key) is not None
    ]  # fmt: skip
    if not found:
        return {"status": "not measured"}
    value, c = pick(found, key=lambda vc: vc[0])
    return {"value": value, "dtype": c["dtype"], "mode": c["mode"]}


def targets(configs: list[dict[str, Any]], cuda: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    t = _best(configs, "tick8_over_tick1", min, device="cpu", preset="small", nfe=2)
    if "value" in t:
        t["pass"] = t["value"] <= 3
    out["cpu_small_tick8_over_tick1"] = {"target": TARGETS["cpu_small_tick8_over_tick1"], **t}
    if not cuda:
        for k in list(TARGETS)[1:]:
            out[k] = {"target": TARGETS[k], "status": "pending: no GPU"}
        return out
    gpu = [c for c in configs if c["device"].startswith("cuda")]
    for preset, need in (("paper", 100), ("small", 5000)):
        k = f"gpu_{preset}_nfe2_max_realtime_slots"
        t = _best(gpu, "max_realtime_slots", max, preset=preset, nfe=2)
        if "value" in t:
            t["pass"] = t["value"] >= need
        out[k] = {"target": TARGETS[k], **t}
    for c in gpu:  # one paper session's RTF at NFE 6
        one = next((r for r in c["rows"] if r["slots"] == 1), None)
        c["rtf_one_slot"] = one["rtf_per_slot"] if one else None
    t = _best(gpu, "rtf_one_slot", min, preset="paper", nfe=6)
    if "value" in t:
        t["pass"] = t["value"] <= 0.05
    k = "gpu_paper_nfe6_one_session_rtf"
    out[k] = {"target": TARGETS[k], **t}
    return out


def machine(threads: int) -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    return {
        "cpus": os.cpu_count(), "threads": threads, "torch": torch.__version__,
        "cuda": torch.version.cuda, "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if cuda else [],
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }  # fmt: skip


def check(args: argparse.Namespace) -> list[torch.device]:
    """The devices to measure; raises :class:`ConfigError` for an unusable option."""
    devs = devices(args.device)
    for d in args.dtypes or ():
        parse_dtype(d)
    bad = [p for p in args.presets if p not in PRESETS]
    if bad:
        raise ConfigError(f"--presets {' '.join(bad)}: choose from {', '.join(sorted(PRESETS))}")
    for flag, values in (("--slots", args.slots), ("--nfe", args.nfe)):
        if any(n < 1 for n in values or ()):
            raise ConfigError(f"{flag}: every value must be >= 1")
    if min(args.threads, args.ticks, args.cuda_ticks) < 1:
        raise ConfigError("--threads, --ticks and --cuda-ticks must be >= 1")
    return devs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="all", help="all (cpu + cuda:0 if present), cpu, cuda[:N]")
    ap.add_argument("--presets", nargs="+", default=["small", "paper"])
    ap.add_argument("--slots", nargs="+", type=int, help=f"default {' '.join(map(str, SLOTS))}")
    ap.add_argument("--nfe", nargs="+", type=int, help="default 2 6")
    ap.add_argument("--dtypes", nargs="+", help="default float32 (cpu), float32 bfloat16 (cuda)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--ticks", type=int, default=5, help="timed ticks per CPU measurement")
    ap.add_argument("--cuda-ticks", type=int, default=10, help="timed ticks per CUDA one")
    grow = ", ".join(map(str, GROW))
    ap.add_argument("--no-grow", dest="grow", action="store_false", help=f"CUDA: not {grow}")
    ap.add_argument("--max-tick-ms", type=float, default=4000.0, help="stop growing after")
    ap.add_argument("--max-seconds", type=float, help="start nothing new after (170; CUDA 480)")
    ap.add_argument("--quick", action="store_true", help="small only, slots 1 4 8, NFE 2")
    args = ap.parse_args()
    if args.quick:
        args.presets, args.slots, args.nfe = ["small"], [1, 4, 8], [2]
    try:
        devs = check(args)
    except ConfigError as e:  # a user mistake: one line, exit 2
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    cuda = any(d.type == "cuda" for d in devs)
    if args.max_seconds is None:
        args.max_seconds = 480.0 if cuda else 170.0
    torch.set_num_threads(args.threads)
    res = run(args)
    cfg = PRESETS[args.presets[0]]
    block_ms = block_ms_of(cfg)
    print(
        json.dumps(
            {
                "benchmark": "batched_renderer",
                "block": LIVE_BLOCK_FRAMES * cfg.hop,
                "sample_rate": cfg.sample_rate,
                "block_ms": round(block_ms, 2),
                "headroom": HEADROOM,
                "realtime_tick_ms": round((1 - HEADROOM) * block_ms, 2),
                "machine": machine(args.threads),
                "targets": targets(res["configs"], cuda),
                **res,
            }
        )
    )


if __name__ == "__main__":
    main()
