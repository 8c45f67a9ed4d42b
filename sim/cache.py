"""The co-simulation cache: where it lives, how long builds stay, and the locks that let processes share it.

The cache lives in ``$CIMSIM_CACHE``, else ``$XDG_CACHE_HOME/cim-kit/sim``, else ``~/.cache/cim-kit/sim``
(relative settings are taken from the current folder once, so the cache never moves with it). Several
processes share it safely:

* each build folder has a lock file (``build/.<name>.lock``). A process using a build (for a whole simulation)
  holds it shared; a process compiling a build holds it exclusive, so a second process wanting the same build
  waits and then reuses it, and nobody runs a build that is not finished: a build counts only once its
  ``.built`` marker (written last, atomically) exists;
* pruning (the :func:`keep_builds` most recently used builds per simulator and configuration name are kept;
  ``$CIMSIM_KEEP_BUILDS``, default 3) removes a build only if it can take its lock exclusively *without
  waiting*: a build in use anywhere is skipped. A removed folder is first renamed out of the way, so no process
  ever sees half of it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from sim.tools import SimulatorError, log

__all__ = ["KEEP_BUILDS", "KEEP_LOGS", "cache_dir", "keep_builds", "lock", "unlock", "locked", "prune",
           "remove_build", "keep_log"]

#: Builds kept per simulator, configuration name and tracing (older Verilog, options or shapes beyond this are
#: removed, least recently used first); ``$CIMSIM_KEEP_BUILDS`` overrides it.
KEEP_BUILDS = 3
#: Failed builds' and simulations' logs kept in ``<cache>/logs`` (oldest removed first).
KEEP_LOGS = 20


def cache_dir() -> Path:
    """Return the build cache folder, an absolute path (created on demand)."""
    env = os.environ.get("CIMSIM_CACHE")
    if env:
        return Path(os.path.abspath(os.path.expanduser(env)))
    base = os.environ.get("XDG_CACHE_HOME")
    if not base or not os.path.isabs(base):            # the XDG rule: a relative setting is ignored
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cim-kit" / "sim"


def keep_builds() -> int:
    """Return how many builds per simulator and configuration name the cache keeps (``$CIMSIM_KEEP_BUILDS``)."""
    env = os.environ.get("CIMSIM_KEEP_BUILDS", "").strip()
    if not env:
        return KEEP_BUILDS
    try:
        n = int(env)
    except ValueError:
        n = 0
    if not 1 <= n <= 1000:
        raise SimulatorError(f"CIMSIM_KEEP_BUILDS must be an integer from 1 to 1000, not {env!r}")
    return n


# ---- locks ------------------------------------------------------------------------------------------------
def lock(path: Path, mode: int, *, wait: bool = True) -> int | None:
    """Open ``path`` (created if missing) and ``flock`` it with ``mode``; return the descriptor.

    Returns None if ``wait`` is false and another process holds a conflicting lock. A lock file may be removed
    by a process holding it exclusively (pruning); a lock taken on a removed file is dropped and retaken on the
    new one, so two processes never believe they hold the same lock through different files.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, mode | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return None
            try:
                st = os.stat(path)
            except FileNotFoundError:
                st = None
            own = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        if st is not None and (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino):
            return fd
        os.close(fd)


def unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)                                  # closing the descriptor releases the flock


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold ``path`` exclusively (waiting for it)."""
    fd = lock(path, fcntl.LOCK_EX)
    try:
        yield
    finally:
        unlock(fd)


def prune(folder: Path, group: str, *, keep: int, current: Path) -> None:
    """Keep the ``keep`` most recently used builds of ``group`` (``current`` among them); remove the others
    that nobody uses, and what crashed builds left. Never waits: a build another process holds is skipped."""
    mine: list[tuple[float, Path]] = []
    for d in folder.iterdir():
        if d.name.startswith(".") or not d.is_dir() or d == current:
            continue
        marker = d / ".built"
        try:
            info = json.loads(marker.read_text())
            used = marker.stat().st_mtime
        except FileNotFoundError:
            remove_build(folder, d, unfinished=True)  # a crashed build (or one being compiled: kept, locked)
            continue
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and info.get("group") == group:
            mine.append((used, d))
    mine.sort(key=lambda t: t[0], reverse=True)
    for _, d in mine[max(0, keep - 1):]:
        remove_build(folder, d)
    for t in folder.glob(".trash-*"):                 # left by a process killed while removing
        with contextlib.suppress(OSError):
            if time.time() - t.stat().st_mtime > 3600:
                shutil.rmtree(t, ignore_errors=True)


def remove_build(folder: Path, d: Path, *, unfinished: bool = False) -> bool:
    """Remove build folder ``d`` if its lock can be taken exclusively at once; return whether it was removed."""
    lock_file = folder / f".{d.name}.lock"
    fd = lock(lock_file, fcntl.LOCK_EX, wait=False)
    if fd is None:
        return False                                  # in use (or being compiled) by another process
    try:
        if unfinished and (d / ".built").is_file():
            return False                              # finished meanwhile
        trash = folder / f".trash-{d.name}-{os.getpid()}"
        try:
            os.rename(d, trash)                       # at once: nobody sees a half-removed build
        except FileNotFoundError:                     # another pruner removed it after we listed it: the lock
            lock_file.unlink(missing_ok=True)         # file is the one we just created; do not leave it behind
            return False
        (folder / f"{d.name}.build.log").unlink(missing_ok=True)
        lock_file.unlink(missing_ok=True)             # while held: waiters retake the lock on a new file
    finally:
        unlock(fd)
    shutil.rmtree(trash, ignore_errors=True)
    log.info("pruned build %s", d.name)
    return True


def keep_log(logfile: Path, what: str) -> Path | None:
    """Copy a failed run's log into ``<cache>/logs`` (its own folder is temporary); return the copy's path."""
    if not logfile.is_file():
        return None
    logs = cache_dir() / "logs"
    try:
        logs.mkdir(parents=True, exist_ok=True)
        dest = logs / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{what}.log"
        shutil.copyfile(logfile, dest)
        old = sorted(logs.glob("*.log"), key=lambda f: f.stat().st_mtime)
        for f in old[:max(0, len(old) - KEEP_LOGS)]:
            f.unlink(missing_ok=True)
    except OSError:
        return None
    return dest
