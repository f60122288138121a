"""User-facing errors: the CLI prints their message on one line (no traceback) and exits 2."""


class LivesenseError(Exception):
    """An error caused by user input or environment that has a clear one-line explanation."""


class MediaError(LivesenseError):
    """A media file is missing, unreadable, truncated, or lacks a required stream."""


class ConfigError(LivesenseError):
    """A command-line option or configuration value is invalid."""
