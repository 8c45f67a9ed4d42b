"""The sweep folder: resume rules and the cache of finished points.

Layout of ``--out DIR``::

    DIR/.cim-kit-output        the kit's marker (docs/conventions.md)
    DIR/sweep.json             the grid's name, content hash and size, the kit version
    DIR/points/<id>.json       one finished point: its figures or its one-line error (id: the point's hash)
    DIR/results.parquet, results.csv, pareto_*.png    written from the cache when the sweep ends

A sweep folder is never written all at once: points arrive one by one, each file through a temporary file and
a rename (:func:`cimisa.fsutil.atomic_write_text`), so an interrupted sweep leaves only whole point files.
Re-running into the folder (:func:`open_sweep`): the same grid resumes; another grid, another kit output or a
folder the kit did not write is refused unless ``--force`` (another sweep's cached points are kept: they are
keyed by content, so they stay valid; anything else is removed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from cimisa.errors import OutputError
from cimisa.fsutil import MARKER, atomic_write_text, check_out_dir

__all__ = ["SWEEP_FILE", "POINTS_DIR", "open_sweep", "read_points", "write_point", "model_key"]

SWEEP_FILE = "sweep.json"
POINTS_DIR = "points"
#: Model files up to this size are hashed by content; larger ones by size and modification time.
HASH_LIMIT = 64 << 20


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        return None


def open_sweep(out: str | os.PathLike, grid, *, force: bool = False) -> tuple[Path, bool]:
    """Prepare the sweep folder for ``grid`` before any work; return ``(folder, resumed)``."""
    path = check_out_dir(out, force=force)        # a non-kit, non-empty folder needs --force
    head = {"name": grid.name, "grid_hash": grid.hash, "points": grid.size, "source": grid.source}
    resumed = False
    if path.is_dir() and any(path.iterdir()):
        old = _read_json(path / SWEEP_FILE)
        is_kit = (path / MARKER).is_file()
        if is_kit and isinstance(old, dict) and old.get("grid_hash") == grid.hash:
            resumed = True
        elif not force:
            what = (f"the sweep {old.get('name')!r} of another grid" if is_kit and isinstance(old, dict)
                    else "another kit output" if is_kit else "files the kit did not write")
            raise OutputError(f"output folder {out} holds {what}; choose another folder or pass --force to start "
                              "over")
        else:
            keep = POINTS_DIR if is_kit and isinstance(old, dict) else None
            for child in path.iterdir():
                if child.name == keep:
                    continue
                try:
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
                except OSError as exc:
                    raise OutputError(f"cannot clear {child}: {exc.strerror or exc}") from None
    try:
        (path / POINTS_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    if not (path / MARKER).is_file():
        atomic_write_text(path / MARKER, "written by cim-monarch-kit; the kit may replace this folder\n")
    atomic_write_text(path / SWEEP_FILE, json.dumps(head, indent=1, sort_keys=True) + "\n")
    return path, resumed


def read_points(folder: Path, ids) -> dict[str, dict]:
    """Return the cached records of ``ids`` (unreadable or foreign files count as missing)."""
    out = {}
    for pid in ids:
        rec = _read_json(folder / POINTS_DIR / f"{pid}.json")
        if isinstance(rec, dict) and rec.get("id") == pid and isinstance(rec.get("figures"), dict):
            out[pid] = rec
    return out


def write_point(folder: Path, pid: str, figures: dict, error: str | None) -> dict:
    """Cache one finished point atomically; return its record."""
    rec = {"id": pid, "figures": figures, "error": error}
    atomic_write_text(folder / POINTS_DIR / f"{pid}.json", json.dumps(rec, sort_keys=True) + "\n")
    return rec


def model_key(model: str) -> Any:
    """What identifies a model's content for the cache: a built-in name itself; a folder's files by content.

    Files up to :data:`HASH_LIMIT` bytes are hashed (SHA-256); larger ones count by size and modification time.
    """
    from mapper.models import ZOO, resolve_source  # noqa: PLC0415
    if model in ZOO:
        return model
    _, _, folder = resolve_source(model)
    files = []
    for p in sorted(q for q in Path(folder).rglob("*") if q.is_file()):
        st = p.stat()
        if st.st_size <= HASH_LIMIT:
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            digest = f"mtime:{st.st_mtime_ns}"
        files.append([p.relative_to(folder).as_posix(), st.st_size, digest])
    return {"files": files}
