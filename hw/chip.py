"""The concurrent chip: several tiles, each with its own command queue, controller, arrays and ADC bank.

:class:`CimChip` has exactly :class:`hw.tile.CimTile`'s ports, so every driver runs both; :func:`top` picks the one a
configuration needs. The rules are :mod:`cimisa.concurrency`'s, the cycles the spec in :mod:`cimisa.timing`.
"""

from __future__ import annotations

from amaranth import Cat, Const, Mux, Signal, Value, signed
from amaranth.hdl import Module
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import connect, flipped

from cimisa.concurrency import is_concurrent
from cimisa.config import ACC_BITS
from cimisa.errors import KitError
from cimisa.isa import ErrorCode, Isa, Opcode, RunState
from cimisa.timing import rtl_chip_problems
from hw._util import check_cfg
from hw.buffers import Buffer
from hw.controller import Controller, tile_cfg
from hw.crossbar import Crossbar
from hw.decoder import CommandDecoder, decoded_layout
from hw.tile import CimTile, top_members

__all__ = ["CimChip", "top", "ChipError"]


class ChipError(KitError):
    """The RTL cannot generate this configuration's chip (:func:`cimisa.timing.rtl_chip_problems`)."""


def top(cfg):
    """Return the RTL top of ``cfg``: :class:`CimTile` for a chip that executes in order, :class:`CimChip` for a
    concurrent one (:func:`cimisa.concurrency.is_concurrent`); raise :class:`ChipError` if it cannot be built."""
    cfg = check_cfg(cfg)
    problems = rtl_chip_problems(cfg)
    if problems:
        raise ChipError(f"cannot generate the RTL chip of {cfg.name or cfg.tag!r}: {'; '.join(problems)}")
    return CimChip(cfg) if is_concurrent(cfg) else CimTile(cfg)


class CimChip(wiring.Component):
    """A chip of ``n_tiles`` tiles executing a command stream concurrently, with the golden model's results.

    ::

        cmd -> CommandDecoder -> dispatcher -+-> queue 0 -> tile controller 0 (Crossbar, ADC bank, input replica)
                                 (status,    +-> queue 1 -> tile controller 1 ...        | write-back over
                                  hulls)     |                                           v the bus (arbiter)
                                             +-> global controller (LOAD_IN, REQUANT, READ) <-> output buffer
                                                       | writes every input replica          -> res

    The dispatcher takes one decoded element per cycle, in order (spec T2 in ``docs/hw.md``): a tile element (MVM,
    WRITE_W header or payload word) is pushed into its tile's queue (depth ``chip.queue_depth``) when that queue
    has room and the global controller is idle; a chip element (LOAD_IN, REQUANT, READ) goes to the global
    controller when every tile is idle; BARRIER waits for its tile (``local``) or every tile, HALT for every tile;
    a header with an error (the decoder's, or HAZARD: an MVM whose output span meets another tile's hull and
    lattice, the per-tile registers of :class:`cimisa.concurrency.Scoreboard`) stops the chip as soon as the
    global controller is idle (a READ in flight delivers all its words first; tiles still computing are not waited
    for). The dispatcher owns the status register: ``index`` counts dispatched commands; after the stream's
    ``last`` element without HALT the state becomes ERROR/TRUNCATED once every controller is idle.

    Parameters
    ----------
    cfg : HwConfig
        A concurrent configuration with no :func:`cimisa.timing.rtl_chip_problems`.

    Members
    -------
    cmd, res, status : as :class:`hw.tile.CimTile`.
    """

    def __init__(self, cfg):
        self._cfg = cfg = check_cfg(cfg, self)
        problems = rtl_chip_problems(cfg)
        if not is_concurrent(cfg) or problems:
            self._MustUse__silence = True
            raise ChipError(f"CimChip needs a concurrent chip the RTL can build: "
                            f"{'; '.join(problems) or 'one tile or no command queues (use CimTile)'}")
        super().__init__(top_members(cfg))

    @property
    def cfg(self):
        """The hardware configuration."""
        return self._cfg

    def __repr__(self) -> str:
        return f"CimChip({self._cfg.name!r})"

    def elaborate(self, platform):
        cfg = self._cfg
        isa = Isa.of(cfg)
        T, apt, Dq = cfg.n_tiles, cfg.chip.arrays_per_tile, cfg.chip.queue_depth
        m = Module()
        m.submodules.decoder = dec = CommandDecoder(cfg)
        connect(m, flipped(self.cmd), dec.cmd)
        lay = decoded_layout(cfg)

        # ---- global controller, output buffer ------------------------------------------------------------
        m.submodules.glob = glob = Controller(cfg, role="global")
        m.submodules.outbuf = outbuf = Buffer(signed(ACC_BITS), cfg.out_depth)
        connect(m, glob.res, flipped(self.res))
        ob = outbuf.port
        ob_users = [glob.outbuf]

        # ---- tiles ---------------------------------------------------------------------------------------
        tiles, queues = [], []
        for u in range(T):
            q = fifo.SyncFIFO(width=lay.size, depth=Dq)
            ctrl = Controller(cfg, role="tile", array_base=u * apt)
            xbar = Crossbar(tile_cfg(cfg))
            inb = Buffer(signed(cfg.input_bits), cfg.in_depth)
            m.submodules[f"queue{u}"] = q
            m.submodules[f"tile{u}"] = ctrl
            m.submodules[f"crossbar{u}"] = xbar
            m.submodules[f"inbuf{u}"] = inb
            connect(m, ctrl.xbar, xbar.port)
            m.d.comb += [
                ctrl.dec.valid.eq(q.r_rdy), ctrl.dec.payload.eq(q.r_data), q.r_en.eq(ctrl.dec.ready),
                ctrl.res.ready.eq(1),
                # input replica: written by the global controller's broadcast, read by this tile's gather
                inb.port.wr_en.eq(glob.inbuf.wr_en), inb.port.wr_addr.eq(glob.inbuf.wr_addr),
                inb.port.wr_data.eq(glob.inbuf.wr_data),
                inb.port.rd_en.eq(ctrl.inbuf.rd_en), inb.port.rd_addr.eq(ctrl.inbuf.rd_addr),
                ctrl.inbuf.rd_data.eq(inb.port.rd_data),
            ]
            tiles.append(ctrl)
            queues.append(q)
            ob_users.append(ctrl.outbuf)

        # ---- the bus: one user of the output buffer at a time (the arbiter's grant), so the ports are ORed
        for name in ("rd_en", "rd_addr", "wr_en", "wr_addr", "wr_data"):
            val = 0
            for p in ob_users:
                sig = getattr(p, name)
                en = p.rd_en if name.startswith("rd") else p.wr_en
                val = val | (sig if name.endswith("en") else Mux(en, Value.cast(sig), 0))
            m.d.comb += getattr(ob, name).eq(val)
        for p in ob_users:
            m.d.comb += p.rd_data.eq(ob.rd_data)
        # The bus is free in the next cycle when no write-back continues into it; among the requests the
        # lowest tile wins (spec T6).
        bus_free = ~Cat(*[t.wb for t in tiles]).any()
        taken = Const(0, 1)
        for t in tiles:
            m.d.comb += t.bus_gnt.eq(t.bus_req & bus_free & ~taken)
            taken = taken | t.bus_req

        # ---- dispatcher --------------------------------------------------------------------------------------
        e = dec.out.payload
        h = e.header
        op = h.opcode
        state = Signal(RunState)
        error = Signal(ErrorCode)
        index = Signal(isa.index_bits)
        drain = Signal()                           # the stream's last element has been dispatched
        m.d.comb += [self.status.state.eq(state), self.status.error.eq(error), self.status.index.eq(index)]
        running = state == RunState.RUNNING

        tile_idle = Signal(T)
        m.d.comb += tile_idle.eq(Cat(*[~q.r_rdy & t.idle for q, t in zip(queues, tiles)]))
        all_idle = tile_idle.all()
        g_idle = glob.idle

        def tile_of(array):
            return sum((array >= k * apt for k in range(1, T)), Const(0, range(T)))

        arr = Mux(op == Opcode.MVM, h.args.mvm.array,
                  Mux(op == Opcode.WRITE_W, h.args.write_w.array, h.args.barrier.array))
        t_el = Signal(range(T))
        m.d.comb += t_el.eq(tile_of(arr))

        # HAZARD: the MVM's output span and lattice against the other tiles' hulls and lattices. The span (and the
        # lattice mask) is computed from the stream word and registered with the decoder's register (same enable),
        # keeping its multiplier off the handshake path; the adders before the multiplier run beside it.
        mv = h.args.mvm
        aw = len(mv.out_addr) + len(mv.ncols) + len(mv.out_stride) + 1
        lo, hi = Signal(aw), Signal(aw)
        mw = len(mv.out_stride)                               # lattice masks: out_stride - 1 (a power of two) or 0
        mk = Signal(mw)
        w_in = data.View(isa.header_layout, self.cmd.payload.word[:isa.header_layout.size]).args.mvm
        with m.If(self.cmd.valid & self.cmd.ready):
            st = w_in.out_stride
            m.d.sync += [lo.eq(w_in.out_addr),
                         hi.eq(w_in.out_addr + 1 - w_in.out_stride + w_in.ncols * w_in.out_stride),
                         mk.eq(Mux((st != 0) & ((st & (st - 1)) == 0), st - 1, 0))]
        ph = mv.out_addr                                      # the MVM's phase on its lattice
        h_v = Signal(T)
        h_lo = [Signal(aw, name=f"hull_lo{u}") for u in range(T)]
        h_hi = [Signal(aw, name=f"hull_hi{u}") for u in range(T)]
        h_mk = [Signal(mw, name=f"lattice_mask{u}") for u in range(T)]
        h_ph = [Signal(len(ph), name=f"lattice_phase{u}") for u in range(T)]
        conflict = Cat(*[(t_el != u) & h_v[u] & (lo < h_hi[u]) & (h_lo[u] < hi)
                         & (((ph ^ h_ph[u]) & mk & h_mk[u]) == 0) for u in range(T)]).any()

        is_mvm = (op == Opcode.MVM) & ~e.payload
        err = Signal(ErrorCode)
        m.d.comb += err.eq(Mux(e.payload, ErrorCode.NONE, e.error))
        with m.If(is_mvm & (e.error == ErrorCode.NONE) & conflict):
            m.d.comb += err.eq(ErrorCode.HAZARD)

        tile_el = (op == Opcode.MVM) | (op == Opcode.WRITE_W)
        chip_el = (op == Opcode.LOAD_IN) | (op == Opcode.REQUANT) | (op == Opcode.READ)
        barrier = (op == Opcode.BARRIER) & ~e.payload
        halt = (op == Opcode.HALT) & ~e.payload
        q_room = Cat(*[q.w_rdy for q in queues]).bit_select(t_el, 1)
        t_ready = tile_idle.bit_select(t_el, 1)

        go = Signal()                                         # the element is dispatched in this cycle
        m.d.comb += [q.w_data.eq(e.as_value()) for q in queues]
        m.d.comb += glob.dec.payload.eq(e)
        with m.If(~running):
            m.d.comb += dec.out.ready.eq(1)                   # after HALT or an error: accept and discard
        with m.Elif(err != ErrorCode.NONE):
            # once the global controller is idle: a READ in flight delivers all its words first
            m.d.comb += dec.out.ready.eq(g_idle)
            with m.If(dec.out.valid & g_idle):
                m.d.sync += [state.eq(RunState.ERROR), error.eq(err)]
        with m.Elif(tile_el):
            m.d.comb += [dec.out.ready.eq(q_room & g_idle), go.eq(dec.out.valid & q_room & g_idle)]
            for u, q in enumerate(queues):
                m.d.comb += q.w_en.eq(go & (t_el == u))
        with m.Elif(chip_el):
            m.d.comb += [glob.dec.valid.eq(dec.out.valid & all_idle),
                         dec.out.ready.eq(glob.dec.ready & all_idle), go.eq(dec.out.valid & all_idle & glob.dec.ready)]
        with m.Elif(barrier):
            ok = Mux(h.args.barrier.local, t_ready, all_idle) & g_idle
            m.d.comb += [dec.out.ready.eq(ok), go.eq(dec.out.valid & ok)]
        with m.Elif(halt):
            ok = all_idle & g_idle
            m.d.comb += dec.out.ready.eq(ok)
            with m.If(dec.out.valid & ok):
                m.d.sync += state.eq(RunState.HALTED)

        # Counting, hulls and the end of the stream (for dispatched elements).
        with m.If(go):
            with m.If(Mux(e.payload, e.final, (op != Opcode.WRITE_W) & (op != Opcode.LOAD_IN))):
                m.d.sync += index.eq(index + 1)
            with m.If(e.last):
                m.d.sync += drain.eq(1)
            with m.If(is_mvm):
                for u in range(T):
                    with m.If(t_el == u):
                        with m.If(h_v[u]):
                            # the lattice narrows below the lowest bit where the phases differ
                            common = Signal(mw, name=f"common{u}")
                            diff = Signal(mw, name=f"diff{u}")
                            m.d.comb += [common.eq(h_mk[u] & mk), diff.eq((h_ph[u] ^ ph) & common)]
                            # (diff & -diff) - 1 without adders: bit i set while diff[0..i] are all 0 (a prefix
                            # OR), so the dispatch handshake does not reach a carry chain here
                            below = Cat(*[~diff[:i + 1].any() for i in range(mw)])
                            m.d.sync += [h_lo[u].eq(Mux(lo < h_lo[u], lo, h_lo[u])),
                                         h_hi[u].eq(Mux(hi > h_hi[u], hi, h_hi[u])),
                                         h_mk[u].eq(Mux(diff == 0, common, below))]
                        with m.Else():
                            m.d.sync += [h_v[u].eq(1), h_lo[u].eq(lo), h_hi[u].eq(hi), h_mk[u].eq(mk),
                                         h_ph[u].eq(ph)]
            with m.Elif(barrier & h.args.barrier.local):
                m.d.sync += h_v.eq(h_v & ~(Const(1, T) << t_el))
            with m.Elif(barrier | chip_el):
                m.d.sync += h_v.eq(0)
        with m.If(drain & running & all_idle & g_idle):
            m.d.sync += [state.eq(RunState.ERROR), error.eq(ErrorCode.TRUNCATED)]
        return m
