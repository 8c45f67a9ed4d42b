"""The int8 engine of the batched MVM kernel: every bit plane's column sums of a batch in one exact int8 product.

A bit plane's column sum is ``sum_r w[r] * bit[r]``: with weights in ``-128..127`` (``weight_bits <= 8``) and bits
0/1 it is a product of two int8 matrices accumulated in int32, exact while ``128 * nrows < 2**31``. torch's
``_int_mm`` (oneDNN; VNNI instructions where the processor has them) computes the sums of every plane of every
input vector in one call, several times faster than the float64 BLAS products of the packed forms of
:mod:`cimisa.kernel` (``python bench/bench_golden.py`` prints both). :func:`cimisa.kernel.mvm_acc` then applies the
ADC and the shift-add to the int32 sums in place.

Which engine runs (:func:`use`, :func:`mode`): ``"auto"`` (the default) takes this one for the MVMs on which it
is expected to be faster (:func:`cimisa.kernel._int8_cheaper`, :func:`cimisa.kernel_formats._wants_int8`) when
torch is loaded and passes a check, and otherwise loads torch once the numpy forms have spent :data:`LOAD_AFTER`
seconds on such MVMs (loading torch costs about a second: a short single-vector run does not pay for it);
``"int8"`` loads it at once (a ``RuntimeError`` when it cannot); ``"numpy"`` never does. Every engine gives the same
bits; the tests check each against the rules and the naive model (``tests/test_rules.py``,
``tests/test_golden_batch.py``) and catch mutants of each (``tests/test_mutants.py``).
"""

from __future__ import annotations

import contextlib
import functools
import sys

import numpy as np

__all__ = ["MODES", "LOAD_AFTER", "use", "mode", "active", "fits", "weights", "as_int8", "plane_sums", "product",
           "note_numpy_time"]

#: The engine settings of :func:`use`.
MODES = ("auto", "int8", "numpy")
#: Seconds of numpy-form MVMs after which ``"auto"`` loads torch.
LOAD_AFTER = 1.0
#: Rows up to which int32 accumulation is exact (``128 * rows < 2**31``), with a wide margin.
MAX_ROWS = 1 << 20

_state = {"mode": "auto", "spent": 0.0}


def mode() -> str:
    """Return the engine setting: ``"auto"``, ``"int8"`` or ``"numpy"``."""
    return _state["mode"]


@contextlib.contextmanager
def _restore(previous):
    try:
        yield
    finally:
        _state["mode"] = previous


def use(name: str):
    """Select the engine (:data:`MODES`) from now on; also a context manager that restores the previous setting.

    >>> with use("numpy"):
    ...     mode()
    'numpy'
    """
    if name not in MODES:
        raise ValueError(f"kernel engine must be one of {', '.join(MODES)}, not {name!r}")
    if name == "int8" and _torch(load=True) is None:
        raise RuntimeError("the int8 kernel engine needs torch with a working torch._int_mm")
    previous, _state["mode"] = _state["mode"], name
    return _restore(previous)


@functools.lru_cache(maxsize=1)
def _checked_torch():
    """Import torch and check its int8 product against numpy on a random case; return torch, or None."""
    if sys.byteorder != "little":                   # the planes are bytes of little-endian words
        return None
    try:
        import torch  # noqa: PLC0415 - optional at run time; loading it costs about a second
        rng = np.random.default_rng(1)
        a = rng.integers(-128, 128, (37, 300), dtype=np.int8)
        b = rng.integers(0, 2, (300, 21), dtype=np.int8)
        got = torch._int_mm(torch.from_numpy(a), torch.from_numpy(b)).numpy()
        if got.dtype != np.int32 or not np.array_equal(got, a.astype(np.int64) @ b.astype(np.int64)):
            return None
        return torch
    except Exception:  # noqa: BLE001 - no torch, no _int_mm on this build or processor: the numpy forms
        return None


def _torch(load: bool):
    if not load and "torch" not in sys.modules:
        return None
    return _checked_torch()


def active(load: bool = False):
    """Return torch when the int8 engine is to run now (the setting, torch loaded and checked), else None;
    ``load``: load torch if the setting allows it."""
    m = _state["mode"]
    if m == "numpy":
        return None
    return _torch(load or m == "int8" or _state["spent"] >= LOAD_AFTER)


def note_numpy_time(seconds: float) -> None:
    """Count ``seconds`` spent by the numpy forms on an MVM this engine would have taken (``"auto"`` loads
    torch after :data:`LOAD_AFTER` seconds)."""
    _state["spent"] += seconds


def fits(a: np.ndarray) -> bool:
    """Whether ``a`` is not empty and every value lies in ``-128..127`` (int8)."""
    return bool(a.size) and int(a.min()) >= -128 and int(a.max()) <= 127


def weights(w: np.ndarray):
    """Return ``w.T`` as a contiguous int8 torch tensor, or None when a weight lies outside ``-128..127`` or the
    window has more than :data:`MAX_ROWS` rows (torch must be loaded)."""
    return None if w.shape[0] > MAX_ROWS else as_int8(w.T)


@functools.lru_cache(maxsize=16)
def _plane_table(nbytes: int) -> np.ndarray:
    """``t[v]``, ``v < 256``: a little-endian word of ``nbytes`` bytes whose byte ``b`` is bit ``b`` of ``v``."""
    v = np.arange(256, dtype=np.uint64)
    t = sum(((v >> np.uint64(b)) & np.uint64(1)) << np.uint64(8 * b) for b in range(min(8, nbytes)))
    return t.astype({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[nbytes])


def planes_per_vector(nb: int) -> int:
    """Return how many planes :func:`plane_sums` gives per vector for ``nb``-bit inputs (``nb`` rounded up to
    1, 2, 4 or a multiple of 8; the planes past ``nb`` are zero)."""
    return 1 << (nb - 1).bit_length() if nb <= 8 else -(-nb // 8) * 8


def plane_sums(w8, u: np.ndarray, nb: int) -> np.ndarray:
    """Return the column sums of every bit plane: ``(ncols, B, P)`` int32 (``P``: :func:`planes_per_vector`),
    ``[c, j, b] = sum_r w[r, c] * bit_b(u[r, j])``; ``w8``: :func:`weights`, ``u`` (nrows, B): the inputs' bit
    patterns ``0 .. 2**nb - 1``.

    The planes are looked up one byte per bit (:func:`_plane_table`), so that the int8 matrix of planes
    ``(nrows, B * P)`` is a view of the looked-up words."""
    nrows, b = u.shape
    p = planes_per_vector(nb)
    if p <= 8:
        planes = np.take(_plane_table(p), u & 255)                            # (nrows, B) words of p bytes
    else:
        planes = np.empty((nrows, b, p // 8), dtype=np.uint64)
        table = _plane_table(8)
        for k in range(p // 8):
            np.take(table, (u >> (8 * k)) & 255, out=planes[:, :, k])
    return product(w8, planes.view(np.uint8).reshape(nrows, b * p)).reshape(w8.shape[0], b, p)


def product(a8, b: np.ndarray) -> np.ndarray:
    """Return ``a8 @ b`` as int32 numpy: ``a8`` an int8 torch tensor (:func:`weights`), ``b`` a numpy array of
    int8 or uint8 values in ``-128..127`` (its bytes are read as int8), exact while no sum leaves int32."""
    torch = _checked_torch()
    return torch._int_mm(a8, torch.from_numpy(b).view(torch.int8)).numpy()


def as_int8(a: np.ndarray):
    """Return ``a`` (2-D) as a contiguous int8 torch tensor, or None when a value lies outside ``-128..127``."""
    torch = _checked_torch()
    if torch is None or not fits(a):
        return None
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int8))
