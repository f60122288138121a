"""``livesense serve`` stopped by SIGTERM / SIGINT mid-session: every running session gets its
audio rendered, ``stats`` + ``done`` and close 1001; the process exits 0 (SIGTERM) / 130."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning"),
]


def _serve(token: str) -> tuple[subprocess.Popen, str, list[str]]:
    """Start ``livesense serve --port 0``; (process, session URL, its stderr lines so far)."""
    cmd = [sys.executable, "-m", "livesense", "serve", "--port", "0", "--token", token,
           "--renderer", "dsp"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    err: list[str] = []
    assert proc.stdout is not None and proc.stderr is not None
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True).start()
    threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True).start()
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        m = re.search(r"(ws://\S+/v1/session\S*)", line)
        if m:
            return proc, m.group(1), err
    proc.kill()
    raise AssertionError(f"serve did not print its URL: rc {proc.poll()} {''.join(err)}")


@pytest.mark.parametrize(("sig", "rc"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_signal_drains_sessions_with_done_and_1001(rel, sig: int, rc: int) -> None:
    proc, url, err = _serve(rel.TOKEN)
    try:
        http = url.replace("ws://", "http://").split("/v1/")[0]
        assert rel.http_json(f"{http}/healthz")["ok"] is True
        busy, idle = rel.Client(url), rel.Client(url)
        assert busy.ready is not None and idle.ready is not None, (busy.events, idle.events)
        x = (0.05 * np.random.default_rng(7).standard_normal(480)).astype(np.float32)
        for seq in range(50):
            busy.send_audio(seq, x, 480 * seq)
        assert busy.barrier(), busy.events  # the server has every packet (not all rendered)
        proc.send_signal(sig)
        for name, c, n in (("the streaming session", busy, 50 * 480), ("an idle session", idle, 0)):
            e = c.ending(20)
            rel.check_ending(e, f"{name} at {signal.Signals(sig).name}")
            assert e.code == 1001 and e.done is not None, e.describe()
            assert e.done["samples_in"] == n, e.describe()
        assert proc.wait(20) == rc, "".join(err)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    time.sleep(0.1)  # the stderr reader's last lines
    assert "Traceback" not in "".join(err), "".join(err)
