"""Analog non-idealities as an option of the golden model, outside the bit-exact contract.

:class:`NoisyMachine` is a :class:`~sw_model.machine.Machine` whose ``WRITE_W`` and ``MVM`` actions model two
effects of a real (e.g. PCM / RRAM) crossbar; every other opcode is the exact one of :mod:`cimisa.semantics`:

* **programming noise** (``prog``): a weight written as the integer ``w`` is stored as the conductance
  ``w + prog * wmax * N(0, 1)`` with ``wmax = 2**(weight_bits-1) - 1``, drawn once when the cell is written and
  kept for every later read (static device-to-device variation). The draw for row ``r`` of array ``a`` comes
  from ``numpy.random.default_rng([seed, 1, a, r])``, so it does not depend on the order of the writes.
* **read noise** (``read``): every driven cell adds an independent ``read * wmax * N(0, 1)`` to its column's
  analog sum on every read (thermal / 1/f noise), i.e. a column summing ``n`` driven rows gets
  ``read * wmax * sqrt(n) * N(0, 1)`` before the ADC. The draws come, in command order, from one generator
  seeded with ``[seed, 2]``.

The noise acts on the analog column sums only: the ADC and the digital shift-add that follow are the exact
model's rule, :func:`cimisa.rules.convert_planes` (``code = clip(floor(colsum / 2**adc_shift), lo, hi)``, then
``sum_b +-2**(b + adc_shift) * code_b``), applied to the noisy sums of all ``input_bits`` bit planes of a batch,
computed in one floating-point matrix product.

Number formats: noise models the default format only (one cell per weight, bit-serial two's complement inputs,
floor; :attr:`cimisa.formats.NumberFormat.is_default`). In any other format a :class:`NoisyMachine` with noise,
or one asked to record column-sum ranges (:attr:`NoisyMachine.observe`), raises :class:`NoiseError` (one
``error:`` line); without either it runs the exact kernel in every format.

Without noise (``prog = read = 0``) an ``MVM`` is the exact model's own kernel,
:func:`cimisa.semantics.mvm` (the batched float64-BLAS :func:`~cimisa.semantics.mvm_acc`), so the results are the
exact golden model's bit for bit; only an ADC calibration pass (:attr:`NoisyMachine.observe`) takes the analog
path without noise, whose sums are then integers held exactly in floating point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cimisa import rules, semantics
from cimisa.config import HwConfig
from cimisa.errors import KitError
from cimisa.isa import Opcode
from sw_model.machine import Machine

__all__ = ["NoiseParams", "NoiseError", "NoisyMachine", "parse_noise", "make_machine"]


class NoiseError(KitError):
    """A noise specification cannot be parsed or is out of range."""


@dataclass(frozen=True)
class NoiseParams:
    """Analog noise levels, as fractions of the largest weight magnitude, and the seed of the draws."""

    prog: float = 0.0
    read: float = 0.0
    seed: int = 0

    def __post_init__(self):
        for name in ("prog", "read"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise NoiseError(f"noise {name} must be a finite number >= 0, not {v!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise NoiseError(f"noise seed must be an integer >= 0, not {self.seed!r}")

    @property
    def active(self) -> bool:
        """Whether any noise is applied."""
        return self.prog > 0 or self.read > 0

    def to_dict(self) -> dict:
        """Return the parameters as JSON-ready data."""
        return {"prog": self.prog, "read": self.read, "seed": self.seed}

    def label(self) -> str:
        """Return a short text form, ``prog=0.02,read=0.01`` (``none`` without noise)."""
        if not self.active:
            return "none"
        return f"prog={self.prog:g},read={self.read:g}"


def parse_noise(text: str | None) -> NoiseParams:
    """Parse ``prog=0.02,read=0.01[,seed=3]`` (any subset; ``none``/empty gives no noise)."""
    if text is None or not str(text).strip() or str(text).strip().lower() in ("none", "0", "off"):
        return NoiseParams()
    values: dict = {}
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, val = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("prog", "read", "seed"):
            raise NoiseError(f"bad noise setting {part!r}: expected prog=<float>, read=<float> or seed=<int>")
        try:
            values[key] = int(val) if key == "seed" else float(val)
        except ValueError:
            raise NoiseError(f"bad noise value {part!r}: {val.strip()!r} is not a number") from None
    return NoiseParams(**values)


class NoisyMachine(Machine):
    """A golden model with seeded programming and read noise on its crossbars (see the module docstring).

    Parameters
    ----------
    cfg : the hardware configuration.
    noise : the noise levels and seed; ``NoiseParams()`` (no noise) gives the exact results.
    """

    def __init__(self, cfg: HwConfig, noise: NoiseParams | None = None):
        super().__init__(cfg, impl="fast")
        self.noise = noise if noise is not None else NoiseParams()
        if self.noise.active:
            _default_format_only(cfg, f"noise ({self.noise.label()})")
        self.wmax = (1 << (cfg.weight_bits - 1)) - 1
        # float32 holds every exact column sum (|sum| <= rows * 2**(weight_bits-1)) when it is below 2**24.
        exact32 = cfg.rows * (1 << (cfg.weight_bits - 1)) < (1 << 24)
        self.dtype = np.float32 if exact32 else np.float64
        self._g: dict[int, np.ndarray] = {}
        self._version: dict[int, int] = {}
        self._gt: dict[int, tuple[int, np.ndarray]] = {}
        self._read_rng = np.random.default_rng([self.noise.seed, 2])
        #: When a dict, every MVM records the range of its analog column sums under ``observe_key``
        #: (``min, max`` over columns, bit planes and tokens): used to calibrate ADC ranges.
        self.observe: dict | None = None
        self.observe_key = None
        self.actions = dict(self.actions)
        self.actions[Opcode.WRITE_W] = self._write_w
        self.actions[Opcode.MVM] = self._mvm

    def __repr__(self) -> str:
        return f"NoisyMachine({self.cfg.name!r}, {self.noise!r}, {self.run_state.name}, index={self.index})"

    def conductance(self, index: int) -> np.ndarray:
        """Return the (rows, cols) analog weights of array ``index`` (zeros until written)."""
        g = self._g.get(index)
        if g is None:
            g = self._g[index] = np.zeros((self.cfg.rows, self.cfg.cols), dtype=self.dtype)
        return g

    def _conductance_t(self, index: int) -> np.ndarray:
        """Return the contiguous transpose (cols, rows) of array ``index``'s conductances (cached per write)."""
        ver = self._version.get(index, 0)
        hit = self._gt.get(index)
        if hit is None or hit[0] != ver:
            hit = self._gt[index] = (ver, np.ascontiguousarray(self.conductance(index).T))
        return hit[1]

    def _write_w(self, st, array, row, col, count, data):
        semantics.write_w(st, array=array, row=row, col=col, count=count, data=data)
        self._version[array] = self._version.get(array, 0) + 1
        vals = np.asarray(data, dtype=np.float64)
        if self.noise.prog > 0:
            rng = np.random.default_rng([self.noise.seed, 1, array, row])
            draw = rng.standard_normal(self.cfg.cols)[col:col + count]
            vals = vals + self.noise.prog * self.wmax * draw
        self.conductance(array)[row, col:col + count] = vals

    def _mvm(self, st, array, row0, nrows, col0, ncols, in_addr, in_stride, out_addr, out_stride, accumulate,
             adc_bits, adc_shift):
        if not self.noise.active and self.observe is None:       # nothing analog to model: the exact kernel
            semantics.mvm(st, array, row0, nrows, col0, ncols, in_addr, in_stride, out_addr, out_stride, accumulate,
                          adc_bits, adc_shift)
            return
        _default_format_only(self.cfg, "recording column-sum ranges (observe)")
        nb = self.cfg.input_bits
        x = st.inbuf[in_addr + in_stride * np.arange(nrows)]
        batch = x.shape[1:]
        x2 = x.reshape(nrows, -1)
        bsz = x2.shape[1]
        wt = self._conductance_t(array)[col0:col0 + ncols, row0:row0 + nrows]   # (ncols, nrows)
        planes = rules.bit_plane_table(nb, self.dtype)[x2 & ((1 << nb) - 1)]   # (nrows, B, nb) 0/1
        colsum = (wt @ planes.reshape(nrows, bsz * nb)).reshape(ncols, bsz, nb)  # analog sum per plane
        if self.noise.read > 0:
            driven = planes.sum(axis=0, dtype=self.dtype)                     # (B, nb) rows driven
            std = (self.noise.read * self.wmax) * np.sqrt(driven)
            colsum += self._read_rng.standard_normal(colsum.shape, dtype=self.dtype) * std[None]
        if self.observe is not None and colsum.size:
            lo_o, hi_o = float(colsum.min()), float(colsum.max())
            old = self.observe.get(self.observe_key)
            if old is not None:
                lo_o, hi_o = min(lo_o, old[0]), max(hi_o, old[1])
            self.observe[self.observe_key] = (lo_o, hi_o)
        acc = rules.convert_planes(colsum, nb, adc_bits, adc_shift).reshape((ncols,) + batch)  # the exact ADC
        dst = out_addr + out_stride * np.arange(ncols)
        st.outbuf[dst] = rules.wrap_acc((st.outbuf[dst] if accumulate else 0) + acc)


def _default_format_only(cfg: HwConfig, what: str) -> None:
    """Raise :class:`NoiseError` unless ``cfg`` has the default number format (module docstring)."""
    if not cfg.fmt.is_default:
        raise NoiseError(f"{what} is modelled for the default number format only, not {cfg.fmt.describe()} "
                         f"({cfg.name}); run without noise")


def make_machine(cfg: HwConfig, noise: NoiseParams | None = None, *, fast: bool = True) -> Machine:
    """Return a golden model for ``cfg``: noisy if ``noise`` is active, else exact.

    ``fast`` selects a :class:`NoisyMachine` without noise (the exact kernel, bit for bit, and able to calibrate
    ADC ranges, :attr:`NoisyMachine.observe`) instead of :class:`~sw_model.machine.Machine`.
    """
    if noise is not None and noise.active:
        return NoisyMachine(cfg, noise)
    return NoisyMachine(cfg, NoiseParams()) if fast else Machine(cfg)
