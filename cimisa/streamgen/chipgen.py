"""Random legal streams for a concurrent chip (:func:`cimisa.concurrency.is_concurrent`): tiles compute side by side.

:func:`cimisa.streamgen.generate` draws from :class:`ChipBuilder` instead of the one-tile builder when the
configuration is concurrent (any other configuration keeps exactly the one-tile streams). On top of the one-tile
templates (which it keeps, so every field corner and value bin is still hit) it draws:

* **bursts**: MVMs on 2..all tiles in a row (each tile's outputs in its own region of the output buffer), often of
  the *same shape* (equal cycles: their write-backs compete for the bus back to back), or *staggered* (the second,
  on a lower tile, one drive row shorter: both tiles ask for the bus in the same cycle when they start idle, and
  the lower tile wins), closed by a chip command, an all-tile BARRIER, local BARRIERs, or nothing;
* **queue runs**: ``queue_depth + 1`` or ``+ 2`` MVMs to one tile in a row (its queue fills, the dispatcher waits);
* **WRITE_W while others compute**: an MVM on one tile, a WRITE_W to another, then an MVM on the array written;
* **barriers**: local BARRIERs of a busy tile (one with commands since its last synchronisation) and of an idle
  one, all-tile BARRIERs of a busy and an idle chip;
* **adjacent spans**: an MVM whose outputs start right after (or end right before) another tile's hull, the
  closest a legal MVM comes to a HAZARD.

Legal by construction: before every MVM the builder asks the :class:`~cimisa.concurrency.Scoreboard` which tile
it would race with and puts a local BARRIER of that tile first (or, sometimes, an all-tile BARRIER), so no stream
has a HAZARD; :meth:`ChipBuilder.emit` asserts it.
"""

from __future__ import annotations

from cimisa.concurrency import Scoreboard, out_span
from cimisa.isa import Command, ErrorCode, Opcode
from cimisa.streamgen.generate import _Builder

__all__ = ["ChipBuilder", "region"]

#: Rows of each other tile's hot array the prologue programs (tile 0's hot array gets the one-tile prologue's).
_OTHER_HOT_ROWS = 16


def region(cfg, tile: int) -> tuple[int, int]:
    """The output-buffer addresses ``[lo, hi)`` the generator gives ``tile``'s burst MVMs (equal slices)."""
    n = cfg.n_tiles
    return tile * cfg.out_depth // n, (tile + 1) * cfg.out_depth // n


class ChipBuilder(_Builder):
    """The one-tile builder plus the concurrency templates; every MVM is made hazard-free before it is emitted."""

    def __init__(self, cfg, rng):
        super().__init__(cfg, rng)
        self.sb = Scoreboard(cfg)
        self.apt = cfg.chip.arrays_per_tile
        self.n_tiles = cfg.n_tiles
        self.depth = cfg.chip.queue_depth
        self.hot = [t * self.apt for t in range(self.n_tiles)]      # tile 0's is HOT_ARRAY (0)
        self.hot_rows = {0: 0}                                      # rows programmed, per hot array's tile

    # ---- emitting: hazard-free by construction -------------------------------------------------------------
    def emit(self, cmd: Command) -> None:
        if cmd.op is Opcode.MVM:
            while (u := self.sb.conflict(cmd.args)) is not None:
                if self.chance(0.15):
                    self._emit1(Command.barrier())
                else:
                    self._emit1(Command.barrier(self.array_of(u)))
        self._emit1(cmd)

    def _emit1(self, cmd: Command) -> None:
        super().emit(cmd)
        code = self.sb.step(cmd.op, cmd.args)
        assert code is ErrorCode.NONE, (cmd, code)               # the generator makes no hazards

    # ---- choices -----------------------------------------------------------------------------------------
    def tile_of(self, array: int) -> int:
        return array // self.apt

    def array_of(self, tile: int) -> int:
        """Any array of ``tile`` (its first and last likely)."""
        lo = tile * self.apt
        return self.pick([lo, lo + self.apt - 1, self.ri(lo, lo + self.apt - 1)])

    def array(self) -> int:
        t = self.ri(0, self.n_tiles - 1)
        return self.pick([self.hot[t], self.hot[t], self.hot[t], HOT, self.probe, 0, self.cfg.n_arrays - 1,
                          self.array_of(t)])

    def tile_array(self, t: int) -> int:
        """An array of tile ``t`` for an MVM: its hot array usually, the probe when it is on ``t``."""
        choices = [self.hot[t]] * 4 + [self.array_of(t)]
        if self.tile_of(self.probe) == t and self.probe_ok:
            choices.append(self.probe)
        return self.pick(choices)

    def adc(self) -> tuple[int, int]:
        """ADC resolution and step: exact mostly, sometimes saturating or coarse."""
        mode = self.pick(["exact", "exact", "exact", "saturate", "coarse"])
        if mode == "exact":
            return self.cfg.adc_bits, 0
        if mode == "saturate":
            return self.ri(1, min(3, self.cfg.adc_bits)), 0
        return self.ri(1, self.cfg.adc_bits), self.ri(1, self.adc_shift_max)

    def shape(self, array: int) -> tuple[int, int, int, int]:
        """``(row0, nrows, col0, ncols)`` of an MVM on ``array`` (on the probe: inside its identity block)."""
        cfg = self.cfg
        if array == self.probe and self.probe_ok:
            r0, n = self.span(self.P, cap=self.P, full_cap=self.P)
            return r0, n, r0, n
        row0, nrows = self.span(cfg.rows, cap=cfg.rows, full_cap=cfg.rows)
        col0, ncols = self.span(cfg.logical_cols, cap=cfg.logical_cols, full_cap=cfg.logical_cols)
        return row0, nrows, col0, ncols

    def out_in(self, lo: int, hi: int, ncols: int) -> tuple[int, int]:
        """``(out_addr, out_stride)`` with every output in ``[lo, hi)`` (``ncols <= hi - lo``)."""
        size = hi - lo
        if ncols == 1:
            return self.pick([lo, hi - 1, self.ri(lo, hi - 1)]), self.pick([0, 1])
        smax = (size - 1) // (ncols - 1)
        stride = self.pick([1, 1, 1, smax, self.ri(1, min(smax, 4))])
        base_max = hi - 1 - (ncols - 1) * stride
        return self.pick([lo, base_max, self.ri(lo, base_max)]), stride

    def mvm_on(self, t: int, shape=None, array: int | None = None, outputs: tuple[int, int] | None = None) -> dict:
        """Emit an MVM on tile ``t`` (``shape`` = (row0, nrows, col0, ncols) to repeat one), outputs in
        ``outputs`` (default: the tile's region); return its fields."""
        cfg = self.cfg
        if array is None:
            array = self.tile_array(t)
        row0, nrows, col0, ncols = shape if shape is not None else self.shape(array)
        lo, hi = outputs if outputs is not None else region(cfg, t)
        ncols = min(ncols, hi - lo)
        in_addr, in_stride = self.strided(cfg.in_depth, nrows, allow_zero=True, hot=self.loaded)
        out_addr, out_stride = self.out_in(lo, hi, ncols)
        bits, shift = self.adc()
        f = dict(array=array, row0=row0, nrows=nrows, col0=col0, ncols=ncols, in_addr=in_addr, in_stride=in_stride,
                 out_addr=out_addr, out_stride=out_stride, accumulate=int(self.chance(0.3)), adc_bits=bits,
                 adc_shift=shift)
        self.emit(Command(Opcode.MVM, f))
        return f

    def other_tiles(self, t: int) -> list[int]:
        return [u for u in range(self.n_tiles) if u != t]

    def tiles(self, k: int) -> list[int]:
        """``k`` distinct tiles in a random order."""
        pool = list(range(self.n_tiles))
        out = []
        for _ in range(min(k, len(pool))):
            out.append(pool.pop(self.ri(0, len(pool) - 1)))
        return out

    # ---- prologue ----------------------------------------------------------------------------------------
    def prologue(self) -> None:
        super().prologue()
        cfg = self.cfg
        for t in range(1, self.n_tiles):           # every tile's hot array computes on non-zero weights
            if self.hot[t] == self.probe:
                continue
            rows = min(cfg.rows, _OTHER_HOT_ROWS)
            for r in range(rows):
                self.emit(Command.write_w(self.hot[t], r, 0, self.values("weight", cfg.logical_cols)))

    # ---- templates ---------------------------------------------------------------------------------------
    def t_burst(self) -> None:
        """MVMs on several tiles in a row: same shape, staggered by one row, or any; then a synchronisation."""
        k = self.ri(2, self.n_tiles)
        ts = self.tiles(k)
        style = self.pick(["equal", "equal", "staggered", "any"])
        if style == "staggered" and self.cfg.rows >= 3:
            hi_t, lo_t = max(ts[:2]), min(ts[:2])
            a = self.hot[hi_t]
            row0, nrows, col0, ncols = self.shape(a)
            if nrows < 3 or a == self.probe:
                row0, nrows = 0, self.cfg.rows
            if (row0 + nrows - 1) % self.cfg.rows_per_cycle == 0:
                nrows -= 1                        # the last row must share its row group with the one before
            # one row fewer in the same row groups: one cycle shorter before the write-back, equal write-back
            self.mvm_on(hi_t, (row0, nrows, col0, ncols), array=a)
            self.mvm_on(lo_t, (row0, nrows - 1, col0, ncols), array=self.hot[lo_t])
        else:
            shape = None
            if style == "equal":
                a = self.hot[ts[0]]
                shape = self.shape(a)
            for t in ts:
                self.mvm_on(t, shape, array=self.hot[t] if shape is not None else None)
        self.sync()

    def sync(self) -> None:
        """Close a burst: READ (a chip command), all-tile BARRIER, local BARRIERs of the pending tiles, or nothing."""
        mode = self.pick(["read", "all", "local", "none", "none"])
        if mode == "read":
            addr, count = self.span(self.cfg.out_depth, cap=16)
            self.emit(Command.read(addr, count))
        elif mode == "all":
            self.emit(Command.barrier())
        elif mode == "local":
            for t in sorted(self.sb.hulls):
                if self.chance(0.7):
                    self.emit(Command.barrier(self.array_of(t)))

    def t_queue_run(self) -> None:
        """``queue_depth + 1`` (or ``+ 2``) MVMs to one tile in a row, outputs in its region."""
        t = self.ri(0, self.n_tiles - 1)
        for _ in range(self.depth + self.ri(1, 2)):
            self.mvm_on(t)
        if self.chance(0.5):
            self.sync()

    def t_write_busy(self) -> None:
        """An MVM on one tile, a WRITE_W to another tile while it computes, an MVM on the array written."""
        a, b = self.tiles(2)
        self.mvm_on(a)
        arr = self.pick([self.hot[b], self.array_of(b)])
        if arr == self.probe:
            arr = self.hot[b] if self.hot[b] != self.probe else b * self.apt
        row = self.ri(0, self.cfg.rows - 1)
        self.emit(Command.write_w(arr, row, 0, self.values("weight", self.cfg.logical_cols)))
        if arr == self.probe:
            self.probe_ok = False
        if self.chance(0.7):
            shape = (row, 1, 0, self.cfg.logical_cols) if self.chance(0.5) else None
            self.mvm_on(b, shape, array=arr)

    def t_barrier_tile(self) -> None:
        """A local BARRIER of a busy tile (one with pending commands) or an idle one; an all-tile BARRIER (of a busy
    chip, or of an idle one: sometimes a second BARRIER, all-tile or local, right after the first)."""
        busy = sorted(self.sb.hulls)
        idle = [t for t in range(self.n_tiles) if t not in self.sb.hulls]
        mode = self.pick(["busy", "idle", "all"])
        if mode == "busy" and not busy:
            self.mvm_on(self.ri(0, self.n_tiles - 1))
            busy = sorted(self.sb.hulls)
        if mode == "busy":
            self.emit(Command.barrier(self.array_of(self.pick(busy))))
        elif mode == "idle" and idle:
            self.emit(Command.barrier(self.array_of(self.pick(idle))))
        else:
            self.emit(Command.barrier())
            if self.chance(0.5):
                self.emit(Command.barrier(*([] if self.chance(0.5) else [self.array_of(self.ri(0, self.n_tiles - 1))])))

    def t_adjacent(self) -> None:
        """An MVM whose outputs start right after, or end right before, another tile's hull (no overlap)."""
        cfg = self.cfg
        if not self.sb.hulls:
            self.mvm_on(self.ri(0, self.n_tiles - 1))
        u = self.pick(sorted(self.sb.hulls))
        lo, hi = self.sb.hulls[u]
        t = self.pick(self.other_tiles(u))
        array = self.hot[t]
        row0, nrows, col0, ncols = self.shape(array)
        if hi < cfg.out_depth and (lo == 0 or self.chance(0.5)):
            ncols = min(ncols, cfg.out_depth - hi)
            out = (hi, min(cfg.out_depth, hi + ncols))        # starts at the hull's end
        elif lo > 0:
            ncols = min(ncols, lo)
            out = (lo - ncols, lo)                            # ends right before the hull's start
        else:
            return                                            # the hull covers the whole buffer
        f = dict(array=array, row0=row0, nrows=nrows, col0=col0, ncols=ncols)
        in_addr, in_stride = self.strided(cfg.in_depth, nrows, allow_zero=True, hot=self.loaded)
        f.update(in_addr=in_addr, in_stride=in_stride, out_addr=out[0], out_stride=1, accumulate=0,
                 adc_bits=cfg.adc_bits, adc_shift=0)
        if self.sb.conflict(f) is None and out_span(f)[1] <= cfg.out_depth:
            self.emit(Command(Opcode.MVM, f))

    TEMPLATES = _Builder.TEMPLATES + (("t_burst", 6), ("t_queue_run", 2), ("t_write_busy", 2),
                                      ("t_barrier_tile", 2), ("t_adjacent", 1))


HOT = 0      # the one-tile builder's hot array (tile 0's)
