"""User-facing error types shared by every part of the kit.

Every error a user can cause (unknown model, invalid configuration, corrupt stream, illegal command,
unsupported shape) is a :class:`KitError`. Command-line front ends catch ``KitError``, print its message on
one line and exit with status 2; anything else is a bug in the kit and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["KitError", "ConfigError", "StreamError", "ModelError", "ShapeError"]


class KitError(Exception):
    """An error caused by the user's input, reported as one line on the command line."""

    def one_line(self) -> str:
        """Return the message folded onto one line."""
        return " ".join(str(self).split())


class ConfigError(KitError):
    """The hardware configuration is invalid; the message lists every violation."""


class StreamError(KitError):
    """A command stream file is corrupt, truncated or built for another configuration."""


class ModelError(KitError):
    """A model name, checkpoint folder or factor folder cannot be used."""


class ShapeError(KitError):
    """A matrix shape cannot be handled with the requested parameters."""


def run_cli(func, args) -> int:
    """Call a command-line handler ``func(args)``; turn user errors into one ``error:`` line and status 2.

    Every front end (``python -m mapper|hw|sim|sw_model``) runs its handler through this, so user errors look
    the same everywhere; any other exception is a bug and keeps its traceback.
    """
    import sys
    try:
        return int(func(args) or 0)
    except KitError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
