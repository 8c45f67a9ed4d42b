"""User-facing error types and the command-line error convention shared by every part of the kit.

Every error a user can cause (unknown model, invalid configuration, corrupt stream, illegal command,
unsupported shape, unusable output path, bad option) is a :class:`KitError`. Command-line front ends parse
their options with :class:`KitArgumentParser` and run their handler through :func:`run_cli`, which prints the
message on one ``error:`` line and exits with status 2; anything else is a bug in the kit and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["KitError", "ConfigError", "StreamError", "ModelError", "ShapeError", "OutputError",
           "KitArgumentParser", "run_cli", "cli_main"]


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


class OutputError(KitError):
    """An output path cannot be used (under a file, not writable, or holding data the kit did not write)."""


class KitArgumentParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are :class:`KitError` (one ``error:`` line, status 2).

    Sub-parsers made with ``add_subparsers()`` are of the same class, so a bad option anywhere on the command
    line reads the same. ``--help`` still prints the usage and exits 0.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def add_subparsers(self, **kwargs):
        kwargs.setdefault("parser_class", KitArgumentParser)
        return super().add_subparsers(**kwargs)

    def error(self, message):
        raise KitError(f"{self.prog}: {message}")


def _user_message(exc: BaseException) -> str | None:
    """The one-line message for an exception the user caused, or None for a bug in the kit."""
    if isinstance(exc, KitError):
        return exc.one_line()
    if isinstance(exc, MemoryError):
        return "out of memory (the configuration or model is too large for this machine)"
    if isinstance(exc, OSError) and exc.filename is not None:
        # File-system trouble on a path the user named (permissions, missing folder, full disk): not a bug.
        return " ".join(f"{exc.strerror or exc}: {exc.filename}".split())
    return None


def run_cli(func, args) -> int:
    """Call a command-line handler ``func(args)``; turn user errors into one ``error:`` line and status 2.

    Every front end (``python -m mapper|hw|sim|sw_model``) runs its handler through this, so user errors look
    the same everywhere; any other exception is a bug and keeps its traceback.
    """
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - classified below; bugs are re-raised with their traceback
        msg = _user_message(exc)
        if msg is None:
            raise
        print(f"error: {msg}", file=sys.stderr)
        return 2


def cli_main(make_parser, argv=None, *, setup=None) -> int:
    """Parse ``argv`` with ``make_parser()`` and run ``args.func`` through :func:`run_cli`.

    Option errors become one ``error:`` line and status 2 like every other user error; ``setup(args)``, if
    given, runs after parsing (logging, thread settings).
    """
    def call(_):
        args = make_parser().parse_args(argv)
        if setup is not None:
            setup(args)
        return args.func(args)
    return run_cli(call, None)
