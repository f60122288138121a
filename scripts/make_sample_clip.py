"""Regenerate ``livesense/assets/sample.mp4``: 10 s of narrated synthetic video.

Video: 320x240 @ 15 fps, a red ball bouncing left to right across a field, then rolling back to
the centre and stopping; a timestamp/frame counter in the corner. Audio: espeak-ng speech
describing it, resampled to 48 kHz mono. H.264 (crf 28, one thread: reproducible) + AAC 64 kb/s.

    python scripts/make_sample_clip.py [OUT.mp4]

Needs the ``espeak-ng`` program (Debian package espeak-ng).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from livesense.media.audio import read_audio
from livesense.media.mp4 import Mp4Writer
from livesense.streaming.frames import VideoFrame

WIDTH, HEIGHT, FPS, SECONDS, RATE = 320, 240, 15, 10.0, 48000
SPEECH_START = 0.5  # seconds
TEXT = (
    "A red ball bounces from the left side of the field to the right side. "
    "Then it rolls back to the middle and stops."
)
OUT = Path(__file__).resolve().parents[1] / "livesense" / "assets" / "sample.mp4"
RADIUS = 14
GROUND_Y = 180  # top of the grass


def speech() -> np.ndarray:
    """espeak-ng speech of TEXT as float32 (1, n) at RATE, placed in a SECONDS-long track."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        sys.exit("espeak-ng not found: apt-get install espeak-ng")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run([exe, "-v", "en-us", "-s", "150", "-w", str(wav), TEXT], check=True)
        voice = read_audio(wav, sample_rate=RATE, channels=1)  # (1, n)
    total = int(SECONDS * RATE)
    start = int(SPEECH_START * RATE)
    if start + voice.shape[1] > total:
        sys.exit(f"speech is {voice.shape[1] / RATE:.2f} s: too long for the clip")
    track = np.zeros((1, total), np.float32)
    track[:, start : start + voice.shape[1]] = 0.9 * voice / max(1e-6, float(np.abs(voice).max()))
    return track


def ball_position(t: float) -> tuple[float, float]:
    """Ball centre (x, y) at time t: bounce right for 6 s, roll back 3 s, rest."""
    floor = GROUND_Y - RADIUS
    left, right, mid = 30.0, WIDTH - 30.0, WIDTH / 2
    if t < 6.0:
        x = left + (right - left) * t / 6.0
        y = floor - 90.0 * abs(np.sin(np.pi * t / 1.5)) * (1 - t / 8.0)  # 4 decaying hops
    elif t < 9.0:
        s = (t - 6.0) / 3.0
        x = right + (mid - right) * (1 - (1 - s) ** 2)  # decelerating roll
        y = floor
    else:
        x, y = mid, floor
    return x, y


def background() -> np.ndarray:
    """Sky gradient over grass, (H, W, 3) uint8."""
    img = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    sky = np.linspace(0, 1, GROUND_Y)[:, None]  # (GROUND_Y, 1)
    img[:GROUND_Y] = (np.array([120, 170, 235]) * (1 - 0.3 * sky))[:, None, :].astype(np.uint8)
    img[GROUND_Y:] = (60, 150, 60)
    img[GROUND_Y : GROUND_Y + 2] = (40, 110, 40)
    return img


def frame(i: int, bg: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Frame i: the background, the ball with a simple shading, and a time/frame label."""
    t = i / FPS
    img = bg.copy()
    cx, cy = ball_position(t)
    d2 = (xx - cx) ** 2 + (yy - cy) ** 2  # (H, W)
    shadow = ((xx - cx) ** 2 / 4 + (yy - GROUND_Y - 3) ** 2 * 4) < RADIUS**2 / 2
    img[shadow] = (img[shadow] * 0.6).astype(np.uint8)
    inside = d2 < RADIUS**2
    shade = 1 - 0.5 * np.clip(((xx - cx + 5) ** 2 + (yy - cy + 5) ** 2) / (2 * RADIUS) ** 2, 0, 1)
    img[inside] = (np.array([230, 30, 30])[None] * shade[inside][:, None]).astype(np.uint8)
    pil = Image.fromarray(img)
    ImageDraw.Draw(pil).text((6, 6), f"t={t:5.2f}s  frame {i:3d}", fill=(255, 255, 255))
    return np.asarray(pil)


def main(out: Path = OUT) -> None:
    audio = speech()
    bg = background()
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    per_frame = RATE // FPS
    with Mp4Writer(
        out,
        WIDTH,
        HEIGHT,
        FPS,
        RATE,
        audio_channels=1,
        crf=28,
        preset="medium",
        audio_bitrate=64_000,
        threads=1,
    ) as w:
        for i in range(int(SECONDS * FPS)):
            w.write_video(VideoFrame(frame(i, bg, yy, xx), i / FPS, i))
            w.write_audio(audio[:, i * per_frame : (i + 1) * per_frame], pts=i * per_frame)
    print(f"{out}: {out.stat().st_size / 1024:.0f} KiB ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
