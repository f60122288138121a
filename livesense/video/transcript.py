"""The transcript of a stream: one JSON object per note or answer, one line each, flushed."""

from __future__ import annotations

import json
import os
import threading

from livesense.streaming.frames import TextEvent

__all__ = ["TranscriptWriter"]


class TranscriptWriter:
    """Writes one JSON object per event line to ``path``, flushed per event."""

    def __init__(self, path: str | os.PathLike) -> None:
        self._f = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._lock = threading.Lock()

    def write(self, event: TextEvent) -> None:
        with self._lock:
            self._f.write(json.dumps(event.to_json(), ensure_ascii=False) + "\n")
            self._f.flush()

    __call__ = write

    def close(self) -> None:
        with self._lock:
            self._f.close()

    def __enter__(self) -> TranscriptWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
