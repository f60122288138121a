"""``livesense serve`` as a process: SIGTERM / Ctrl-C drain every session with ``done``."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from livesense.live.server.protocol import Kind, StartConfig, encode_audio, pack_frame


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_a_signal_drains_sessions_with_done_and_1001(sig: int, code: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "livesense", "serve", "--port", "0", "--renderer", "dsp",
         "--token", "t"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        m = re.search(r"(ws://\S+)", line)
        assert m, line
        with connect(m.group(1)) as ws:
            ws.send(json.dumps(StartConfig().to_json()))
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
            x = encode_audio(np.full((1, 480), 0.1, np.float32), "s16le")
            for seq in range(20):
                ws.send(pack_frame(Kind.AUDIO_IN, seq, 480 * seq, x))
            assert isinstance(ws.recv(timeout=10), bytes)  # rendering has begun
            proc.send_signal(sig)
            events = []
            with pytest.raises(ConnectionClosed) as e:
                while True:
                    msg = ws.recv(timeout=10)
                    if isinstance(msg, str):
                        events.append(json.loads(msg))
            assert e.value.rcvd is not None and e.value.rcvd.code == 1001
            done = events[-1]
            assert done["type"] == "done" and done["samples_in"] == done["samples_out"] > 0
        assert proc.wait(20) == code
        err = proc.stderr.read() if proc.stderr else ""
        assert "finishing 1 session(s)" in err and "Traceback" not in err, err
    finally:
        proc.kill()
        proc.wait()
