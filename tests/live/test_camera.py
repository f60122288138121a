"""Camera sources: what each kind of --camera value means."""

from __future__ import annotations

from pathlib import Path

import pytest

from livesense.errors import MediaError
from livesense.live.camera import CameraSpec


def test_camera_spec_parsing():
    if Path("/dev/video0").exists():
        assert CameraSpec.parse("/dev/video0") == CameraSpec("/dev/video0", "v4l2", True)
    with pytest.raises(MediaError, match="no camera at /dev/video99; pass --camera"):
        CameraSpec.parse("/dev/video99")
    assert CameraSpec.parse("lavfi:testsrc2") == CameraSpec("testsrc2", "lavfi", False)
    assert CameraSpec.parse("rtsp://cam/1").paced_by_source
    assert not CameraSpec.parse("clip.mp4").paced_by_source
    with pytest.raises(MediaError, match="filter graph"):
        CameraSpec.parse("lavfi:")
