"""Thread settings shared by every command that computes (``--threads N``).

torch and the BLAS behind numpy start one worker thread per core by default, and torch's OpenMP workers spin
while they wait. On a machine whose cores are shared with other work, a worker that lost its core stalls the
others: calibration ran 3-15x slower and a 1024x1024 projection 60x slower than with one thread (figures in
``docs/conventions.md``, section "Threads"). Every front end therefore applies one setting, in one place,
:func:`set_threads`:

- the environment variables ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` (and friends),
  which libraries read when they load; :func:`early` sets them from the command line before the heavy imports;
- ``torch.set_num_threads`` when torch is already imported, or as soon as it is imported (an import hook);
- numpy's BLAS pool through ``threadpoolctl`` when numpy is already loaded and ``threadpoolctl`` is installed.

The default (:func:`default_threads`) is the usable cores, at most 4 (2 on a 2-core machine), with idle OpenMP
workers sleeping instead of spinning (``OMP_WAIT_POLICY=PASSIVE``): spinning workers are what made extra threads
so slow on a busy machine.
``CIM_KIT_THREADS`` or ``OMP_NUM_THREADS`` in the environment override the default; ``--threads`` overrides both.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

__all__ = ["ENV_VARS", "THREADS_HELP", "available_cpus", "default_threads", "set_threads", "configured",
           "early", "add_threads_option"]

#: Variables read by OpenMP, OpenBLAS, MKL, Accelerate, numexpr and BLIS when they load.
ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
            "NUMEXPR_NUM_THREADS", "BLIS_NUM_THREADS")
#: Largest default (more threads gain little on these model sizes).
MAX_DEFAULT = 4
#: Largest accepted ``--threads``.
MAX_THREADS = 1024
THREADS_HELP = ("worker threads of torch and numpy's BLAS (default: $CIM_KIT_THREADS, else $OMP_NUM_THREADS, "
                "else the usable cores, at most 4: {default} here)")

_configured: int | None = None


def available_cpus() -> int:
    """Return the number of cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _env_int(name: str) -> int | None:
    try:
        v = int(os.environ.get(name, "").strip())
    except ValueError:
        return None
    return v if 1 <= v <= MAX_THREADS else None


def default_threads() -> int:
    """Return the default thread count: ``$CIM_KIT_THREADS``, else ``$OMP_NUM_THREADS``, else the usable cores,
    at most 4."""
    for name in ("CIM_KIT_THREADS", "OMP_NUM_THREADS"):
        v = _env_int(name)
        if v is not None:
            return v
    return max(1, min(MAX_DEFAULT, available_cpus()))


def configured() -> int | None:
    """Return the thread count set by :func:`set_threads` (None if it was not called)."""
    return _configured


def _apply_torch(torch) -> None:
    if _configured is None:
        return
    try:
        torch.set_num_threads(_configured)
    except Exception:  # noqa: BLE001 - a torch build without the call: nothing to set
        pass
    try:
        torch.set_num_interop_threads(_configured)
    except Exception:  # noqa: BLE001 - only allowed before the first parallel work; then keep torch's
        pass


class _TorchHook(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import hook: set torch's thread count right after ``import torch`` completes."""

    def __init__(self):
        self._busy = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torch" or self._busy:
            return None
        self._busy = True
        try:
            spec = importlib.util.find_spec("torch")
        finally:
            self._busy = False
        if spec is None or spec.loader is None:
            return None
        self._loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _remove_hook()
        _apply_torch(module)


_hook: _TorchHook | None = None


def _remove_hook() -> None:
    global _hook
    if _hook is not None and _hook in sys.meta_path:
        sys.meta_path.remove(_hook)
    _hook = None


def _set_env(n: int) -> None:
    for name in ENV_VARS:
        os.environ[name] = str(n)
    # Idle OpenMP workers sleep instead of spinning: with spinning workers, a thread that lost its core to
    # other work stalls the rest (2 threads 5x slower than 1 on a busy 2-core machine; sleeping: as fast or
    # faster). A value the user set stays.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def set_threads(n: int | None = None) -> int:
    """Use ``n`` worker threads (:func:`default_threads` when None) in torch and numpy's BLAS; return ``n``.

    Safe to call more than once; the last call wins where the libraries allow it (torch's inter-op pool is fixed
    once it has been used).
    """
    global _configured, _hook
    n = default_threads() if n is None else int(n)
    if n < 1:
        raise ValueError(f"threads must be positive, not {n}")
    _configured = n
    _set_env(n)
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "set_num_threads"):
        _apply_torch(torch)
    elif _hook is None:
        _hook = _TorchHook()
        sys.meta_path.insert(0, _hook)
    if "numpy" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits  # noqa: PLC0415
        except ImportError:
            pass                     # numpy read OPENBLAS_NUM_THREADS etc. when it loaded
        else:
            threadpool_limits(n)
    return n


def early(argv: list[str] | None = None) -> None:
    """Set the environment variables from ``--threads N`` in ``argv`` (or the default) before heavy imports.

    Called at the top of each front end's ``main`` so numpy's BLAS, which reads them only when it loads, starts
    with the right pool; a value that does not parse is left to the option parser to report.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    n = None
    for i, a in enumerate(args):
        text = None
        if a == "--threads" and i + 1 < len(args):
            text = args[i + 1]
        elif a.startswith("--threads="):
            text = a.split("=", 1)[1]
        if text is not None:
            try:
                v = int(text)
            except ValueError:
                continue
            if 1 <= v <= MAX_THREADS:
                n = v
    if n is None and not any(_env_int(v) for v in ("CIM_KIT_THREADS",)) and _env_int("OMP_NUM_THREADS"):
        return                       # the user's own OMP_NUM_THREADS stays as it is
    _set_env(n if n is not None else default_threads())


def add_threads_option(parser) -> None:
    """Add ``--threads N`` to ``parser`` (default None: :func:`default_threads`)."""
    import argparse  # noqa: PLC0415

    def threads(text: str) -> int:
        try:
            v = int(str(text).strip(), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, not {text!r}") from None
        if not 1 <= v <= MAX_THREADS:
            raise argparse.ArgumentTypeError(f"must be an integer in 1..{MAX_THREADS}, not {text!r}")
        return v
    parser.add_argument("--threads", type=threads, default=None, metavar="N",
                        help=THREADS_HELP.format(default=default_threads()))
