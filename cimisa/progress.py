"""Progress of long steps, the same way in every command, and the options every command shares.

- On a terminal (stderr is a TTY): a live tqdm line per step, with a count (layers, steps, models) when the
  step knows it, else the elapsed time; it is erased when the step ends.
- Redirected (stderr is not a TTY): one line per completed step on stderr, ``stage: <name>: <time> s``; with
  ``-v`` also a line when each step starts. A step that fails prints nothing, so an error stays the one
  ``error:`` line; bad input is checked before the first step starts.
- ``--no-progress``: nothing at all.

Progress goes to stderr only; stdout keeps the command's result. Usage::

    from cimisa import progress
    with progress.stage("verilator build"):
        ...
    for x in progress.bar(items, desc="layer-wise fit"):
        ...

:func:`add_common_options` adds ``--no-progress``, ``-v/--verbose`` and (for commands that compute)
``--threads`` to a parser; :func:`setup` applies them (``cli_main(..., setup=progress.setup)``).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time

__all__ = ["configure", "enabled", "verbose", "stage", "bar", "add_common_options", "setup", "NO_PROGRESS_HELP",
           "VERBOSE_HELP"]

NO_PROGRESS_HELP = "no progress display (by default: live on a terminal, one stderr line per step otherwise)"
VERBOSE_HELP = "log details (debug messages, a line when each step starts)"

_state = {"enabled": True, "verbose": False, "held": None}


def configure(*, quiet: bool = False, verbose: bool = False) -> None:
    """Turn progress off (``quiet``) or make it more detailed (``verbose``)."""
    _state["enabled"] = not quiet
    _state["verbose"] = bool(verbose)


def enabled() -> bool:
    """Whether progress is shown at all."""
    return bool(_state["enabled"])


def verbose() -> bool:
    """Whether ``-v`` was given."""
    return bool(_state["verbose"])


def _tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _line(text: str) -> None:
    if _state["held"] is not None:
        _state["held"].append(text)
        return
    try:
        print(f"stage: {text}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


class Stage:
    """A running step: :meth:`update` advances its count, :meth:`note` sets a short status text."""

    def __init__(self, name: str, total: int | None, bar=None):
        self.name, self.total, self.count, self.status = name, total, 0, ""
        self._bar = bar

    def update(self, n: int = 1) -> None:
        """Advance the count by ``n``."""
        self.count += n
        if self._bar is not None:
            self._bar.update(n)

    def note(self, text: str) -> None:
        """Show ``text`` next to the step (the current sub-step)."""
        self.status = str(text)
        if self._bar is not None:
            self._bar.set_postfix_str(self.status, refresh=True)


@contextlib.contextmanager
def stage(name: str, total: int | None = None, *, unit: str = "it", show: bool = True):
    """Report the step ``name`` while the ``with`` block runs; yield a :class:`Stage`.

    ``total``: the count the step reaches (shown as a bar on a terminal). ``show=False`` (a caller's own
    progress switch) or ``--no-progress`` shows nothing.
    """
    if not (show and _state["enabled"]):
        yield Stage(name, total)
        return
    t0 = time.monotonic()
    if not _tty():
        if _state["verbose"]:
            _line(f"{name} ...")
        st = Stage(name, total)
        yield st
        count = f" ({st.count} {unit}{'' if st.count == 1 else 's'})" if st.count and unit != "it" else ""
        _line(f"{name}{count}: {time.monotonic() - t0:.1f} s")
        return
    from tqdm import tqdm  # noqa: PLC0415
    fmt = None if total else "{desc}: {elapsed}{postfix}"
    pbar = tqdm(total=total, desc=name, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True,
                bar_format=fmt)
    stop = threading.Event()

    def tick():                      # keep the elapsed time moving during a step that reports nothing
        while not stop.wait(1.0):
            try:
                pbar.refresh()
            except Exception:  # noqa: BLE001 - a display hiccup must not break the work
                return
    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield Stage(name, total, pbar)
    finally:
        stop.set()
        ticker.join(timeout=2)
        pbar.close()
    if _state["verbose"]:
        _line(f"{name}: {time.monotonic() - t0:.1f} s")


@contextlib.contextmanager
def hold():
    """Hold the redirected-output stage lines printed inside the block; print them when it completes, drop them
    if it raises (for steps that can still find bad input: the error stays the only line)."""
    if _state["held"] is not None:          # nested: the outer block decides
        yield
        return
    _state["held"] = []
    try:
        yield
    except BaseException:
        _state["held"] = None
        raise
    lines, _state["held"] = _state["held"], None
    for text in lines:
        _line(text)


@contextlib.contextmanager
def steps(prefix: str, *, show: bool = True, merge: dict | None = None):
    """Yield ``step(name)``: each call ends the current step and starts ``<prefix>: <name>`` (a callback for
    functions that announce their steps, like :func:`mapper.pipeline.build`). ``merge`` maps a step name to
    the running step it continues (one stage line for both)."""
    stack = contextlib.ExitStack()
    current: list = [None, None]          # name, Stage

    def step(name: str) -> None:
        if current[1] is not None and (merge or {}).get(name) == current[0]:
            current[1].note(name)
            return
        stack.close()
        current[0] = name
        current[1] = stack.enter_context(stage(f"{prefix}: {name}", show=show))

    with stack:
        yield step


def bar(iterable, total: int | None = None, desc: str = "", *, unit: str = "it", show: bool = True):
    """Iterate over ``iterable`` as the step ``desc`` (see :func:`stage`), advancing once per item."""
    if total is None:
        try:
            total = len(iterable)
        except TypeError:
            total = None
    with stage(desc, total, unit=unit, show=show) as st:
        for item in iterable:
            yield item
            st.update(1)


def _defaults_formatter(base):
    import argparse  # noqa: PLC0415

    class DefaultsHelpFormatter(base):
        """Append ``(default: X)`` to an option's help when it has a value default the text does not state."""

        def _get_help_string(self, action):
            text = action.help or ""
            d = action.default
            if ("default" in text or "%(default)" in text or d is None or d is False or d is argparse.SUPPRESS
                    or not action.option_strings or isinstance(d, (list, tuple)) and not d):
                return text
            return text + " (default: %(default)s)"
    return DefaultsHelpFormatter


def add_common_options(parser, *, threads: bool = True, top_level: bool = False) -> None:
    """Add ``--no-progress``, ``-v/--verbose`` and (``threads``) ``--threads N`` to ``parser``; its ``--help``
    then states every option's default.

    ``top_level``: the options also appear before the sub-command; sub-parsers then do not reset them.
    """
    import argparse  # noqa: PLC0415
    if not getattr(parser.formatter_class, "_kit_defaults", False):
        parser.formatter_class = _defaults_formatter(parser.formatter_class)
        parser.formatter_class._kit_defaults = True
    kw = {} if top_level else {"default": argparse.SUPPRESS}
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP,
                        **({"default": False} if top_level else kw))
    parser.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP,
                        **({"default": False} if top_level else kw))
    if threads:
        from cimisa.threads import add_threads_option  # noqa: PLC0415
        add_threads_option(parser)


def setup(args) -> None:
    """Apply the common options: logging level, progress display, thread count (when the command has
    ``--threads``)."""
    verbose_ = bool(getattr(args, "verbose", False))
    configure(quiet=bool(getattr(args, "no_progress", False)), verbose=verbose_)
    logging.basicConfig(level=logging.DEBUG if verbose_ else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if hasattr(args, "threads"):
        from cimisa.threads import set_threads  # noqa: PLC0415
        set_threads(args.threads)
