"""Video reasoner benchmark (tiny random Qwen3-VL on CPU): prints ONE JSON line.

Measures frames/s ingested, per-segment latency (p50), pipeline overhead vs bare model forwards
over the same frames, cache tokens at 1/10/30 minutes of a simulated 1 fps stream, and cache
bytes / peak RSS once the budget is reached (should be flat).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch


def main() -> None:
    from livesense.models.vlm import Kind, load_vlm
    from livesense.streaming.frames import VideoFrame
    from livesense.video.reasoner import ReasonerConfig, VideoReasoner

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    backend = load_vlm("tiny")
    cfg = ReasonerConfig(
        fps=1.0,
        segment_seconds=10,
        keep_segments=2,
        max_cache_tokens=4096,
        note_tokens=4,
        query_reserve=64,
        frame_queue=4096,
        feature_queue=4096,
        encode_batch=32,
    )
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(16)]
    r = VideoReasoner(backend, cfg).start()
    marks: dict[str, dict] = {}
    t0 = time.perf_counter()
    minutes = {60: "1min", 600: "10min", 1200: "20min", 1800: "30min"}
    for i in range(1800):
        r.submit_frame(VideoFrame(images[i % 16], float(i), i))
        if i + 1 in minutes:
            while r.backlog() > 0:
                time.sleep(0.005)
            st = r.stats()
            rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            marks[minutes[i + 1]] = {
                "tokens": st.cache_tokens,
                "bytes": st.cache_bytes,
                "peak_rss_mb": round(rss_mb, 1),
            }
    st = r.finish(timeout=300)
    wall = time.perf_counter() - t0

    # Bare model: encode + one forward per 10-frame segment, no notes/eviction/threads.
    cache = backend.new_cache()
    backend.append_text(cache, backend.system_text(cfg.system_prompt), Kind.SYSTEM)
    n_bare = 300
    tb = time.perf_counter()
    for s in range(0, n_bare, 10):
        feats = backend.encode_frames(
            [images[i % 16] for i in range(s, s + 10)], [float(i) for i in range(s, s + 10)]
        )
        backend.append_video(cache, feats, s // 10)
    bare = (time.perf_counter() - tb) / n_bare
    out = {
        "bench": "video_reasoner",
        "model": "tiny-qwen3vl (random)",
        "device": "cpu",
        "frames": st.frames_ingested,
        "frames_per_s": round(st.frames_ingested / wall, 1),
        "segment_note_latency_p50_s": round(st.to_json()["note_latency_p50_s"], 4),
        "bare_forward_s_per_frame": round(bare, 5),
        "pipeline_s_per_frame": round(wall / max(1, st.frames_ingested), 5),
        "overhead_ratio": round((wall / max(1, st.frames_ingested)) / bare, 2),
        "budget_tokens": cfg.max_cache_tokens,
        "peak_cache_tokens": st.peak_cache_tokens,
        "cache_tokens": {k: v["tokens"] for k, v in marks.items()},
        "cache_bytes": {k: v["bytes"] for k, v in marks.items()},
        "peak_rss_mb": {k: v["peak_rss_mb"] for k, v in marks.items()},
        "evicted_notes": st.evicted_notes,
        "frames_dropped": st.frames_dropped,
    }
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
