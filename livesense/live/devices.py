"""Audio devices through PortAudio (python-sounddevice), imported lazily.

``sounddevice`` needs the PortAudio shared library (Debian: ``libportaudio2``); it is imported
only when a device is listed or opened, so everything else works without it.
"""

from __future__ import annotations

from typing import Any

from livesense.errors import LivesenseError


class DeviceError(LivesenseError):
    """PortAudio is missing, a device does not exist, or it cannot be opened."""


def import_sounddevice() -> Any:
    """Return the ``sounddevice`` module or raise a one-line :class:`DeviceError`."""
    try:
        import sounddevice  # lazy: needs the PortAudio library; only device commands do
    except OSError as exc:  # the module loads PortAudio at import time
        raise DeviceError(
            f"PortAudio is not installed ({exc}); install it with: sudo apt-get install "
            "libportaudio2 (Debian/Ubuntu) or brew install portaudio (macOS)"
        ) from None
    except ImportError:
        raise DeviceError("python-sounddevice is missing: pip install sounddevice") from None
    return sounddevice


def describe_devices() -> str:
    """A table of the audio devices PortAudio sees (what ``--list-devices`` prints)."""
    sd = import_sounddevice()
    try:
        devices = sd.query_devices()
    except Exception as exc:  # PortAudioError
        raise DeviceError(f"cannot list audio devices: {exc}") from None
    if len(devices) == 0:
        return "no audio devices found (no sound card, or no permission to open one)"
    lines = ["  #  in  out  rate   name"]
    default_in, default_out = _defaults(sd)
    for i, d in enumerate(devices):
        mark = (">" if i == default_in else " ") + ("<" if i == default_out else " ")
        lines.append(
            f"{mark}{i:2d} {d['max_input_channels']:3d} {d['max_output_channels']:4d} "
            f"{int(d['default_samplerate']):6d}  {d['name']}"
        )
    lines.append("(> default input, < default output)")
    return "\n".join(lines)


def _defaults(sd: Any) -> tuple[int, int]:
    try:
        d = sd.default.device
        return int(d[0]), int(d[1])
    except Exception:
        return -1, -1


def resolve_device(spec: str | int | None, kind: str) -> int | str | None:
    """Validate a device given by index or (part of its) name for ``kind`` 'input'/'output'.

    Returns what sounddevice accepts; raises :class:`DeviceError` listing the devices that
    exist when it does not match.
    """
    sd = import_sounddevice()
    try:
        devices = sd.query_devices()
    except Exception as exc:
        raise DeviceError(f"cannot list audio devices: {exc}") from None
    channels_key = "max_input_channels" if kind == "input" else "max_output_channels"
    usable = [(i, d["name"]) for i, d in enumerate(devices) if d[channels_key] > 0]
    if not usable:
        raise DeviceError(
            f"no audio {kind} device found (no sound card?); `livesense mic --list-devices` "
            "shows what PortAudio sees"
        )
    if spec is None or spec == "":
        return None
    if isinstance(spec, int) or str(spec).isdigit():
        idx = int(spec)
        if any(i == idx for i, _ in usable):
            return idx
    else:
        exact = [i for i, name in usable if name == spec]
        if exact:
            return exact[0]
        partial = [i for i, name in usable if str(spec).lower() in name.lower()]
        if len(partial) == 1:
            return partial[0]
    names = ", ".join(f"{i}: {name}" for i, name in usable)
    raise DeviceError(f"no {kind} device {spec!r}; {kind} devices: {names}")
