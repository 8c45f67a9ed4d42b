"""Export the tile's Verilog and compile it for a simulator, once per configuration, into the shared cache.

:func:`build` exports ``cim_tile`` with :func:`hw.export.export_verilog` and compiles it with cocotb's runner into
a cache folder (:mod:`sim.cache`) keyed by simulator, configuration name, ``cfg.arch_hash``, the Verilog's
SHA-256 and the build options: a later call (in this or any other process) with the same configuration and the
same Verilog reuses the build. :func:`held_build` keeps a build from being pruned while it is used.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cimisa import progress
from cimisa.config import HwConfig
from cimisa.fsutil import atomic_write_text
from sim.cache import cache_dir, keep_builds, lock, locked, prune, unlock
from sim.tools import VERILATOR_MAKE_VARS, SimulatorError, check_simulator, failure_reason, log, quiet, tool_env

__all__ = ["TOPLEVEL", "TIMESCALE", "VERILATOR_ARGS", "ICARUS_ARGS", "RECIPE", "Build", "export", "expected_ports",
           "check_ports", "held_build", "build"]

TOPLEVEL = "cim_tile"
TIMESCALE = ("1ns", "1ps")
#: Verilator options: Amaranth's Verilog trips width and style warnings that are harmless here.
VERILATOR_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3")
#: Icarus options (after the runner's ``-g2012``): under Verilog-2005 rules a declaration initialiser
#: (``reg x = 0``) is an event at time 0, which wakes the ``always @*`` blocks of Amaranth's Verilog; under 2012
#: rules it is not, and combinational outputs that depend only on initialised registers stay X.
ICARUS_ARGS = ("-g2005",)
#: A Verilog-2005 wave-dump module for Icarus (the file name comes from ``+dumpfile_path=...``; vvp's ``-fst``
#: selects the format).
ICARUS_DUMP_TOP = "cimsim_dump"
ICARUS_DUMP = """module {top};
  reg [8*4096-1:0] path;
  initial begin
    if ($value$plusargs("dumpfile_path=%s", path)) $dumpfile(path);
    else $dumpfile("{dut}.fst");
    $dumpvars(0, {dut});
  end
endmodule
"""
#: Build products the simulator binary does not need (Verilator objects and precompiled headers: ~150 MB).
BUILD_INTERMEDIATES = ("*.o", "*.gch", "*.a", "*.d")
#: Bump when the build recipe changes in a way the options above do not show (they are part of the cache key).
RECIPE = "2"


# ---- export and build -------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def export(cfg: HwConfig) -> Path:
    """Export ``cim_tile`` for ``cfg`` (once per process) into the cache; return the Verilog file's path."""
    from hw.export import export_verilog  # noqa: PLC0415 (Amaranth loads only when a build is needed)
    out = cache_dir() / "verilog" / f"{cfg.tag}-{cfg.arch_hash}"
    with locked(out.parent / f".{out.name}.lock"):
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            path = Path(export_verilog(cfg, tmp))
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            final = out / digest
            if not (final / path.name).is_file():
                final.mkdir(parents=True, exist_ok=True)
                # the Verilog last: its presence means the folder is complete
                for f in sorted(tmp.iterdir(), key=lambda f: f.name == path.name):
                    os.replace(f, final / f.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final / path.name


def expected_ports(cfg: HwConfig) -> dict[str, tuple[str, int]]:
    """Return the ports the testbench drives and reads: name -> (direction, width), widths from the command set."""
    from cimisa.isa import Isa  # noqa: PLC0415
    isa = Isa.of(cfg)
    return {"clk": ("input", 1), "rst": ("input", 1), "cmd__valid": ("input", 1), "cmd__ready": ("output", 1),
            "cmd__payload": ("input", isa.cmd_layout.size), "res__valid": ("output", 1),
            "res__ready": ("input", 1), "res__payload": ("output", isa.result_shape.width),
            "status": ("output", isa.status_layout.size)}


def check_ports(cfg: HwConfig, verilog: Path) -> None:
    """Check the export's JSON sidecar lists the ports the testbench expects; raise SimulatorError otherwise.

    Catches a command-set change that the RTL does not follow before a build is spent on it. Without a sidecar
    nothing is checked.
    """
    sidecar = verilog.with_suffix(".json")
    if not sidecar.is_file():
        return
    ports = {p["name"]: (p["dir"], int(p["width"])) for p in json.loads(sidecar.read_text()).get("ports", [])}
    want = expected_ports(cfg)
    bad = [f"{n}: expected {d} [{w}], found {ports[n][0]} [{ports[n][1]}]" if n in ports else f"{n}: missing"
           for n, (d, w) in want.items() if ports.get(n) != (d, w)]
    if bad:
        raise SimulatorError(f"{verilog.name} does not have the ports the testbench drives: {'; '.join(bad)}")


@dataclass(frozen=True)
class Build:
    """A compiled tile: simulator, folder, Verilog source, seconds the build took, and whether it was reused."""

    simulator: str
    cfg: HwConfig
    directory: Path
    verilog: Path
    seconds: float
    reused: bool
    waves: bool = False

    def __repr__(self) -> str:
        return (f"Build({self.simulator!r}, {self.cfg.name!r}, {self.directory.name!r}, "
                f"{'reused' if self.reused else f'{self.seconds:.1f} s'})")


def _slug(name: str) -> str:
    """A configuration name as a file-name piece (letters, digits, ``-_.+``; at most 40 characters)."""
    s = re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("._-") or "unnamed"
    return s[:40]


def _build_name(cfg: HwConfig, simulator: str, vhash: str, waves: bool) -> tuple[str, str]:
    """Return the build folder's name and its pruning group (simulator, configuration name, tracing)."""
    options = (RECIPE, VERILATOR_ARGS, VERILATOR_MAKE_VARS, ICARUS_ARGS, ICARUS_DUMP, TIMESCALE)
    recipe = hashlib.sha256(repr(options).encode()).hexdigest()[:8]
    name = (f"{simulator}-{_slug(cfg.name)}-{cfg.tag}-{cfg.arch_hash}-{vhash}-{recipe}"
            + ("-waves" if waves else ""))
    group = json.dumps([simulator, cfg.name, bool(waves)])
    return name, group


#: Times a process retries when the build it needs is removed between compiling it and using it.
_BUILD_ATTEMPTS = 5


@contextlib.contextmanager
def held_build(cfg: HwConfig, simulator: str = "verilator", *, waves: bool = False) -> Iterator[Build]:
    """Yield a finished build of ``cfg`` for ``simulator``, compiling it if needed; no process prunes it while
    the block runs (it is held with a shared lock). :func:`sim.runner.run` holds its build itself; hold it around a
    :func:`build` ... :func:`sim.runner.run` sequence to keep the build reported by the former."""
    check_simulator(simulator)
    keep = keep_builds()
    verilog = export(cfg)
    check_ports(cfg, verilog)
    name, group = _build_name(cfg, simulator, verilog.parent.name, waves)
    folder = cache_dir() / "build"
    bdir = folder / name
    marker = bdir / ".built"
    lock_file = folder / f".{name}.lock"
    seconds = None
    for _ in range(_BUILD_ATTEMPTS):
        fd = lock(lock_file, fcntl.LOCK_SH)
        if marker.is_file():
            break
        unlock(fd)
        fd = lock(lock_file, fcntl.LOCK_EX)
        try:
            if not marker.is_file():
                seconds = _compile(cfg, simulator, waves, verilog, bdir, group)
            fcntl.flock(fd, fcntl.LOCK_SH)            # keep it: a pruner cannot take it from a user
        except BaseException:
            unlock(fd)
            raise
        if marker.is_file():
            break
        unlock(fd)                                    # removed before we held it shared: again
    else:
        raise SimulatorError(f"the build {bdir} was removed {_BUILD_ATTEMPTS} times while this process waited "
                             f"for it (other processes pruning the cache; raise CIMSIM_KEEP_BUILDS)")
    try:
        if seconds is None:
            try:
                seconds = float(json.loads(marker.read_text()).get("seconds", 0.0))
            except (OSError, ValueError, AttributeError):
                seconds = 0.0
            with contextlib.suppress(OSError):
                os.utime(marker)                      # most recently used, for pruning
            b = Build(simulator, cfg, bdir, verilog, seconds, True, waves)
        else:
            b = Build(simulator, cfg, bdir, verilog, seconds, False, waves)
        prune(folder, group, keep=keep, current=bdir)
        yield b
    finally:
        unlock(fd)


def _compile(cfg: HwConfig, simulator: str, waves: bool, verilog: Path, bdir: Path, group: str) -> float:
    """Compile the tile into ``bdir`` (the caller holds its lock exclusively); return the seconds it took."""
    shutil.rmtree(bdir, ignore_errors=True)           # what a crashed build left
    t0 = time.perf_counter()
    log.info("building %s for %s with %s in %s", TOPLEVEL, cfg.name, simulator, bdir)
    logfile = bdir.parent / f"{bdir.name}.build.log"
    bdir.mkdir(parents=True)
    try:
        with progress.stage(f"sim: {simulator} build of {verilog.name}"), tool_env():
            from cocotb_tools.runner import get_runner
            r = get_runner(simulator)
            quiet(r)
            args = list(VERILATOR_ARGS if simulator == "verilator" else ICARUS_ARGS)
            sources = [verilog]
            runner_waves = waves
            if simulator == "icarus" and waves:
                # cocotb's own dump module declares a SystemVerilog `string`, which -g2005 rejects.
                dump = bdir / f"{ICARUS_DUMP_TOP}.v"
                dump.write_text(ICARUS_DUMP.format(top=ICARUS_DUMP_TOP, dut=TOPLEVEL))
                sources.append(dump)
                args += ["-s", ICARUS_DUMP_TOP]
                runner_waves = False
            try:
                r.build(sources=sources, hdl_toplevel=TOPLEVEL, build_dir=bdir, build_args=args,
                        timescale=TIMESCALE, waves=runner_waves, always=True, log_file=logfile)
            except (RuntimeError, SystemExit) as exc:
                why = failure_reason(logfile, str(exc) or "no reason given")
                raise SimulatorError(f"{simulator} build of {verilog.name} failed ({why}); log: {logfile}") from None
        seconds = time.perf_counter() - t0
        for pattern in BUILD_INTERMEDIATES:           # the simulator binary needs none of them
            for f in bdir.glob(pattern):
                f.unlink(missing_ok=True)
        atomic_write_text(bdir / ".built", json.dumps({"seconds": seconds, "verilog": str(verilog),
                                                       "group": group}))
    except BaseException:
        shutil.rmtree(bdir, ignore_errors=True)
        raise
    log.info("built in %.1f s", seconds)
    return seconds


def build(cfg: HwConfig, simulator: str = "verilator", *, waves: bool = False) -> Build:
    """Return a build of ``cfg``'s tile for ``simulator``, compiling it only if the cache has none.

    The cache key is the simulator, the configuration's name, ``cfg.arch_hash``, the Verilog's hash, the build
    options and ``waves`` (Verilator needs tracing compiled in). The build is not held after the call:
    :func:`sim.runner.run` holds it while it simulates.
    """
    with held_build(cfg, simulator, waves=waves) as b:
        return b

