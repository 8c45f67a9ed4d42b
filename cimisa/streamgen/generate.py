"""Random legal command streams that compute on real data: the generator behind :func:`cimisa.streamgen.generate`.

A stream
* starts with a *prologue* that programs every row of a "hot" array with random weights (extremes included),
  an identity block on a "probe" array, and loads inputs at both ends of the input buffer, so that MVMs compute
  on non-zero data;
* then draws commands from templates: MVMs (exact, ADC-saturating, coarse-step, field corners; in number formats
  other than the default, whose sliced cells sum few levels, more saturating and small-step ones) usually followed
  by a READ of their outputs; REQUANTs whose shift is chosen from the accumulators they read (round-half ties,
  values that fit, 0, 1, the maximum), usually followed by a *probe* (an exact MVM of the requantised inputs
  through the identity block, and a READ), since REQUANT writes the input buffer, which no READ shows; partial
  WRITE_W / LOAD_IN with corner windows; READs; BARRIERs;
* ends with HALT (optional).

On a concurrent chip (several tiles with command queues) the builder of :mod:`cimisa.streamgen.chipgen` adds
MVMs spread over the tiles, queue runs, WRITE_Ws while other tiles compute and local BARRIERs, hazard-free by
construction; any other configuration gets exactly the streams of this module.

Field values are drawn with corner cases in mind: windows that are full, a single first or last element, start
at 0 or end at the last address; strides 0, 1, the largest that fits; array 0 and the last array; ADC resolution
1 and the maximum; shifts 0 and the maximum.

Randomness comes from any object with a ``randint(lo, hi)`` method (inclusive bounds), so the same code runs
on :class:`random.Random` (:func:`random_commands`, seeded and deterministic) and on hypothesis draws (shrinkable).
The generator keeps a shadow :class:`~cimisa.semantics.MachineState` (the specification's numpy semantics) only
to *choose* interesting parameters (which accumulators to requantise, which shift makes a tie); checking the
results is the testers' job.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from cimisa import semantics
from cimisa.concurrency import is_concurrent
from cimisa.config import HwConfig
from cimisa.isa import PAYLOAD, Command, ErrorCode, Isa, Opcode

__all__ = ["Randomness", "generate", "random_commands", "PROBE_SIZE", "HOT_ARRAY", "probe_array"]

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
        self.P = min(PROBE_SIZE, cfg.rows, cfg.logical_cols)
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
            self.emit(Command.write_w(HOT_ARRAY, r, 0, self.values("weight", cfg.logical_cols)))
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
            col0, ncols = self.span(cfg.logical_cols, cap=cfg.logical_cols, full_cap=cfg.logical_cols)
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
        modes = ["exact", "exact", "saturate", "coarse", "any", "corner"]
        if not cfg.fmt.is_default:        # sliced cells sum few levels: saturate them (and their ties) more often
            modes += ["saturate", "saturate", "half"]
        mode = self.pick(modes)
        if mode == "exact":
            bits, shift = cfg.adc_bits, 0
        elif mode == "saturate":
            bits, shift = self.ri(1, min(3, cfg.adc_bits)), self.pick([0, 0, 1])
        elif mode == "half":              # a small step: sums half a step from a code (nearest rounding's ties)
            bits, shift = self.ri(1, cfg.adc_bits), self.pick([1, 1, 2])
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
        col, count = self.span(cfg.logical_cols, cap=cfg.logical_cols, full_cap=cfg.logical_cols)
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
    draws the same stream comes out. On a concurrent chip (:func:`cimisa.concurrency.is_concurrent`) the body
    also spreads MVMs over the tiles and has no HAZARD (:mod:`cimisa.streamgen.chipgen`).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n!r}")
    if is_concurrent(cfg):
        from cimisa.streamgen.chipgen import ChipBuilder  # noqa: PLC0415 (chipgen extends this module's builder)
        b: _Builder = ChipBuilder(cfg, rng)
    else:
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
