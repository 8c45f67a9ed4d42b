"""Number formats of the tile: how a weight is held in cells, how an input drives the rows, how the ADC rounds.

The one definition of every format rule (numpy and plain Python integers). :class:`NumberFormat` is derived from
the hardware configuration (:meth:`NumberFormat.of`, :attr:`cimisa.config.HwConfig.fmt`); the golden models,
the RTL generator, the compiler and the cost model read the layout from it and never restate it.
``docs/isa.md`` ("Number formats") explains it with figures.

Weights (``weight_encoding``, ``cell_bits``)
  A logical weight ``w`` (``weight_bits``-bit two's complement, as WRITE_W carries it) is held in ``P =``
  :attr:`~NumberFormat.cols_per_weight` physical cells of ``cell_bits`` bits each, in *adjacent columns*:
  logical column ``c`` of an array is physical columns ``c*P .. c*P + P-1`` (:meth:`~NumberFormat.cells`).

  * ``twos``: ``S = ceil(weight_bits / cell_bits)`` slices of the two's complement pattern, LSB slice first; the
    low slices are unsigned cells ``0..2**cell_bits-1``, the top slice a signed cell (two's complement of its
    width). ``cell_bits = weight_bits`` (the default) is one signed cell per weight.
  * ``differential``: a pair of unsigned slices per magnitude slice, ``w+ = max(w, 0)`` and ``w- = max(-w, 0)``,
    ``S = ceil((weight_bits-1) / cell_bits)`` slices each (``P = 2S``: the ``+`` slices, then the ``-`` slices).
    Weights saturate to the symmetric range ``-(2**(weight_bits-1)-1)..`` on programming (the compiler's
    quantisation never produces ``-2**(weight_bits-1)``).
  * ``offset``: the unsigned pattern ``u = w + 2**(weight_bits-1)`` in ``S = ceil(weight_bits / cell_bits)``
    unsigned slices, and one *bias column* per array (the array's last physical column, every cell
    :attr:`~NumberFormat.bias_cell`): its converted value, weighted :attr:`~NumberFormat.bias_weight`, removes
    the offset ``2**(weight_bits-1) * sum(x)`` from every logical column.

  An array of ``cols`` physical columns holds :meth:`~NumberFormat.logical_cols` weights per row.

Inputs (``input_encoding``, ``dac_bits``)
  An input drives the rows in :attr:`~NumberFormat.digits` cycles; cycle ``d`` drives each row with the integer
  :meth:`~NumberFormat.drive` ``(x)[d]`` and the digital side weighs its conversions by
  :attr:`~NumberFormat.digit_weights` ``[d]``, so ``sum_d drive_d(x) * digit_weight_d == x``.

  * ``twos`` (``dac_bits = 1``: today's bit-serial drive): the low ``input_bits-1`` bits of the two's complement
    pattern in ``dac_bits``-bit digits (LSB first, drive ``0..2**dac_bits-1``, weight ``2**(dac_bits*d)``), then
    the sign bit as its own digit (drive 0/1, weight ``-2**(input_bits-1)``). Every drive is unipolar.
  * ``sign-magnitude``: the magnitude ``min(|x|, 2**(input_bits-1)-1)`` in ``dac_bits``-bit digits, each row
    driven with the sign of ``x`` (bipolar drive ``-(2**k-1)..2**k-1``). Inputs saturate to the symmetric range.

ADC (``adc_rounding``, per MVM ``adc_bits`` and ``adc_shift``)
  Each cycle's sum ``S`` of each physical column is converted to ``clip(round(S / 2**adc_shift), range)``
  (:func:`cimisa.rules.adc_code`): ``floor`` or ``nearest`` (round half up); the range is *unsigned*
  ``0..2**adc_bits-1`` where the sum cannot be negative (an unsigned cell column driven unipolar:
  :meth:`~NumberFormat.unsigned_sum`), else signed ``-2**(adc_bits-1)..2**(adc_bits-1)-1``. The column's value is
  ``sum_d digit_weight_d * (code_d << adc_shift)`` and the logical column's value is ``sum_p slice_weight_p *
  value_p`` (+ the bias column's, weighted :attr:`~NumberFormat.bias_weight`): :meth:`NumberFormat.mvm_column`
  is the scalar definition. With the defaults (``twos`` weights in one cell, ``twos`` bit-serial inputs,
  ``floor``) this is exactly the kit's original MVM.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from cimisa import rules

__all__ = ["WEIGHT_ENCODINGS", "INPUT_ENCODINGS", "ADC_ROUNDINGS", "NumberFormat", "format_violations"]

#: How a signed weight is held in cells.
WEIGHT_ENCODINGS = ("twos", "differential", "offset")
#: How an input drives the rows.
INPUT_ENCODINGS = ("twos", "sign-magnitude")
#: How the ADC rounds a column sum divided by its step.
ADC_ROUNDINGS = ("floor", "nearest")


def format_violations(weight_bits: int, input_bits: int, cell_bits: int, weight_encoding, input_encoding,
                      dac_bits: int, adc_rounding) -> list[str]:
    """Return the rules the format settings break (the integers are already known to be in their LIMITS)."""
    out = []
    if weight_encoding not in WEIGHT_ENCODINGS:
        out.append(f"weight_encoding must be one of {', '.join(WEIGHT_ENCODINGS)}, not {weight_encoding!r}")
    if input_encoding not in INPUT_ENCODINGS:
        out.append(f"input_encoding must be one of {', '.join(INPUT_ENCODINGS)}, not {input_encoding!r}")
    if adc_rounding not in ADC_ROUNDINGS:
        out.append(f"adc_rounding must be one of {', '.join(ADC_ROUNDINGS)}, not {adc_rounding!r}")
    if weight_encoding in WEIGHT_ENCODINGS:
        top = weight_bits - (weight_encoding == "differential")
        if cell_bits > top:
            out.append(f"cell_bits must be at most {top} for {weight_encoding} {weight_bits}-bit weights "
                       f"(0: one cell per weight), not {cell_bits}")
    if dac_bits > max(1, input_bits - 1):
        out.append(f"dac_bits must be at most {max(1, input_bits - 1)} (the input's magnitude bits), not {dac_bits}")
    return out


@dataclass(frozen=True)
class NumberFormat:
    """The number formats of one configuration (module docstring). ``cell_bits`` 0 means one cell per weight."""

    weight_bits: int
    input_bits: int
    cell_bits: int = 0
    weight_encoding: str = "twos"
    input_encoding: str = "twos"
    dac_bits: int = 1
    adc_rounding: str = "floor"

    @classmethod
    def of(cls, cfg) -> NumberFormat:
        """Return the format of the configuration ``cfg`` (a :class:`cimisa.config.HwConfig`)."""
        return cls(cfg.weight_bits, cfg.input_bits, cfg.cell_bits, cfg.weight_encoding, cfg.input_encoding,
                   cfg.dac_bits, cfg.adc_rounding)

    # ---- weights ---------------------------------------------------------------------------------------------
    @functools.cached_property
    def _mag_bits(self) -> int:
        """Bits of the pattern that is sliced: the weight (twos, offset) or its magnitude (differential)."""
        return self.weight_bits - (self.weight_encoding == "differential")

    @functools.cached_property
    def bits_per_cell(self) -> int:
        """Bits of one cell (``cell_bits``, or the whole pattern when 0).

        >>> NumberFormat(8, 8).bits_per_cell, NumberFormat(8, 8, 0, "differential").bits_per_cell
        (8, 7)
        """
        return self.cell_bits or self._mag_bits

    @functools.cached_property
    def slices(self) -> int:
        """Slices ``S`` of one weight (of each half of a differential pair).

        >>> NumberFormat(8, 8, 1, "differential").slices, NumberFormat(8, 8, 2).slices, NumberFormat(8, 8, 3).slices
        (7, 4, 3)
        """
        return -(-self._mag_bits // self.bits_per_cell)

    @functools.cached_property
    def cols_per_weight(self) -> int:
        """Physical columns ``P`` of one logical weight column (``2S`` for differential pairs, else ``S``)."""
        return self.slices * (2 if self.weight_encoding == "differential" else 1)

    @functools.cached_property
    def bias_cols(self) -> int:
        """Physical columns per array that hold no weights: the bias column of ``offset`` (else 0)."""
        return 1 if self.weight_encoding == "offset" else 0

    def logical_cols(self, cols: int) -> int:
        """Return the weights per row that an array of ``cols`` physical columns holds.

        >>> NumberFormat(8, 8).logical_cols(256), NumberFormat(8, 8, 1, "differential").logical_cols(256)
        (256, 18)
        >>> NumberFormat(8, 8, 2, "offset").logical_cols(256)     # 4 slices, one bias column
        63
        """
        return (cols - self.bias_cols) // self.cols_per_weight

    @property
    def is_default(self) -> bool:
        """Whether this is the kit's original format (one signed cell per weight, bit-serial two's complement
        inputs, floor): the MVM kernel's packed fast paths restate exactly that one."""
        return (self.weight_encoding == "twos" and self.slices == 1 and self.input_encoding == "twos"
                and self.dac_bits == 1 and self.adc_rounding == "floor")

    @functools.cached_property
    def weight_range(self) -> tuple[int, int]:
        """The weights the cells can hold (WRITE_W saturates others: only ``differential`` has any).

        >>> NumberFormat(4, 8).weight_range, NumberFormat(4, 8, 1, "differential").weight_range
        ((-8, 7), (-7, 7))
        """
        lo, hi = rules.signed_range(self.weight_bits)
        return (-hi, hi) if self.weight_encoding == "differential" else (lo, hi)

    @functools.cached_property
    def slice_weights(self) -> tuple[int, ...]:
        """The weight of each of the ``P`` physical columns of a logical column in its value.

        >>> NumberFormat(4, 8, 1, "differential").slice_weights
        (1, 2, 4, -1, -2, -4)
        >>> NumberFormat(8, 8, 3).slice_weights
        (1, 8, 64)
        """
        cb = self.bits_per_cell
        pos = tuple(1 << (cb * p) for p in range(self.slices))
        return pos + tuple(-v for v in pos) if self.weight_encoding == "differential" else pos

    @functools.cached_property
    def cell_ranges(self) -> tuple[tuple[int, int], ...]:
        """The range of each of the ``P`` cells of a weight (the top ``twos`` slice is signed, all others not).

        >>> NumberFormat(8, 8, 3).cell_ranges
        ((0, 7), (0, 7), (-2, 1))
        >>> NumberFormat(4, 8).cell_ranges
        ((-8, 7),)
        """
        cb = self.bits_per_cell
        out = []
        for p in range(self.cols_per_weight):
            q = p % self.slices
            width = min(cb, self._mag_bits - cb * q)
            signed = self.weight_encoding == "twos" and q == self.slices - 1
            out.append(rules.signed_range(width) if signed else (0, (1 << width) - 1))
        return tuple(out)

    @functools.cached_property
    def bias_cell(self) -> int:
        """The value of every cell of the ``offset`` bias column (0 without one): ``2**(weight_bits-1)`` as held
        by the top slice, so that ``bias_cell * 2**(cell_bits*(S-1)) == 2**(weight_bits-1)``."""
        if not self.bias_cols:
            return 0
        return 1 << (self.weight_bits - 1 - self.bits_per_cell * (self.slices - 1))

    @functools.cached_property
    def bias_weight(self) -> int:
        """The weight of the bias column's value in every logical column's value (0 without one)."""
        return -(1 << (self.bits_per_cell * (self.slices - 1))) if self.bias_cols else 0

    def cells(self, w):
        """Return the cells of the weights ``w``: a trailing axis of ``P`` (a tuple for one integer).

        >>> NumberFormat(4, 8, 1, "differential").cells(-5)
        (0, 0, 0, 1, 0, 1)
        >>> NumberFormat(8, 8, 3).cells(np.array([-100, 77])).tolist()      # -100 = 0b10_011_100
        [[4, 3, -2], [5, 1, 1]]
        >>> NumberFormat(4, 8, 2, "offset").cells(-8), NumberFormat(4, 8, 1, "differential").cells(-8)
        ((0, 0), (0, 0, 0, 1, 1, 1))
        """
        scalar = not isinstance(w, np.ndarray)
        a = np.asarray(w, dtype=np.int64)
        lo, hi = self.weight_range
        a = np.clip(a, lo, hi)
        cb, mask = self.bits_per_cell, (1 << self.bits_per_cell) - 1
        if self.weight_encoding == "differential":
            pats = (np.maximum(a, 0), np.maximum(-a, 0))
        else:
            pats = (a + (1 << (self.weight_bits - 1)) if self.weight_encoding == "offset" else a,)
        cols = []
        for pat in pats:
            for q in range(self.slices):
                if self.weight_encoding == "twos" and q == self.slices - 1:
                    cols.append(pat >> (cb * q))                  # the signed top slice (arithmetic shift)
                else:
                    cols.append((pat >> (cb * q)) & mask)
        out = np.stack(cols, axis=-1)
        return tuple(int(v) for v in out) if scalar else out

    def weight_of_cells(self, cells) -> int:
        """Return the weight a tuple of ``P`` cells stands for (the inverse of :meth:`cells`).

        >>> f = NumberFormat(8, 8, 3); f.weight_of_cells(f.cells(-100))
        -100
        """
        v = sum(c * s for c, s in zip(cells, self.slice_weights, strict=True))
        return v - (1 << (self.weight_bits - 1)) if self.weight_encoding == "offset" else v

    # ---- inputs ----------------------------------------------------------------------------------------------
    @functools.cached_property
    def _digit_widths(self) -> tuple[int, ...]:
        """Bits of each magnitude digit (``dac_bits``, the last one what is left of ``input_bits-1``)."""
        m, k = self.input_bits - 1, self.dac_bits
        return tuple(min(k, m - k * d) for d in range(-(-m // k)))

    @functools.cached_property
    def digits(self) -> int:
        """Drive cycles of one MVM (bit planes when ``dac_bits`` is 1).

        >>> NumberFormat(8, 8).digits, NumberFormat(8, 8, input_encoding="sign-magnitude").digits
        (8, 7)
        >>> sm = NumberFormat(8, 8, input_encoding="sign-magnitude", dac_bits=4)
        >>> NumberFormat(8, 8, dac_bits=2).digits, sm.digits
        (5, 2)
        """
        return len(self._digit_widths) + (self.input_encoding == "twos")

    @functools.cached_property
    def digit_weights(self) -> tuple[int, ...]:
        """The digital weight of each cycle's conversions.

        >>> NumberFormat(4, 4).digit_weights, NumberFormat(8, 8, dac_bits=3).digit_weights
        ((1, 2, 4, -8), (1, 8, 64, -128))
        """
        w = tuple(1 << (self.dac_bits * d) for d in range(len(self._digit_widths)))
        return w + (-(1 << (self.input_bits - 1)),) if self.input_encoding == "twos" else w

    @functools.cached_property
    def digit_unipolar(self) -> tuple[bool, ...]:
        """Whether each cycle's drive is never negative (``twos``: all; ``sign-magnitude``: none)."""
        return (self.input_encoding == "twos",) * self.digits

    @functools.cached_property
    def drive_ranges(self) -> tuple[tuple[int, int], ...]:
        """The range of each cycle's row drive.

        >>> NumberFormat(8, 8, dac_bits=3).drive_ranges
        ((0, 7), (0, 7), (0, 1), (0, 1))
        >>> NumberFormat(4, 4, input_encoding="sign-magnitude", dac_bits=2).drive_ranges
        ((-3, 3), (-1, 1))
        """
        out = [((0 if self.input_encoding == "twos" else -(1 << n) + 1), (1 << n) - 1) for n in self._digit_widths]
        return tuple(out + [(0, 1)] if self.input_encoding == "twos" else out)

    @functools.cached_property
    def input_range(self) -> tuple[int, int]:
        """The inputs the drive represents exactly (REQUANT saturates to it; ``sign-magnitude`` is symmetric).

        >>> NumberFormat(8, 8).input_range, NumberFormat(8, 8, input_encoding="sign-magnitude").input_range
        ((-128, 127), (-127, 127))
        """
        lo, hi = rules.signed_range(self.input_bits)
        return (-hi, hi) if self.input_encoding == "sign-magnitude" else (lo, hi)

    def drive(self, x):
        """Return each cycle's drive of the inputs ``x``: a trailing axis of :attr:`digits` (a tuple for one int).

        >>> NumberFormat(4, 4).drive(-3)                                 # 0b1101: today's bit planes
        (1, 0, 1, 1)
        >>> NumberFormat(8, 8, dac_bits=3).drive(np.array([-100, 77])).tolist()   # -100 = 0b1_0011_100
        [[4, 3, 0, 1], [5, 1, 1, 0]]
        >>> NumberFormat(8, 8, input_encoding="sign-magnitude", dac_bits=4).drive(-128)   # saturates to -127
        (-15, -7)
        """
        scalar = not isinstance(x, np.ndarray)
        a = np.asarray(x, dtype=np.int64)
        k, n = self.dac_bits, self.input_bits
        if self.input_encoding == "twos":
            mag, sign = a & ((1 << (n - 1)) - 1), None
        else:
            hi = (1 << (n - 1)) - 1
            sign = np.where(a < 0, -1, 1)
            mag = np.minimum(np.abs(a), hi)
        cols = [(mag >> (k * d)) & ((1 << w) - 1) for d, w in enumerate(self._digit_widths)]
        if sign is None:
            cols.append((a >> (n - 1)) & 1)
        else:
            cols = [c * sign for c in cols]
        out = np.stack(cols, axis=-1)
        return tuple(int(v) for v in out) if scalar else out

    # ---- the ADC ---------------------------------------------------------------------------------------------
    def unsigned_sum(self, p: int, d: int) -> bool:
        """Whether the sum of physical column ``p`` of a weight (``p = -1``: the bias column) in cycle ``d``
        can never be negative, so that its ADC range is unsigned ``0..2**adc_bits-1``."""
        lo = 0 if p < 0 else self.cell_ranges[p][0]
        return lo >= 0 and self.digit_unipolar[d]

    def code(self, colsum, adc_bits: int, adc_shift: int, unsigned: bool):
        """The ADC code of a column sum (:func:`cimisa.rules.adc_code` with this format's rounding)."""
        return rules.adc_code(colsum, adc_bits, adc_shift, rounding=self.adc_rounding, unsigned=unsigned)

    def mvm_column(self, cells_col, bias_col, x, adc_bits: int, adc_shift: int) -> int:
        """One logical column's MVM value, the scalar definition: ``cells_col`` the ``(rows, P)`` cells of the
        column's window, ``bias_col`` the ``rows`` bias cells (``None`` without), ``x`` the ``rows`` inputs.

        >>> f = NumberFormat(4, 4, 1, "differential")
        >>> w, x = [3, -5], [5, -6]
        >>> f.mvm_column([f.cells(v) for v in w], None, x, adc_bits=8, adc_shift=0)   # lossless: 15 + 30
        45
        >>> g = NumberFormat(4, 4, 2, "offset")
        >>> g.mvm_column([g.cells(v) for v in w], [g.bias_cell] * 2, x, 8, 0)
        45
        """
        drives = [self.drive(int(v)) for v in x]
        total = 0
        cols = [(p, [int(c[p]) for c in cells_col], self.slice_weights[p]) for p in range(self.cols_per_weight)]
        if bias_col is not None:
            cols.append((-1, [int(c) for c in bias_col], self.bias_weight))
        for p, cells, sw in cols:
            value = 0
            for d in range(self.digits):
                s = sum(dr[d] * c for dr, c in zip(drives, cells, strict=True))
                value += self.digit_weights[d] * (int(self.code(s, adc_bits, adc_shift, self.unsigned_sum(p, d)))
                                                  << adc_shift)
            total += sw * value
        return total

    # ---- bounds (what the compiler and the executor choose ADC settings from) --------------------------------
    def sum_bounds(self, nrows: int) -> dict[bool, tuple[int, int]]:
        """Return, for the sums that are unsigned (True) and signed (False), the smallest and largest sum any
        ``nrows`` rows of any weights and inputs give (only the kinds this format has).

        >>> NumberFormat(8, 8).sum_bounds(256)
        {False: (-32768, 32512)}
        >>> NumberFormat(8, 8, 1, "differential").sum_bounds(32)
        {True: (0, 32)}
        """
        out: dict[bool, tuple[int, int]] = {}
        ps = list(range(self.cols_per_weight)) + ([-1] if self.bias_cols else [])
        for p in ps:
            clo, chi = (self.bias_cell, self.bias_cell) if p < 0 else self.cell_ranges[p]
            for d in range(self.digits):
                dlo, dhi = self.drive_ranges[d]
                prods = (clo * dlo, clo * dhi, chi * dlo, chi * dhi)
                lo, hi = nrows * min(prods), nrows * max(prods)
                kind = self.unsigned_sum(p, d)
                olo, ohi = out.get(kind, (lo, hi))
                out[kind] = (min(olo, lo), max(ohi, hi))
        return out

    def window_bounds(self, w) -> dict[bool, tuple[int, int]]:
        """Return :meth:`sum_bounds` for the weight window ``w`` (nrows, ncols): the sums these weights allow
        over all inputs (for the default format, :func:`cimisa.rules.colsum_bounds`)."""
        w = np.asarray(w, dtype=np.int64)
        cells = self.cells(w)                                    # (nrows, ncols, P)
        out: dict[bool, tuple[int, int]] = {}
        cols = [(p, cells[..., p]) for p in range(self.cols_per_weight)]
        if self.bias_cols:
            cols.append((-1, np.full(w.shape[:1] + (1,), self.bias_cell, dtype=np.int64)))
        for p, c in cols:
            pos = np.maximum(c, 0).sum(axis=0)                  # per column: its positive and negative cells
            neg = np.minimum(c, 0).sum(axis=0)
            for d in range(self.digits):
                dlo, dhi = self.drive_ranges[d]                  # dlo <= 0 <= dhi: each row drives either end
                lo = int((dlo * pos + dhi * neg).min(initial=0))
                hi = int((dhi * pos + dlo * neg).max(initial=0))
                kind = self.unsigned_sum(p, d)
                olo, ohi = out.get(kind, (lo, hi))
                out[kind] = (min(olo, lo), max(ohi, hi))
        return out

    @staticmethod
    def fits(bounds: dict[bool, tuple[int, int]], adc_bits: int, adc_shift: int, rounding: str = "floor") -> bool:
        """Whether every sum in ``bounds`` (:meth:`sum_bounds` / :meth:`window_bounds`) converts unsaturated.

        >>> NumberFormat.fits({True: (0, 32)}, 5, 0), NumberFormat.fits({True: (0, 32)}, 6, 0)
        (False, True)
        """
        for unsigned, (lo, hi) in bounds.items():
            clo, chi = rules.code_range(adc_bits, unsigned)
            if rules.round_div(lo, adc_shift, rounding) < clo or rules.round_div(hi, adc_shift, rounding) > chi:
                return False
        return True

    def lossless_adc_bits(self, nrows: int) -> int:
        """The ADC width with which no sum of ``nrows`` rows saturates at step 1 (for the default format,
        :func:`cimisa.rules.lossless_adc_bits`).

        >>> NumberFormat(8, 8).lossless_adc_bits(256), NumberFormat(8, 8, 1, "differential").lossless_adc_bits(32)
        (16, 6)
        """
        bits = 1
        for unsigned, (lo, hi) in self.sum_bounds(nrows).items():
            bits = max(bits, max(1, int(hi).bit_length()) if unsigned else rules.signed_bits(lo, hi))
        return bits

    def adc_shift_for(self, bounds: dict[bool, tuple[int, int]], adc_bits: int, max_shift: int | None = None,
                      *, spare_top: bool = False) -> int:
        """The smallest step ``adc_shift`` with which every sum in ``bounds`` converts unsaturated (at most
        ``max_shift``). ``spare_top``: the largest sum of each kind may saturate by one (the paper's
        ``log2(rows)`` rule: with unsigned 1-bit sums, only every row firing on every cell reaches it)."""
        s = 0
        while max_shift is None or s < max_shift:
            b = {k: (lo, hi - 1 if spare_top and hi > lo else hi) for k, (lo, hi) in bounds.items()}
            if self.fits(b, adc_bits, s, self.adc_rounding):
                break
            s += 1
        return s

    def conversions(self, ncols: int) -> int:
        """ADC conversions per cycle of an MVM over ``ncols`` logical columns (with the bias column)."""
        return ncols * self.cols_per_weight + self.bias_cols

    def describe(self) -> str:
        """One line: e.g. ``8-bit weights as 7 x 2 differential 1-bit cells; twos inputs, 1-bit DAC; floor ADC``."""
        w = (f"{self.weight_bits}-bit weights in one {self.weight_encoding} cell" if self.cols_per_weight == 1
             else f"{self.weight_bits}-bit weights as {self.cols_per_weight} {self.weight_encoding} "
                  f"{self.bits_per_cell}-bit cells")
        return (f"{w}{' + 1 bias column per array' if self.bias_cols else ''}; {self.input_encoding} inputs in "
                f"{self.digits} cycles ({self.dac_bits}-bit DAC); {self.adc_rounding} ADC")


def _check_identity(fmt: NumberFormat) -> bool:
    """Whether ``weight_of_cells(cells(w)) == w`` and ``sum(drive * weights) == x`` for every weight and input in
    range (used by the tests)."""
    lo, hi = fmt.weight_range
    ok = all(fmt.weight_of_cells(fmt.cells(w)) == w for w in range(lo, hi + 1))
    ilo, ihi = fmt.input_range
    return ok and all(sum(d * g for d, g in zip(fmt.drive(x), fmt.digit_weights, strict=True)) == x
                      for x in range(ilo, ihi + 1))

