"""Output files and folders: checked before the work, written atomically, never clobbering the user's data.

Rules every command follows (``docs/architecture.md``):

- The output location is checked *before* any expensive work (:func:`check_out_dir`, :func:`check_out_file`):
  not under a file, on a writable file system, not the current folder or one of its ancestors.
- Output appears all at once (a temporary sibling and a rename); on failure nothing is left behind: no partial
  file, no temporary or backup folder, no parent folder the kit created.
- An existing folder is replaced only if the kit wrote it (it holds the marker file :data:`MARKER`) or the
  user passed ``--force``; an existing file is replaced only with ``--force``, or when the caller knows the kit
  wrote it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cimisa.errors import KitError, OutputError

__all__ = ["MARKER", "atomic_write_bytes", "atomic_write_text", "atomic_dir", "check_out_dir",
           "check_out_file", "read_json_object"]

#: Name of the file that marks a folder as written by the kit (so that re-running a command may replace it).
MARKER = ".cim-kit-output"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _nearest_existing(path: Path) -> Path:
    p = path
    while not os.path.lexists(p):
        if p.parent == p:
            break
        p = p.parent
    return p


def _check_parent(path: Path, what: str) -> None:
    """The nearest existing ancestor of ``path`` must be a folder we can create entries in."""
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        raise OutputError(f"{what} {path}: {base} is not a folder")
    try:   # the only reliable test (root passes os.access on read-only mounts and /proc)
        probe = tempfile.mkdtemp(prefix=".cim-kit-probe.", dir=base)
    except OSError as exc:
        reason = ("not a writable folder" if exc.errno == errno.ENOENT
                  else os.strerror(exc.errno) if exc.errno else str(exc))
        raise OutputError(f"{what} {path}: cannot write in {base} ({reason})") from None
    os.rmdir(probe)


def check_out_dir(path: str | os.PathLike, *, force: bool = False, what: str = "output folder") -> Path:
    """Check that ``path`` can become a kit output folder; return it as an absolute path.

    Raises :class:`OutputError` naming the problem: ``path`` is a file, lies under a file or on a file system
    the kit cannot write, is the current folder or an ancestor of it, or is an existing non-empty folder that
    the kit did not write (unless ``force``).
    """
    p = Path(os.path.abspath(os.fspath(path)))
    if not os.fspath(path):
        raise OutputError(f"{what}: empty path")
    cwd = Path(os.getcwd())
    if p == cwd or p in cwd.parents or p == Path(p.anchor) or p == Path.home():
        raise OutputError(f"{what} {path}: refusing to replace the current folder, one of its parents or the "
                          "home folder; name a new folder")
    if os.path.lexists(p):
        if not p.is_dir() or p.is_symlink():
            raise OutputError(f"{what} {path} exists and is not a folder")
        if not force and not (p / MARKER).is_file() and any(p.iterdir()):
            raise OutputError(f"{what} {path} exists and was not written by the kit; choose another folder or "
                              "pass --force to replace it")
    _check_parent(p, what)
    return p


def check_out_file(path: str | os.PathLike, *, force: bool = False, what: str = "output file",
                   replace_own: bool = False) -> Path:
    """Check that a single output file can be written at ``path``; return it as an absolute path.

    An existing file is refused unless ``force`` (or ``replace_own``: the caller writes a file the kit owns,
    such as a generated document); a folder at ``path`` is always refused.
    """
    if not os.fspath(path):
        raise OutputError(f"{what}: empty path")
    p = Path(os.path.abspath(os.fspath(path)))
    if os.path.lexists(p):
        if p.is_dir():
            raise OutputError(f"{what} {path} is a folder")
        if not (force or replace_own):
            raise OutputError(f"{what} {path} exists; choose another name or pass --force to replace it")
    _check_parent(p, what)
    return p


def _make_parents(path: Path) -> list[Path]:
    """Create the missing parents of ``path``; return the folders created (deepest last)."""
    created = []
    for parent in reversed(path.parents):
        if not parent.exists():
            try:
                parent.mkdir()
            except FileExistsError:
                continue
            except OSError as exc:
                _remove_created(created)
                raise OutputError(f"cannot create {parent}: {os.strerror(exc.errno or errno.EIO)}") from None
            created.append(parent)
    return created


def _remove_created(created: list[Path]) -> None:
    for d in reversed(created):
        with contextlib.suppress(OSError):
            d.rmdir()            # only if still empty


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    created = _make_parents(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        _remove_created(created)
        raise OutputError(f"cannot write {path}: {os.strerror(exc.errno or errno.EIO)}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())    # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        _remove_created(created)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {path}: {os.strerror(exc.errno or errno.EIO)}") from None
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``path`` only if the block finishes without error.

    ``path`` is checked first (:func:`check_out_dir`; callers should also call that before expensive work).
    Files written into the yielded folder appear at ``path`` all at once, with the :data:`MARKER` file; on any
    exception the temporary folder and any parent folder created for it are removed and an existing ``path``
    is left untouched. A replaced folder is removed only after the new one is in place; no backup is left.
    """
    path = check_out_dir(path, force=force)
    created = _make_parents(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        _remove_created(created)
        raise OutputError(f"cannot write {path}: {os.strerror(exc.errno or errno.EIO)}") from None
    os.chmod(tmp, 0o777 & ~_umask())        # mkdtemp creates 0700
    try:
        yield tmp
        (tmp / MARKER).write_text("written by cim-monarch-kit; the kit may replace this folder\n")
        # Re-check: another process may have created the folder meanwhile.
        check_out_dir(path, force=force)
        old = None
        if os.path.lexists(path):
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / "d")
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                os.replace(old / "d", path)
            raise
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_created(created)
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            raise OutputError(f"cannot write {path}: {os.strerror(exc.errno or errno.EIO)}") from None
        raise


def read_json_object(path: str | os.PathLike, error: type[KitError], *, missing: str | None = None,
                     encoding: str = "utf-8") -> dict:
    """Return the JSON object stored in the user's file ``path``; every way it can be unreadable is one ``error``
    naming the file: cannot be read (``missing`` replaces the message when it does not exist), not text in
    ``encoding``, not valid JSON (with line and column), nested too deeply, or not an object."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(missing or f"cannot read {path}: no such file") from None
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw.decode(encoding))
    except UnicodeDecodeError as exc:
        raise error(f"{path} is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise error(f"{path} is not valid JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise error(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data
