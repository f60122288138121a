"""The seeded protocol fuzzer: mutated messages over many sessions, the contract checked after
each one, while a well-behaved session streams in real time next to them.

``LIVESENSE_FUZZ_N`` (default 2400) messages, ``LIVESENSE_FUZZ_SEED`` (default 14) for the
generator; ``make fuzz N=100000 SEED=7`` runs a long one. A failure names the seed, the
session and the last messages sent to it.
"""

from __future__ import annotations

import os
import random
from collections import deque

import pytest

N = int(os.environ.get("LIVESENSE_FUZZ_N") or 2400)
SEED = int(os.environ.get("LIVESENSE_FUZZ_SEED") or 14)

pytestmark = [
    pytest.mark.timeout(120 + N // 40),
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning"),
]


def test_protocol_fuzz(live_server, rel) -> None:
    h = live_server()
    fz = rel.fuzz.Fuzzer(SEED)
    rng = random.Random(SEED + 1)
    total, k, endings = 0, 0, {"done": 0, "closed": 0, "rejected": 0}
    with rel.Streamer(h, seconds=3600, seed=SEED) as other:
        while total < N:
            k += 1
            what = f"fuzz session {k} (LIVESENSE_FUZZ_SEED={SEED})"
            start = fz.new_session()
            if rng.random() < 0.1:  # a bad first message: error + 1008, nothing else
                bad = fz.bad_start()
                c = rel.Client(h.url, start=bad.data, wait_ready=False)
                e = c.ending(10)
                rel.check_ending(e, f"{what}, first message {bad.short()}")
                assert e.code == 1008 and e.errors, f"{what}: {bad.short()}: {e.describe()}"
                total += 1
                endings["rejected"] += 1
            else:
                c = rel.Client(h.url, start)
                assert c.ready is not None, f"{what}: no ready for {start}: {c.events[:2]}"
                last: deque[str] = deque(maxlen=10)
                sent = must = 0
                closes = False
                for _ in range(rng.randint(50, 500)):
                    m = fz.message()
                    if not c.send(m.data):
                        break
                    last.append(m.short())
                    sent += 1
                    must += m.must_error
                    if m.closes:
                        closes = True
                        break
                e = c.finish(20)
                ctx = f"{what}, {sent} messages, the last: " + " | ".join(last)
                rel.check_ending(e, ctx)
                if closes:
                    assert e.code == 1009, f"{ctx}: an oversize message: {e.describe()}"
                if e.done is not None:
                    assert len(e.errors) >= must, (
                        f"{ctx}: {must} malformed messages but {len(e.errors)} error events"
                    )
                total += sent
                endings["done" if e.done is not None else "closed"] += 1
            assert h.wait_sessions(1) == 1, f"{what}: its slot was not freed"
            h.assert_healthy(max_rss_growth_mb=100)
        other.check(p99_ms=250)
    assert total >= N
    # The fuzzer reached both ends: sessions that finished and sessions closed for errors.
    assert endings["done"] and endings["closed"] and endings["rejected"], endings
