"""Random legal command streams that compute on real data: the one generator every test tier uses.

The golden-model property tests (through the hypothesis wrapper in ``tests/strategies.py``), the Amaranth
simulation tests (``tests/test_hw_tile.py``) and co-simulation (:mod:`sim.streams`) all draw their random legal
streams from :func:`generate`. A stream

* starts with a *prologue* that programs every row of a "hot" array with random weights (extremes included),
  an identity block on a "probe" array, and loads inputs at both ends of the input buffer, so that MVMs compute
  on non-zero data;
* then draws commands from templates: MVMs (exact, ADC-saturating, coarse-step, field corners) usually followed
  by a READ of their outputs; REQUANTs whose shift is chosen from the accumulators they read (round-half ties,
  values that fit, 0, 1, the maximum), usually followed by a *probe* (an exact MVM of the requantised inputs
  through the identity block, and a READ), since REQUANT writes the input buffer, which no READ shows; partial
  WRITE_W / LOAD_IN with corner windows; READs; BARRIERs;
* ends with HALT (optional).

Field values are drawn with corner cases in mind: windows that are full, a single first or last element, start
at 0 or end at the last address; strides 0, 1, the largest that fits; array 0 and the last array; ADC resolution
1 and the maximum; shifts 0 and the maximum.

Randomness comes from any object with a ``randint(lo, hi)`` method (inclusive bounds), so the same code runs
on :class:`random.Random` (:func:`random_commands`, seeded and deterministic) and on hypothesis draws (shrinkable).
The generator keeps a shadow :class:`~cimisa.semantics.MachineState` (the specification's numpy semantics) only
to *choose* interesting parameters (which accumulators to requantise, which shift makes a tie); checking the
results is the testers' job.

:func:`covered` replays a command list on the semantics and returns the coverage bins it hits (see
:func:`coverage_bins`): every opcode, every field corner, and value-level bins (ADC saturation at both ends,
floor rounding of negative column sums, REQUANT ties and saturation, results observed by a READ).
:func:`stream_stats` returns counts (how many MVM outputs are non-zero, exact, saturated, ...).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from cimisa import semantics
from cimisa.config import HwConfig
from cimisa.isa import PAYLOAD, Command, ErrorCode, Isa, Opcode

__all__ = ["Randomness", "generate", "random_commands", "coverage_bins", "covered", "stream_stats", "StreamStats",
           "PROBE_SIZE", "HOT_ARRAY", "probe_array", "boundary_cases", "fits"]

#: Side of the identity block on the probe array (capped by the array's rows and columns).
PROBE_SIZE = 8
#: The array whose rows the prologue programs with random weights.
HOT_ARRAY = 0
#: At most this many rows of the hot array are programmed by the prologue.
_PROLOGUE_ROWS = 32
#: The prologue loads this many inputs at address 0 (and some more at the end of the buffer).
_PROLOGUE_INPUTS = 64
#: Longest window the generator draws for counts that are not "the whole buffer".
_CAP = 48
#: Longest "whole buffer" window the generator draws (whole-buffer READs / LOAD_INs on small buffers only).
_FULL_CAP = 512


class Randomness(Protocol):
    """What the generator needs from a source of randomness (``random.Random`` qualifies)."""

    def randint(self, a: int, b: int) -> int:
        """Return an integer in ``a..b`` (both inclusive)."""


def probe_array(cfg: HwConfig) -> int:
    """Return the array holding the identity block used to observe the input buffer (the last array)."""
    return cfg.n_arrays - 1


class _Builder:
    """Draws one stream; keeps the specification's state of what has been emitted so far."""

    def __init__(self, cfg: HwConfig, rng: Randomness):
        self.cfg, self.rng = cfg, rng
        self.isa = isa = Isa.of(cfg)
        self.st = semantics.MachineState(cfg)
        self.cmds: list[Command] = []
        self.wlo, self.whi = isa.elem_range("weight")
        self.ilo, self.ihi = isa.elem_range("input")
        self.adc_shift_max = (1 << isa.field_widths[Opcode.MVM]["adc_shift"]) - 1
        self.rq_shift_max = (1 << isa.field_widths[Opcode.REQUANT]["shift"]) - 1
        self.probe = probe_array(cfg)
        self.P = min(PROBE_SIZE, cfg.rows, cfg.cols)
        self.probe_ok = False
        self.loaded = min(cfg.in_depth, _PROLOGUE_INPUTS)      # inputs 0..loaded-1 hold data after the prologue
        self.recent_out: list[tuple[int, int]] = []            # (addr, count) windows recent MVMs wrote

    # ---- randomness ----------------------------------------------------------------------------------------
    def ri(self, lo: int, hi: int) -> int:
        return int(self.rng.randint(lo, hi)) if hi > lo else lo

    def chance(self, p: float) -> bool:
        """True with probability ``p`` (a hypothesis draw shrinks towards False)."""
        return self.ri(0, 999) >= 1000 - round(p * 1000)

    def pick(self, seq: Sequence):
        return seq[self.ri(0, len(seq) - 1)]

    def values(self, kind: str, n: int) -> list[int]:
        """``n`` payload elements: uniform, extremes only, mixed, or small; one draw seeds the bulk."""
        lo, hi = (self.wlo, self.whi) if kind == "weight" else (self.ilo, self.ihi)
        style = self.pick(["uniform", "uniform", "mixed", "extreme", "small"])
        sub = random.Random(self.ri(0, 2**32 - 1))
        if style == "uniform":
            return [sub.randint(lo, hi) for _ in range(n)]
        if style == "extreme":
            return [sub.choice((lo, hi)) for _ in range(n)]
        if style == "mixed":
            return [sub.choice((lo, hi)) if sub.random() < 0.25 else sub.randint(lo, hi) for _ in range(n)]
        return [sub.randint(max(lo, -2), min(hi, 2)) for _ in range(n)]

    # ---- field corners -----------------------------------------------------------------------------------
    def span(self, limit: int, *, cap: int = _CAP, full_cap: int = _FULL_CAP) -> tuple[int, int]:
        """Return ``(start, count)`` with ``count >= 1`` and ``start + count <= limit``, corners likely."""
        mode = self.pick(["full", "first", "last", "from0", "to_end", "any", "any", "any"])
        if mode == "full" and limit <= full_cap:
            return 0, limit
        if mode == "first":
            return 0, 1
        if mode == "last":
            return limit - 1, 1
        n = self.ri(1, min(limit, cap))
        if mode == "from0":
            return 0, n
        if mode == "to_end":
            return limit - n, n
        return self.ri(0, limit - n), n

    def strided(self, depth: int, n: int, *, allow_zero: bool, hot: int | None = None) -> tuple[int, int]:
        """Return ``(base, stride)`` with ``base + (n-1)*stride <= depth-1`` (stride 0 only if allowed or n=1)."""
        if n == 1:
            stride = self.pick([0, 1, self.ri(0, depth - 1)])
        else:
            smax = (depth - 1) // (n - 1)
            lo = 0 if allow_zero else 1
            choices = [1, 1, 1, smax, self.ri(lo, min(smax, 4)), self.ri(lo, min(smax, 4)), self.ri(lo, smax)]
            if allow_zero:
                choices.append(0)
            stride = self.pick(choices)
        bmax = depth - 1 - (n - 1) * stride
        mode = self.pick(["zero", "max", "hot", "hot", "hot", "any"])
        if mode == "zero":
            return 0, stride
        if mode == "max":
            return bmax, stride
        if mode == "hot" and hot is not None:
            return self.ri(0, max(0, min(bmax, hot - 1 - (n - 1) * stride))), stride
        return self.ri(0, bmax), stride

    def array(self) -> int:
        return self.pick([HOT_ARRAY, HOT_ARRAY, HOT_ARRAY, HOT_ARRAY, self.probe, 0, self.cfg.n_arrays - 1,
                          self.ri(0, self.cfg.n_arrays - 1)])

    # ---- emitting ----------------------------------------------------------------------------------------
    def emit(self, cmd: Command) -> None:
        code = semantics.check(self.cfg, cmd.op, cmd.args)
        assert code is ErrorCode.NONE, (cmd, code)          # the generator only makes legal commands
        if cmd.op in PAYLOAD:
            semantics.ACTIONS[cmd.op](self.st, data=cmd.data, **cmd.args)
        else:
            semantics.ACTIONS[cmd.op](self.st, **cmd.args)
        if cmd.op is Opcode.WRITE_W and cmd.array == self.probe and cmd.row < self.P and cmd.col < self.P:
            self.probe_ok = False
        if cmd.op is Opcode.MVM:
            last = cmd.out_addr + (cmd.ncols - 1) * cmd.out_stride
            self.recent_out = (self.recent_out + [(cmd.out_addr, last - cmd.out_addr + 1)])[-4:]
        self.cmds.append(cmd)

    # ---- templates ---------------------------------------------------------------------------------------
    def prologue(self) -> None:
        cfg = self.cfg
        for r in range(min(cfg.rows, _PROLOGUE_ROWS)):
            self.emit(Command.write_w(HOT_ARRAY, r, 0, self.values("weight", cfg.cols)))
        self.identity()
        self.emit(Command.load_in(0, self.values("input", self.loaded)))
        tail = min(16, cfg.in_depth - self.loaded)
        if tail > 0:
            self.emit(Command.load_in(cfg.in_depth - tail, self.values("input", tail)))

    def identity(self) -> None:
        """Program (or restore) the identity block of the probe array: weight 1 at (r, r), 0 elsewhere."""
        for r in range(self.P):
            self.emit(Command.write_w(self.probe, r, 0, [int(c == r) for c in range(self.P)]))
        self.probe_ok = True

    def observe_outputs(self, addr: int, count: int) -> None:
        """READ the accumulator window ``addr..addr+count-1`` (capped)."""
        self.emit(Command.read(addr, min(count, _CAP)))

    def probe_inputs(self, addr: int, n: int, stride: int) -> None:
        """Make inputs ``addr + k*stride`` (k < n, at most the probe size) visible: identity MVM, then READ."""
        if self.cfg.adc_bits < 2:
            return                                        # a 1-bit ADC cannot pass a bit-plane sum of 1
        if not self.probe_ok:
            self.identity()
        k = min(n, self.P)
        out = self.ri(0, self.cfg.out_depth - k)
        self.emit(Command.mvm(array=self.probe, row0=0, nrows=k, col0=0, ncols=k, in_addr=addr, in_stride=stride,
                              out_addr=out, out_stride=1, adc_bits=self.cfg.adc_bits, adc_shift=0))
        self.emit(Command.read(out, k))

    def mvm_window(self) -> dict:
        """Draw an MVM's array, windows and addresses (on the probe array, usually inside the identity block)."""
        cfg = self.cfg
        array = self.array()
        if array == self.probe and self.probe_ok and self.chance(0.8):
            row0, nrows = self.span(self.P, cap=self.P, full_cap=self.P)
            col0, ncols = row0, nrows                     # the identity's diagonal: outputs = inputs
        else:
            row0, nrows = self.span(cfg.rows, cap=cfg.rows, full_cap=cfg.rows)
            col0, ncols = self.span(cfg.cols, cap=cfg.cols, full_cap=cfg.cols)
        in_addr, in_stride = self.strided(cfg.in_depth, nrows, allow_zero=True, hot=self.loaded)
        out_addr, out_stride = self.strided(cfg.out_depth, ncols, allow_zero=False, hot=min(cfg.out_depth, 64))
        return dict(array=array, row0=row0, nrows=nrows, col0=col0, ncols=ncols, in_addr=in_addr,
                    in_stride=in_stride, out_addr=out_addr, out_stride=out_stride)

    def t_mvm(self) -> None:
        cfg = self.cfg
        for attempt in range(4):          # prefer windows with non-zero weights and inputs (usually)
            f = self.mvm_window()
            x = self.st.inbuf[f["in_addr"] + f["in_stride"] * np.arange(f["nrows"])]
            w = self.st.array(f["array"])[f["row0"]:f["row0"] + f["nrows"], f["col0"]:f["col0"] + f["ncols"]]
            if (x.any() and w.any()) or attempt == 3 or not self.chance(0.9):
                break
        mode = self.pick(["exact", "exact", "saturate", "coarse", "any", "corner"])
        if mode == "exact":
            bits, shift = cfg.adc_bits, 0
        elif mode == "saturate":
            bits, shift = self.ri(1, min(3, cfg.adc_bits)), self.pick([0, 0, 1])
        elif mode == "coarse":
            bits, shift = self.ri(1, cfg.adc_bits), self.ri(1, self.adc_shift_max)
        elif mode == "corner":
            bits, shift = self.pick([1, cfg.adc_bits]), self.pick([self.adc_shift_max, self.ri(1, 3)])
        else:
            bits, shift = self.ri(1, cfg.adc_bits), self.ri(0, self.adc_shift_max)
        self.emit(Command.mvm(**f, accumulate=self.chance(0.35), adc_bits=bits, adc_shift=shift))
        if self.chance(0.7):
            self.observe_outputs(f["out_addr"], (f["ncols"] - 1) * f["out_stride"] + 1)

    def rq_shift(self, vals: np.ndarray) -> int:
        """A REQUANT shift for accumulators ``vals``: a tie, a fit, 0, 1, the maximum or any."""
        mode = self.pick(["tie", "tie", "fit", "fit", "zero", "one", "max", "any"])
        nz = [int(v) for v in vals if v]
        if mode == "tie" and nz:
            v = self.pick(nz)
            return min(self.rq_shift_max, (v & -v).bit_length())      # v = (2k+1) * 2**(s-1): a tie at s
        if mode in ("fit", "tie") and nz:
            over = max(abs(v) for v in nz).bit_length() - (self.cfg.input_bits - 1)
            return max(0, min(self.rq_shift_max, over + self.ri(-1, 1)))
        if mode == "zero":
            return 0
        if mode == "one":
            return 1
        if mode == "max":
            return self.rq_shift_max
        return self.ri(0, self.rq_shift_max)

    def t_requant(self) -> None:
        cfg = self.cfg
        for attempt in range(4):          # prefer accumulators that hold something (usually)
            if self.recent_out and self.chance(0.7):
                src, count = self.pick(self.recent_out)
                count = min(count, _CAP)
            else:
                src, count = self.span(cfg.out_depth, full_cap=min(cfg.in_depth, _FULL_CAP))
            if self.st.outbuf[src:src + count].any() or attempt == 3 or not self.chance(0.9):
                break
        if count > cfg.in_depth:
            count = self.ri(1, cfg.in_depth)
        dst, stride = self.strided(cfg.in_depth, count, allow_zero=False, hot=self.loaded)
        shift = self.rq_shift(self.st.outbuf[src:src + count])
        self.emit(Command.requant(src=src, count=count, dst=dst, dst_stride=stride, shift=shift))
        if self.chance(0.75):
            self.probe_inputs(dst, count, stride)

    def t_write_w(self) -> None:
        cfg = self.cfg
        row = self.pick([0, cfg.rows - 1, self.ri(0, cfg.rows - 1)])
        col, count = self.span(cfg.cols, cap=cfg.cols, full_cap=cfg.cols)
        self.emit(Command.write_w(self.array(), row, col, self.values("weight", count)))

    def t_load_in(self) -> None:
        addr, count = self.span(self.cfg.in_depth)
        self.emit(Command.load_in(addr, self.values("input", count)))

    def t_read(self) -> None:
        addr, count = self.span(self.cfg.out_depth, cap=16)
        self.emit(Command.read(addr, count))

    def t_barrier(self) -> None:
        self.emit(Command.barrier())

    TEMPLATES = (("t_mvm", 6), ("t_requant", 3), ("t_write_w", 2), ("t_load_in", 2), ("t_read", 2),
                 ("t_barrier", 1))

    def body(self, n: int) -> None:
        names = [name for name, w in self.TEMPLATES for _ in range(w)]
        start = len(self.cmds)
        while len(self.cmds) - start < n:
            getattr(self, self.pick(names))()
        have = {c.op for c in self.cmds[start:]}
        for op, name in ((Opcode.MVM, "t_mvm"), (Opcode.REQUANT, "t_requant"), (Opcode.WRITE_W, "t_write_w"),
                         (Opcode.LOAD_IN, "t_load_in"), (Opcode.READ, "t_read"), (Opcode.BARRIER, "t_barrier")):
            if op not in have:
                getattr(self, name)()


def generate(cfg: HwConfig, rng: Randomness, n: int = 40, *, prologue: bool = True,
             halt: bool = True) -> list[Command]:
    """Return a random legal program for ``cfg``: prologue (optional), at least ``n`` body commands, HALT.

    The body holds every non-HALT opcode at least once. ``rng`` supplies ``randint(lo, hi)``; with the same
    draws the same stream comes out.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n!r}")
    b = _Builder(cfg, rng)
    if prologue:
        b.prologue()
    b.body(n)
    if halt:
        b.emit(Command.halt())
    return b.cmds


def random_commands(cfg: HwConfig, seed: int, n: int = 40, *, prologue: bool = True,
                    halt: bool = True) -> list[Command]:
    """Return :func:`generate`'s stream for a seeded :class:`random.Random` (deterministic per configuration)."""
    return generate(cfg, random.Random(f"cimisa.streamgen/{cfg.arch_hash}/{seed}"), n, prologue=prologue,
                    halt=halt)


# ---- boundaries ------------------------------------------------------------------------------------------------
def fits(cfg: HwConfig, cmd: Command) -> bool:
    """Whether every header field of ``cmd`` fits its width on ``cfg`` (so the command can be encoded)."""
    widths = Isa.of(cfg).field_widths[cmd.op]
    return all(0 <= v < (1 << widths[k]) for k, v in cmd.args.items())


def boundary_cases(cfg: HwConfig) -> list[tuple[str, Command, ErrorCode]]:
    """Return ``(name, command, expected error)`` for every bound of every check, at its largest legal value
    (``ErrorCode.NONE``) and one past it (the check's error), plus empty windows and aliased strides.

    Covers each ``>=`` / ``>`` of :func:`cimisa.semantics.check`: array index, row and column windows (through the
    start and through the count), ADC resolution 1..max, input and output windows (contiguous, and strided so that
    the *last* element lands on or past the end), REQUANT source and destination, READ. Commands whose fields do
    not fit their widths on ``cfg`` are left out; payloads (when legal) hold small non-zero values.
    """
    R, C, I, O, N = cfg.rows, cfg.cols, cfg.in_depth, cfg.out_depth, cfg.n_arrays
    A = cfg.adc_bits
    ok, e = ErrorCode.NONE, ErrorCode
    out: list[tuple[str, Command, ErrorCode]] = []

    def data(n):
        return tuple((k % 5) - 2 or 1 for k in range(n))

    def ww(name, code, array=0, row=0, col=0, count=1):
        out.append((f"write_w:{name}", Command(Opcode.WRITE_W, dict(array=array, row=row, col=col, count=count),
                                               data(count)), code))

    def li(name, code, addr=0, count=1):
        out.append((f"load_in:{name}", Command(Opcode.LOAD_IN, dict(addr=addr, count=count), data(count)), code))

    def mvm(name, code, **kw):
        args = dict(array=0, row0=0, nrows=1, col0=0, ncols=1, in_addr=0, in_stride=1, out_addr=0, out_stride=1,
                    accumulate=0, adc_bits=A, adc_shift=0)
        args.update(kw)
        out.append((f"mvm:{name}", Command(Opcode.MVM, args), code))

    def rq(name, code, **kw):
        args = dict(src=0, count=1, dst=0, dst_stride=1, shift=0)
        args.update(kw)
        out.append((f"requant:{name}", Command(Opcode.REQUANT, args), code))

    def rd(name, code, addr=0, count=1):
        out.append((f"read:{name}", Command(Opcode.READ, dict(addr=addr, count=count)), code))

    ww("array=max", ok, array=N - 1)
    ww("array=max+1", e.BAD_ARRAY, array=N)
    ww("row=max", ok, row=R - 1)
    ww("row=max+1", e.BAD_ROW, row=R)
    ww("col=max", ok, col=C - 1)
    ww("col=max+1", e.BAD_COL, col=C)
    ww("count=full", ok, count=C)
    ww("count=full+1", e.BAD_COL, count=C + 1)
    ww("end=max", ok, col=C // 2, count=C - C // 2)
    ww("end=max+1", e.BAD_COL, col=C // 2, count=C - C // 2 + 1)
    ww("count=0", e.BAD_COL, count=0)
    li("addr=max", ok, addr=I - 1)
    li("addr=max+1", e.BAD_IN_ADDR, addr=I)
    li("count=full", ok, count=I)
    li("count=full+1", e.BAD_IN_ADDR, count=I + 1)
    li("end=max", ok, addr=I // 2, count=I - I // 2)
    li("end=max+1", e.BAD_IN_ADDR, addr=I // 2, count=I - I // 2 + 1)
    li("count=0", e.BAD_IN_ADDR, count=0)
    mvm("array=max", ok, array=N - 1)
    mvm("array=max+1", e.BAD_ARRAY, array=N)
    mvm("row0=max", ok, row0=R - 1)
    mvm("row0=max+1", e.BAD_ROW, row0=R)
    mvm("nrows=full", ok, nrows=R)
    mvm("nrows=full+1", e.BAD_ROW, nrows=R + 1)
    mvm("row_end=max", ok, row0=1, nrows=R - 1)
    mvm("row_end=max+1", e.BAD_ROW, row0=1, nrows=R)
    mvm("nrows=0", e.BAD_ROW, nrows=0)
    mvm("col0=max", ok, col0=C - 1)
    mvm("col0=max+1", e.BAD_COL, col0=C)
    mvm("ncols=full", ok, ncols=C)
    mvm("ncols=full+1", e.BAD_COL, ncols=C + 1)
    mvm("col_end=max", ok, col0=1, ncols=C - 1)
    mvm("col_end=max+1", e.BAD_COL, col0=1, ncols=C)
    mvm("ncols=0", e.BAD_COL, ncols=0)
    mvm("adc_bits=1", ok, adc_bits=1)
    mvm("adc_bits=0", e.BAD_ADC, adc_bits=0)
    mvm("adc_bits=max+1", e.BAD_ADC, adc_bits=A + 1)
    mvm("in_addr=max", ok, in_addr=I - 1)
    mvm("in_addr=max+1", e.BAD_IN_ADDR, in_addr=I)
    mvm("in_end=max", ok, nrows=2, in_addr=I - 2)
    mvm("in_end=max+1", e.BAD_IN_ADDR, nrows=2, in_addr=I - 1)
    if R >= 3:
        st = (I - 1) // 2
        mvm("in_stride_end=max", ok, nrows=3, in_addr=(I - 1) - 2 * st, in_stride=st)
        mvm("in_stride_end=max+1", e.BAD_IN_ADDR, nrows=3, in_addr=(I - 1) - 2 * st + 1, in_stride=st)
    mvm("in_stride=max", ok, nrows=2, in_stride=I - 1)
    mvm("in_stride=max+1", e.BAD_IN_ADDR, nrows=2, in_stride=I)
    mvm("in_stride=0", ok, nrows=R, in_addr=I - 1, in_stride=0)
    mvm("out_addr=max", ok, out_addr=O - 1)
    mvm("out_addr=max+1", e.BAD_OUT_ADDR, out_addr=O)
    mvm("out_end=max", ok, ncols=2, out_addr=O - 2)
    mvm("out_end=max+1", e.BAD_OUT_ADDR, ncols=2, out_addr=O - 1)
    if C >= 3:
        st = (O - 1) // 2
        mvm("out_stride_end=max", ok, ncols=3, out_addr=(O - 1) - 2 * st, out_stride=st)
        mvm("out_stride_end=max+1", e.BAD_OUT_ADDR, ncols=3, out_addr=(O - 1) - 2 * st + 1, out_stride=st)
    mvm("out_stride=max", ok, ncols=2, out_stride=O - 1)
    mvm("out_stride=max+1", e.BAD_OUT_ADDR, ncols=2, out_stride=O)
    mvm("out_stride=0,ncols=1", ok, out_stride=0)
    mvm("out_stride=0,ncols=2", e.BAD_OUT_ADDR, ncols=2, out_stride=0)
    mvm("order:array>row", e.BAD_ARRAY, array=N, nrows=0)
    mvm("order:row>col", e.BAD_ROW, nrows=0, ncols=0)
    mvm("order:col>adc", e.BAD_COL, ncols=0, adc_bits=0)
    mvm("order:adc>in", e.BAD_ADC, adc_bits=0, in_addr=I)
    mvm("order:in>out", e.BAD_IN_ADDR, in_addr=I, out_addr=O)
    rq("src=max", ok, src=O - 1)
    rq("src=max+1", e.BAD_OUT_ADDR, src=O)
    rq("count=full", ok, count=min(O, I))
    rq("src_end=max", ok, src=O // 2, count=O - O // 2)
    rq("src_end=max+1", e.BAD_OUT_ADDR, src=O // 2, count=O - O // 2 + 1)
    rq("count=0", e.BAD_OUT_ADDR, count=0)
    rq("dst=max", ok, dst=I - 1)
    rq("dst=max+1", e.BAD_IN_ADDR, dst=I)
    rq("dst_end=max", ok, count=2, dst=I - 2)
    rq("dst_end=max+1", e.BAD_IN_ADDR, count=2, dst=I - 1)
    st = (I - 1) // 2
    rq("dst_stride_end=max", ok, count=3, dst=(I - 1) - 2 * st, dst_stride=st)
    rq("dst_stride_end=max+1", e.BAD_IN_ADDR, count=3, dst=(I - 1) - 2 * st + 1, dst_stride=st)
    rq("dst_stride=0,count=1", ok, dst_stride=0)
    rq("dst_stride=0,count=2", e.BAD_IN_ADDR, count=2, dst_stride=0)
    rq("shift=max", ok, shift=(1 << Isa.of(cfg).field_widths[Opcode.REQUANT]["shift"]) - 1)
    rq("order:src>dst", e.BAD_OUT_ADDR, src=O, dst=I)
    rd("addr=max", ok, addr=O - 1)
    rd("addr=max+1", e.BAD_OUT_ADDR, addr=O)
    rd("count=full", ok, count=O)
    rd("count=full+1", e.BAD_OUT_ADDR, count=O + 1)
    rd("end=max", ok, addr=O // 2, count=O - O // 2)
    rd("end=max+1", e.BAD_OUT_ADDR, addr=O // 2, count=O - O // 2 + 1)
    rd("count=0", e.BAD_OUT_ADDR, count=0)
    return [(name, cmd, code) for name, cmd, code in out if fits(cfg, cmd)]


# ---- coverage ---------------------------------------------------------------------------------------------------
def coverage_bins(cfg: HwConfig) -> set[str]:
    """Return every coverage bin :func:`covered` can report for ``cfg`` (bins a configuration cannot reach, e.g.
    a multi-word row when a row fits one word, are left out).

    * ``op:<NAME>`` for each opcode;
    * field corners: ``<op>:<field>=0`` / ``=max``, windows ``=full`` / ``count=1`` / ending at the last
      element, strides 0 / 1 / >1 / largest, ADC resolution 1 / mid / max, ADC shift 0 / >0 / max, REQUANT shift
      0 / 1 / max, accumulate 0 / 1, multi-word payloads;
    * values: payload extremes, ADC codes saturated at both ends, coarse steps that floor negative and positive
      column sums, negative inputs (sign-bit plane), exact non-zero MVMs, REQUANT ties (positive and negative),
      rounding up, saturation at both ends; results observed: a READ of an MVM's output, and of an MVM that
      read a REQUANT's output.
    """
    isa = Isa.of(cfg)
    bins = {f"op:{o.name}" for o in Opcode}
    bins |= {f"write_w:{b}" for b in ("array=0", "array=max", "row=0", "row=max", "col=0", "end=max", "count=1",
                                      "count=full", "weight=min", "weight=max")}
    bins |= {f"load_in:{b}" for b in ("addr=0", "end=max", "count=1", "input=min", "input=max")}
    bins |= {f"mvm:{b}" for b in ("array=0", "array=max", "row0=0", "row_end=max", "nrows=1", "nrows=all",
                                  "col0=0", "col_end=max", "ncols=1", "ncols=all", "in_addr=0", "in_last=max",
                                  "in_stride=0", "in_stride=1", "in_stride>1", "in_stride=largest", "out_addr=0",
                                  "out_last=max", "out_stride=1", "out_stride>1", "accumulate=0",
                                  "accumulate=1", "adc_bits=1", "adc_bits=max", "adc_shift=0", "adc_shift>0",
                                  "adc_shift=max", "nonzero", "exact_nonzero", "adc_sat_hi", "adc_sat_lo",
                                  "neg_input", "floor_neg", "floor_pos", "observed")}
    if cfg.adc_bits > 2:
        bins.add("mvm:adc_bits=mid")
    bins |= {f"requant:{b}" for b in ("src=0", "src_end=max", "dst=0", "dst_last=max", "count=1", "count>1",
                                      "dst_stride>1", "shift=0", "shift>0", "shift=1", "shift=max", "tie_pos",
                                      "tie_neg", "round_up", "sat_hi", "sat_lo", "observed")}
    bins |= {f"read:{b}" for b in ("addr=0", "end=max", "count=1", "count>1", "count=full")}
    if cfg.cols > isa.per_word(Opcode.WRITE_W):
        bins.add("write_w:multiword")
    if cfg.in_depth > isa.per_word(Opcode.LOAD_IN):
        bins.add("load_in:multiword")
    return bins


@dataclass
class StreamStats:
    """Counts from replaying a stream on the specification (see :func:`stream_stats`)."""

    commands: int = 0
    mvms: int = 0
    mvm_outputs: int = 0            #: accumulators written by MVMs
    mvm_nonzero: int = 0            #: ... whose MVM contribution is non-zero
    mvm_exact: int = 0              #: MVMs with ADC step 1 and no saturated code
    mvm_lossy: int = 0              #: MVMs with a saturated code or a coarse step that dropped a remainder
    adc_saturations: int = 0        #: saturated ADC codes (columns x bit planes)
    requant_values: int = 0
    requant_ties: int = 0           #: values exactly halfway between two results (unsaturated)
    requant_saturated: int = 0
    results: int = 0                #: READ outputs

    @property
    def nonzero_fraction(self) -> float:
        """Share of MVM outputs whose contribution is non-zero."""
        return self.mvm_nonzero / self.mvm_outputs if self.mvm_outputs else 0.0


def _replay(cfg: HwConfig, cmds: Iterable[Command]) -> tuple[set[str], StreamStats]:
    """Replay legal commands on the semantics; return the bins hit and the counts (stops at HALT or an error)."""
    isa = Isa.of(cfg)
    st = semantics.MachineState(cfg)
    hit: set[str] = set()
    s = StreamStats()
    in_rq = np.zeros(cfg.in_depth, dtype=bool)     # input written by REQUANT
    out_mvm = np.zeros(cfg.out_depth, dtype=bool)  # accumulator written by an MVM
    out_rq = np.zeros(cfg.out_depth, dtype=bool)   # ... by an MVM that read a REQUANT output
    wlo, whi = isa.elem_range("weight")
    ilo, ihi = isa.elem_range("input")
    adc_shift_max = (1 << isa.field_widths[Opcode.MVM]["adc_shift"]) - 1
    rq_shift_max = (1 << isa.field_widths[Opcode.REQUANT]["shift"]) - 1
    mw = {op: cfg.cols > isa.per_word(op) if op is Opcode.WRITE_W else cfg.in_depth > isa.per_word(op)
          for op in PAYLOAD}

    def corner(name, value, lo, hi):
        if value == lo:
            hit.add(f"{name}=0")
        if value == hi:
            hit.add(f"{name}=max")

    for c in cmds:
        if semantics.check(cfg, c.op, c.args) is not ErrorCode.NONE:
            break
        s.commands += 1
        hit.add(f"op:{c.op.name}")
        a = c.args
        if c.op is Opcode.WRITE_W:
            corner("write_w:array", a["array"], 0, cfg.n_arrays - 1)
            corner("write_w:row", a["row"], 0, cfg.rows - 1)
            if a["col"] == 0:
                hit.add("write_w:col=0")
            if a["col"] + a["count"] == cfg.cols:
                hit.add("write_w:end=max")
            if a["count"] == cfg.cols:
                hit.add("write_w:count=full")
            hit |= {"write_w:weight=min"} if wlo in c.data else set()
            hit |= {"write_w:weight=max"} if whi in c.data else set()
        elif c.op is Opcode.LOAD_IN:
            if a["addr"] == 0:
                hit.add("load_in:addr=0")
            if a["addr"] + a["count"] == cfg.in_depth:
                hit.add("load_in:end=max")
            hit |= {"load_in:input=min"} if ilo in c.data else set()
            hit |= {"load_in:input=max"} if ihi in c.data else set()
            in_rq[a["addr"]:a["addr"] + a["count"]] = False
        elif c.op is Opcode.MVM:
            nr, nc = a["nrows"], a["ncols"]
            corner("mvm:array", a["array"], 0, cfg.n_arrays - 1)
            if a["row0"] == 0:
                hit.add("mvm:row0=0")
            if a["row0"] + nr == cfg.rows:
                hit.add("mvm:row_end=max")
            if a["col0"] == 0:
                hit.add("mvm:col0=0")
            if a["col0"] + nc == cfg.cols:
                hit.add("mvm:col_end=max")
            for name, v, full in (("nrows", nr, cfg.rows), ("ncols", nc, cfg.cols)):
                if v == 1:
                    hit.add(f"mvm:{name}=1")
                if v == full:
                    hit.add(f"mvm:{name}=all")
            in_idx = a["in_addr"] + a["in_stride"] * np.arange(nr)
            out_idx = a["out_addr"] + a["out_stride"] * np.arange(nc)
            if a["in_addr"] == 0:
                hit.add("mvm:in_addr=0")
            if in_idx[-1] == cfg.in_depth - 1:
                hit.add("mvm:in_last=max")
            if a["out_addr"] == 0:
                hit.add("mvm:out_addr=0")
            if out_idx[-1] == cfg.out_depth - 1:
                hit.add("mvm:out_last=max")
            if nr > 1:
                hit.add(f"mvm:in_stride={a['in_stride']}" if a["in_stride"] <= 1 else "mvm:in_stride>1")
                if a["in_stride"] == (cfg.in_depth - 1) // (nr - 1):
                    hit.add("mvm:in_stride=largest")
            if nc > 1:
                hit.add("mvm:out_stride=1" if a["out_stride"] == 1 else "mvm:out_stride>1")
            hit.add(f"mvm:accumulate={a['accumulate']}")
            bits, shift = a["adc_bits"], a["adc_shift"]
            hit.add("mvm:adc_bits=1" if bits == 1 else "mvm:adc_bits=max" if bits == cfg.adc_bits
                    else "mvm:adc_bits=mid")
            hit.add("mvm:adc_shift=0" if shift == 0 else "mvm:adc_shift>0")
            if shift == adc_shift_max:
                hit.add("mvm:adc_shift=max")
            # The ADC, bit plane by bit plane (as cimisa.semantics.mvm), instrumented.
            x = st.inbuf[in_idx]
            w = st.array(a["array"])[a["row0"]:a["row0"] + nr, a["col0"]:a["col0"] + nc]
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            acc = np.zeros(nc, dtype=np.int64)
            sat = lossy = 0
            for b in range(cfg.input_bits):
                colsum = w.T @ ((x >> b) & 1)
                q = colsum >> shift
                sat_hi, sat_lo = int((q > hi).sum()), int((q < lo).sum())
                rem = colsum & ((1 << shift) - 1)
                if sat_hi:
                    hit.add("mvm:adc_sat_hi")
                if sat_lo:
                    hit.add("mvm:adc_sat_lo")
                if np.any((colsum < 0) & (rem != 0)):
                    hit.add("mvm:floor_neg")
                if np.any((colsum > 0) & (rem != 0)):
                    hit.add("mvm:floor_pos")
                if b == cfg.input_bits - 1 and np.any(colsum != 0):
                    hit.add("mvm:neg_input")
                sat += sat_hi + sat_lo
                lossy += sat_hi + sat_lo + int(np.count_nonzero(rem))
                term = np.clip(q, lo, hi) << (b + shift)
                acc += -term if b == cfg.input_bits - 1 else term
            acc = semantics.wrap_acc(acc)
            s.mvms += 1
            s.mvm_outputs += nc
            s.mvm_nonzero += int(np.count_nonzero(acc))
            s.adc_saturations += sat
            if np.any(acc != 0):
                hit.add("mvm:nonzero")
                if not lossy:
                    hit.add("mvm:exact_nonzero")
            if lossy:
                s.mvm_lossy += 1
            elif shift == 0:
                s.mvm_exact += 1
            rq = bool(in_rq[in_idx].any())
            out_mvm[out_idx] = True
            out_rq[out_idx] = rq | (out_rq[out_idx] & bool(a["accumulate"]))
        elif c.op is Opcode.REQUANT:
            n, shift = a["count"], a["shift"]
            if a["src"] == 0:
                hit.add("requant:src=0")
            if a["src"] + n == cfg.out_depth:
                hit.add("requant:src_end=max")
            dst_idx = a["dst"] + a["dst_stride"] * np.arange(n)
            if a["dst"] == 0:
                hit.add("requant:dst=0")
            if dst_idx[-1] == cfg.in_depth - 1:
                hit.add("requant:dst_last=max")
            hit.add("requant:count=1" if n == 1 else "requant:count>1")
            if n > 1 and a["dst_stride"] > 1:
                hit.add("requant:dst_stride>1")
            hit.add("requant:shift=0" if shift == 0 else "requant:shift>0")
            if shift == 1:
                hit.add("requant:shift=1")
            if shift == rq_shift_max:
                hit.add("requant:shift=max")
            v = st.outbuf[a["src"]:a["src"] + n]
            r = (v + (1 << (shift - 1))) >> shift if shift else v
            inside = (r >= ilo) & (r <= ihi)
            s.requant_values += n
            s.requant_saturated += int((~inside).sum())
            if np.any(r > ihi):
                hit.add("requant:sat_hi")
            if np.any(r < ilo):
                hit.add("requant:sat_lo")
            if shift:
                rem = v & ((1 << shift) - 1)
                half = 1 << (shift - 1)
                tie = (rem == half) & inside
                s.requant_ties += int(tie.sum())
                if np.any(tie & (v > 0)):
                    hit.add("requant:tie_pos")
                if np.any(tie & (v < 0)):
                    hit.add("requant:tie_neg")
                if np.any((rem > half) & inside):
                    hit.add("requant:round_up")
            in_rq[dst_idx] = True
        elif c.op is Opcode.READ:
            n = a["count"]
            if a["addr"] == 0:
                hit.add("read:addr=0")
            if a["addr"] + n == cfg.out_depth:
                hit.add("read:end=max")
            hit.add("read:count=1" if n == 1 else "read:count>1")
            if n == cfg.out_depth:
                hit.add("read:count=full")
            window = slice(a["addr"], a["addr"] + n)
            if out_mvm[window].any():
                hit.add("mvm:observed")
            if out_rq[window].any():
                hit.add("requant:observed")
            s.results += n
        if c.op in PAYLOAD:
            if a["count"] == 1:
                hit.add(f"{c.op.name.lower()}:count=1")
            if mw[c.op] and isa.payload_words(c.op, a["count"]) > 1:
                hit.add(f"{c.op.name.lower()}:multiword")
            semantics.ACTIONS[c.op](st, data=c.data, **a)
        else:
            semantics.ACTIONS[c.op](st, **a)
        if c.op is Opcode.HALT:
            break
    return hit, s


def covered(cfg: HwConfig, cmds: Iterable[Command]) -> set[str]:
    """Return the coverage bins (see :func:`coverage_bins`) that legal commands ``cmds`` hit."""
    return _replay(cfg, cmds)[0]


def stream_stats(cfg: HwConfig, cmds: Iterable[Command]) -> StreamStats:
    """Return the :class:`StreamStats` of replaying legal commands ``cmds`` on the specification."""
    return _replay(cfg, cmds)[1]
