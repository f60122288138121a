"""The browser client in a real headless Chromium with a fake microphone and webcam."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from livesense.live.engines import Engines, FakeReasoner
from livesense.live.server.app import ServerThread
from livesense.live.server.config import ServerConfig
from livesense.media.wav import write_wav

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} missing (Debian package chromium)"
)


def write_y4m(
    path: Path, frames: int = 10, size: tuple[int, int] = (64, 48), fps: int = 10
) -> None:
    """A small YUV4MPEG2 (4:2:0) clip of flat frames changing colour."""
    w, h = size
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            f.write(b"FRAME\n")
            f.write(np.full(w * h, 40 + 20 * i, np.uint8).tobytes())  # Y
            f.write(np.full((w // 2) * (h // 2), 90, np.uint8).tobytes())  # U
            f.write(np.full((w // 2) * (h // 2), 200 - 10 * i, np.uint8).tobytes())  # V


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    wav, y4m = tmp_path / "mic.wav", tmp_path / "cam.y4m"
    t = np.arange(3 * 48000) / 48000
    write_wav(wav, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 48000)
    write_y4m(y4m)
    args = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}", f"--use-file-for-fake-video-capture={y4m}",
        "--autoplay-policy=no-user-gesture-required",
    ]  # fmt: skip
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        try:
            yield b
        finally:
            b.close()


def wait_js(page, expr: str, timeout: float = 10.0) -> None:
    """Poll ``expr`` with page.evaluate (wait_for_function evals a string, which the page's
    Content-Security-Policy forbids)."""
    end = time.monotonic() + timeout
    while not page.evaluate(f"() => Boolean({expr})"):
        assert time.monotonic() < end, f"timed out waiting for {expr}"
        time.sleep(0.05)


def test_browser_streams_and_plays_back_binaural_audio(browser) -> None:
    cfg = ServerConfig(port=0, token="browser-tok", stats_interval_s=0.5)
    with ServerThread(cfg, Engines(reasoner=FakeReasoner(every=1))) as st:
        page = browser.new_page()  # type: ignore[attr-defined]
        logs: list[str] = []
        page.on("console", lambda m: logs.append(m.text))
        page.on("pageerror", lambda e: logs.append(f"pageerror: {e}"))
        page.goto(f"{st.http_url}/?token=browser-tok")
        page.fill("#fps", "4")
        page.click("#start")
        wait_js(page, "window.livesense.samplesPlayed > 24000 && window.livesense.notes >= 1", 20)
        page.fill("#ask", "what colour is it?")
        page.click("#askform button")
        wait_js(page, "window.livesense.answers >= 1")
        # Drag the speaker to the listener's right: the server receives a pose.
        box = page.locator("#room").bounding_box()
        page.mouse.move(box["x"] + 160, box["y"] + 60)
        page.mouse.down()
        page.mouse.move(box["x"] + 290, box["y"] + 160, steps=5)
        page.mouse.up()
        wait_js(page, "window.livesense.server && window.livesense.server.latency_ms")
        page.click("#stop")
        wait_js(page, "window.livesense.state === 'done'")
        s = page.evaluate("window.livesense")
        assert s["samplesPlayed"] > 24000 and s["samplesReceived"] > 24000, (s, logs)
        assert s["samplesReceived"] == s["samplesSent"], s  # everything sent came back
        assert s["eventsShown"] >= 2 and s["framesSent"] >= 2 and s["errors"] == 0, (s, logs)
        assert page.locator("#events li.note").count() >= 1
        assert not [m for m in logs if m.startswith("pageerror")], logs
        assert not [m for m in logs if "Content Security Policy" in m], logs  # works under CSP
