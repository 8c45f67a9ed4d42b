"""Programs: the command stream of a placed and scheduled model (weights, addresses, REQUANT, barriers).

:func:`compile_model` runs the passes ``factors -> quantised factors -> placement -> schedule -> programs``.
Each mapped matmul gets a :class:`MatmulProgram` (compute commands only); :class:`CompiledModel` holds the
weight programming (``WRITE_W`` of every used array) and builds complete streams with :meth:`full_stream`.

Buffers. Matmuls that read the same input (one ``input_group``: Q, K, V of a layer; gate and up) form a *phase*
and are live together; phases are sequential, so every phase's buffers start at address 0. In a phase the input
buffer holds the shared ``x`` (``in_ext`` long) then each member's stage-2 input (``k*q``); the output buffer
holds each member's stage-1 accumulators and then its ``y`` (``out_ext``). Addresses of a stage-2 MVM fold the
Monarch permutations: row ``c`` of L block ``a`` reads ``h[c*k + a]`` and column ``t`` writes ``y[t*k + a]``.

Co-location (``auto`` with ``colocate=True``): stage-1 blocks of a phase's members that share rows are fired by
one MVM; their accumulators are interleaved by block (``[block i][member][q]``) so the MVM's outputs stay one
strided range, and each member's REQUANT gathers its blocks back (``k`` REQUANTs of ``q`` values). The MVM is in
the program of the phase's first member; the others list it in ``depends_on`` and must run after it with the
same input (``full_stream`` does so).

Every MVM's addresses are derived per row and per column from the tiles it fires and checked to be one
arithmetic progression each; the window must contain no cell of another tile. A violation is a kit bug and
raises ``RuntimeError``.

Concurrent chips (:func:`cimisa.concurrency.is_concurrent`: several tiles with command queues). The passes above
number the placement's logical arrays; :func:`for_chip` (which :func:`compile_model` applies on such a chip)
turns the programs into a stream whose MVMs run side by side on the tiles and that has no hazard:

* **arrays**: every MVM and WRITE_W names the physical array of the chip map
  (:func:`compiler.chipmap.map_to_chip` on the configuration, ``fixed`` budget: the arrays of one stage on
  different tiles); a placement that needs weight-reload epochs there is refused (:class:`ShapeError`);
* **order**: within each run of MVMs (a stage: between two chip commands) the MVMs are list-scheduled over the
  tiles: each tile keeps its own MVMs in schedule order; an MVM is *ready* when the earlier MVMs of other tiles
  that write one of its outputs are out (unless both accumulate: accumulations commute), *free* when it needs
  no barrier. The next MVM is a free one, on another tile than the last if possible, from the tile with the
  most MVMs left, ties round-robin from the last tile (so consecutive MVMs alternate tiles as long as the run
  allows it); only when none is free does the earliest ready MVM go, after its barriers. Weight programming
  alternates tiles row by row (each array's rows in order);
* **barriers**: the stream is walked with :class:`cimisa.concurrency.Scoreboard`; before an MVM whose outputs
  meet another tile's hull and lattice goes a local ``BARRIER`` naming an array of that tile (as many as it meets). The
  all-tile barriers of the sequential programs go: REQUANT, READ and LOAD_IN wait for every tile anyway. Each
  local barrier is needed: without it the MVM after it is a HAZARD.

Results and final status equal those of the sequential stream (``tests/test_concurrent_streams.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from cimisa.concurrency import Scoreboard, is_concurrent, merge_lattice, out_mask, out_span
from cimisa.config import HwConfig
from cimisa.errors import ModelError, ShapeError
from cimisa.isa import Command, Opcode
from compiler.geometry import MatmulGeom, geometry
from compiler.kinds import AdcMode, Strategy
from compiler.place import Placement, as_strategy, place
from compiler.quant import QuantizedMonarch, default_requant_shift, quantize_dense, quantize_monarch
from compiler.schedule import Schedule, schedule

__all__ = ["MatmulProgram", "CompiledModel", "compile_model", "build_programs", "Buffers", "allocate_buffers",
           "for_chip", "chip_arrays", "concurrent_program", "interleave_tiles"]


@dataclass(frozen=True)
class MatmulProgram:
    """Compute commands of one matmul and where its input and output live.

    The runner loads ``x_q`` zero-padded to ``in_len`` at ``inbuf[in_addr:]``, executes ``commands`` (MVM,
    REQUANT, BARRIER only) and finds ``y`` (``out_len = out_features`` values) at ``outbuf[out_addr:]``.
    ``depends_on`` names programs that must run first with the same input (co-located stage-1 MVMs).
    """

    name: str
    in_addr: int
    in_len: int
    out_addr: int
    out_len: int
    requant_shift: int
    commands: tuple[Command, ...] = field(repr=False)
    depends_on: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (f"MatmulProgram({self.name!r}, in={self.in_addr}+{self.in_len}, out={self.out_addr}+"
                f"{self.out_len}, shift={self.requant_shift}, commands={len(self.commands)})")


@dataclass(frozen=True)
class Buffers:
    """Addresses of one matmul: ``x`` (in), stage-2 input ``h_in`` (in), stage-1 output, ``y`` (out)."""

    x: int
    in_len: int
    h_in: int
    h_out: int
    y: int
    # interleaved stage-1 output: (base, members in the bundle, index of this member); None when contiguous
    inter: tuple[int, int, int] | None = None

    def h_out_addr(self, n: np.ndarray, q: int) -> np.ndarray:
        if self.inter is None:
            return self.h_out + n
        base, gsize, j = self.inter
        return base + (n // q) * (gsize * q) + j * q + n % q


def _bundles(placement: Placement) -> dict[int, tuple[int, ...]]:
    """Return matmul -> the co-located members of its phase (in order), for matmuls in multi-matmul groups."""
    out: dict[int, tuple[int, ...]] = {}
    for members in placement.groups:
        ms = {placement.tiles[i].matmul for i in members}
        if len(ms) > 1:
            for m in ms:
                out[m] = tuple(sorted(set(out.get(m, ())) | ms))
    # close over the phase: every member of a bundle carries the whole bundle
    changed = True
    while changed:
        changed = False
        for b in list(out.values()):
            for x in b:
                if out.get(x) != b and set(out.get(x, ())) | set(b) != set(out.get(x, ())):
                    out[x] = tuple(sorted(set(out.get(x, ())) | set(b)))
                    changed = True
    return out


def allocate_buffers(placement: Placement, hw: HwConfig) -> dict[int, Buffers]:
    """Give every matmul its buffer addresses (module docstring); raise ShapeError if a phase does not fit."""
    geoms = placement.matmuls
    linear = placement.strategy == Strategy.LINEAR
    bundles = _bundles(placement)
    phases: dict[str, list[int]] = {}
    for mi, g in enumerate(geoms):
        phases.setdefault(g.input_group, []).append(mi)
    out: dict[int, Buffers] = {}
    for grp, members in phases.items():
        in_ext = max((geoms[m].in_features if linear else geoms[m].in_ext) for m in members)
        ia, oa = in_ext, 0
        inter_base: dict[tuple[int, ...], int] = {}
        for m in members:
            g = geoms[m]
            if linear:
                out[m] = Buffers(x=0, in_len=g.in_features, h_in=0, h_out=0, y=oa)
                oa += g.out_features
                continue
            h_in = ia
            ia += g.mid_len
            bund = bundles.get(m)
            if bund:
                if bund not in inter_base:
                    inter_base[bund] = oa
                    oa += sum(geoms[x].mid_len for x in bund)
                y = oa
                oa += g.out_ext
                out[m] = Buffers(x=0, in_len=g.in_ext, h_in=h_in, h_out=0, y=y,
                                 inter=(inter_base[bund], len(bund), bund.index(m)))
            else:
                h_out = oa
                oa += max(g.mid_len, g.out_ext)
                out[m] = Buffers(x=0, in_len=g.in_ext, h_in=h_in, h_out=h_out, y=h_out)
        if ia > hw.in_depth or oa > hw.out_depth:
            raise ShapeError(f"buffers too small for phase {grp!r}: needs {ia} input and {oa} output words, "
                             f"{hw.name} has {hw.in_depth} and {hw.out_depth}")
    return out


def _tile_rows_cols(t, g: MatmulGeom, buf: Buffers):
    """Return (array rows, input addresses, array cols, output addresses) of tile ``t``."""
    rho = np.arange(t.rows)
    kap = np.arange(t.cols)
    rows = t.row0 + rho * t.step
    cols = t.col0 + kap * t.step
    k = g.nblocks
    if t.factor == "W":
        ins = buf.x + t.r0 + rho
        outs = buf.y + t.c0 + kap
    elif t.factor == "R":
        p, q = g.r_shape[2], g.r_shape[1]
        ins = buf.x + t.block * p + t.r0 + rho
        outs = buf.h_out_addr(t.block * q + t.c0 + kap, q)
    else:
        ins = buf.h_in + (t.r0 + rho) * k + t.block
        outs = buf.y + (t.c0 + kap) * k + t.block
    return rows, ins, cols, outs


def _affine(pos: np.ndarray, addr: np.ndarray, lo: int, what: str, full: int | None) -> tuple[int, int]:
    order = np.argsort(pos, kind="stable")
    pos, addr = pos[order], addr[order]
    if len(np.unique(pos)) != len(pos):
        # rows shared by co-located tiles: allowed only when they read the same address
        upos, first = np.unique(pos, return_index=True)
        if not np.array_equal(addr, addr[first][np.searchsorted(upos, pos)]):
            raise RuntimeError(f"{what}: tiles sharing a line need different addresses (kit bug)")
        pos, addr = upos, addr[first]
    if full is not None and len(pos) != full:
        raise RuntimeError(f"{what}: window has {full} columns but tiles cover {len(pos)} (kit bug)")
    if len(pos) == 1:
        stride = 1
    else:
        d_pos, d_addr = pos[1] - pos[0], addr[1] - addr[0]
        if d_addr % d_pos:
            raise RuntimeError(f"{what}: addresses are not one arithmetic progression (kit bug)")
        stride = int(d_addr // d_pos)
    base = int(addr[0] - (pos[0] - lo) * stride)
    if stride < 0 or base < 0 or not np.array_equal(addr, base + (pos - lo) * stride):
        raise RuntimeError(f"{what}: addresses are not one arithmetic progression (kit bug)")
    return base, stride


def build_programs(placement: Placement, sched: Schedule, hw: HwConfig, shifts: dict[int, int],
                   names: list[str] | None = None) -> tuple[dict[str, MatmulProgram], dict[int, Buffers]]:
    """Return the programs (by matmul name) and buffers of a scheduled placement."""
    geoms = placement.matmuls
    bufs = allocate_buffers(placement, hw)
    bundles = _bundles(placement)
    tiles = placement.tiles
    occ: dict[int, np.ndarray] = {}
    for n, t in enumerate(tiles):
        o = occ.get(t.array)
        if o is None:
            o = occ[t.array] = np.full((hw.rows, hw.logical_cols), -1, dtype=np.int64)
        o[t.row0:t.row_end:t.step, t.col0:t.col_end:t.step] = n
    mvms: dict[tuple[int, str], list[Command]] = {}
    for key, idxs in sched.stages.items():
        cmds = mvms.setdefault(key, [])
        for ai in idxs:
            a = sched.activations[ai]
            members = placement.groups[a.group]
            rp, ra, cp, ca = [], [], [], []
            for i in members:
                t = tiles[i]
                g = geoms[t.matmul]
                rows, ins, cols, outs = _tile_rows_cols(t, g, bufs[t.matmul])
                sel = (rows >= a.row0) & (rows < a.row0 + a.nrows)
                rp.append(rows[sel])
                ra.append(ins[sel])
                cp.append(cols)
                ca.append(outs)
            what = f"activation {ai} (array {a.array}, group {a.group})"
            in_addr, in_stride = _affine(np.concatenate(rp), np.concatenate(ra), a.row0, what + " rows", None)
            out_addr, out_stride = _affine(np.concatenate(cp), np.concatenate(ca), a.col0, what + " cols",
                                           a.ncols)
            win = occ[a.array][a.row0:a.row0 + a.nrows, a.col0:a.col0 + a.ncols]
            if not np.isin(win[win >= 0], np.asarray(members)).all():
                raise RuntimeError(f"{what}: window holds cells of other tiles (kit bug)")
            cmds.append(Command.mvm(array=a.array, row0=a.row0, nrows=a.nrows, col0=a.col0, ncols=a.ncols,
                                    in_addr=in_addr, in_stride=in_stride, out_addr=out_addr,
                                    out_stride=out_stride, accumulate=a.accumulate, adc_bits=a.adc_bits,
                                    adc_shift=a.adc_shift))
    progs: dict[str, MatmulProgram] = {}
    linear = placement.strategy == Strategy.LINEAR
    for mi, g in enumerate(geoms):
        b = bufs[mi]
        name = names[mi] if names else g.name
        cmds: list[Command] = []
        if linear:
            cmds += mvms.get((mi, "W"), [])
            cmds.append(Command.barrier())
            progs[name] = MatmulProgram(name, b.x, b.in_len, b.y, g.out_features, 0, tuple(cmds))
            continue
        shift = int(shifts.get(mi, 0))
        cmds += mvms.get((mi, "R"), [])
        cmds.append(Command.barrier())
        k, q = g.nblocks, g.r_shape[1]
        if b.inter is None:
            cmds.append(Command.requant(src=b.h_out, count=g.mid_len, dst=b.h_in, dst_stride=1, shift=shift))
        else:
            base, gsize, j = b.inter
            for i in range(k):
                cmds.append(Command.requant(src=base + i * gsize * q + j * q, count=q, dst=b.h_in + i * q,
                                            dst_stride=1, shift=shift))
        cmds.append(Command.barrier())
        cmds += mvms.get((mi, "L"), [])
        cmds.append(Command.barrier())
        deps = tuple(geoms[x].name for x in bundles.get(mi, ()) if x < mi)
        progs[name] = MatmulProgram(name, b.x, b.in_len, b.y, g.out_features, shift, tuple(cmds), deps)
    return progs, bufs


def weight_commands(placement: Placement, hw: HwConfig, quant: dict[str, QuantizedMonarch]) -> list[Command]:
    """Return WRITE_W commands programming every used array (one per used row, spanning its used logical
    columns: WRITE_W carries weights, the machine derives their cells, :mod:`cimisa.formats`)."""
    geoms = placement.matmuls
    images: dict[int, np.ndarray] = {}
    used: dict[int, np.ndarray] = {}
    for t in placement.tiles:
        q = quant[geoms[t.matmul].name]
        if t.factor == "R":
            blk = q.R[t.block].T          # (p, q): cell (m, j) = R[i, j, m]
        elif t.factor == "L":
            blk = q.L[t.block].T          # (r, s): cell (c, t) = L[a, t, c]
        else:
            blk = q.W.T                   # (in, out)
        sub = blk[t.r0:t.r0 + t.rows, t.c0:t.c0 + t.cols]
        img = images.get(t.array)
        if img is None:
            img = images[t.array] = np.zeros((hw.rows, hw.logical_cols), dtype=np.int64)
            used[t.array] = np.zeros((hw.rows, hw.logical_cols), dtype=bool)
        img[t.row0:t.row_end:t.step, t.col0:t.col_end:t.step] = sub
        used[t.array][t.row0:t.row_end:t.step, t.col0:t.col_end:t.step] = True
    cmds: list[Command] = []
    for a in sorted(images):
        img, u = images[a], used[a]
        for r in np.nonzero(u.any(axis=1))[0]:
            cols = np.nonzero(u[r])[0]
            lo, hi = int(cols[0]), int(cols[-1]) + 1
            cmds.append(Command.write_w(int(a), int(r), lo, img[r, lo:hi].tolist()))
    return cmds


@dataclass(frozen=True, eq=False)
class CompiledModel:
    """A model compiled for one hardware configuration and strategy (see :func:`compile_model`)."""

    hw: HwConfig
    strategy: Strategy
    nblocks: int
    placement: Placement = field(repr=False)
    weight_commands: tuple[Command, ...] = field(repr=False)
    programs: dict[str, MatmulProgram] = field(repr=False)
    quant: dict[str, QuantizedMonarch] = field(repr=False)
    schedule: Schedule | None = field(default=None, repr=False)
    adc_mode: AdcMode | str = AdcMode.EXACT
    #: logical -> physical array of the commands (:func:`for_chip`); None: the commands name logical arrays
    physical: tuple[int, ...] | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return (f"CompiledModel(hw={self.hw.name!r}, strategy={str(self.strategy)!r}, nblocks={self.nblocks}, "
                f"arrays={self.placement.n_arrays}, programs={len(self.programs)})")

    def with_requant_shifts(self, shifts: dict[str, int]) -> CompiledModel:
        """Return a copy whose REQUANT commands use ``shifts`` (by matmul name; others unchanged)."""
        unknown = sorted(set(shifts) - set(self.programs))
        if unknown:
            raise ModelError(f"no mapped matmul named {unknown[0]!r}")
        progs = {}
        for name, p in self.programs.items():
            if name not in shifts or self.strategy == Strategy.LINEAR:
                progs[name] = p
                continue
            s = int(shifts[name])
            cmds = tuple(Command(Opcode.REQUANT, dict(c.args, shift=s)) if c.op is Opcode.REQUANT else c
                         for c in p.commands)
            progs[name] = replace(p, requant_shift=s, commands=cmds)
        return replace(self, programs=progs)

    def program_order(self, names=None) -> list[str]:
        """Return program names in execution order (model order), restricted to ``names`` plus dependencies."""
        if names is None:
            return list(self.programs)
        want = set(names)
        for n in list(want):
            if n not in self.programs:
                raise ModelError(f"no mapped matmul named {n!r}")
            want.update(self.programs[n].depends_on)
        return [n for n in self.programs if n in want]

    def full_stream(self, inputs: dict[str, np.ndarray]) -> list[Command]:
        """Return weights + for each matmul in ``inputs`` (and its dependencies): LOAD_IN, compute, READ; HALT.

        Each input is a 1-D integer vector of at most ``in_len`` values (zero-padded). Co-located matmuls must
        get the same input as the programs they depend on.
        """
        cmds = list(self.weight_commands)
        for name in self.program_order(inputs):
            p = self.programs[name]
            src = name if name in inputs else next(d for d in p.depends_on if d in inputs)
            x = np.asarray(inputs[src], dtype=np.int64).reshape(-1)
            for d in p.depends_on:
                if d in inputs and not np.array_equal(np.asarray(inputs[d]).reshape(-1), x):
                    raise ModelError(f"{name!r} shares its stage-1 activations with {d!r}: give both the same "
                                     f"input")
            if len(x) > p.in_len:
                raise ShapeError(f"input of {name!r} has {len(x)} values, at most {p.in_len} allowed")
            xp = np.zeros(p.in_len, dtype=np.int64)
            xp[:len(x)] = x
            cmds.append(Command.load_in(p.in_addr, xp.tolist()))
            cmds += p.commands
            cmds.append(Command.read(p.out_addr, p.out_len))
        cmds.append(Command.halt())
        return cmds


def chip_arrays(placement: Placement, hw: HwConfig, chipmap=None) -> tuple[int, ...]:
    """The physical array of every logical array of ``placement`` on the concurrent chip ``hw``: ``chipmap``'s
    (a :class:`compiler.chipmap.ChipMap` for ``hw``), else :func:`compiler.chipmap.map_to_chip` with the
    ``fixed`` budget (the map ``mapper build`` gives the default budget). A placement that needs more arrays than
    ``hw`` has, or weight-reload epochs, has no single stream: :class:`ShapeError`."""
    from compiler.chipmap import map_to_chip  # noqa: PLC0415
    if placement.n_arrays > hw.n_arrays:
        raise ShapeError(f"{placement.strategy} needs {placement.n_arrays} arrays; the chip {hw.name} has "
                         f"{hw.n_arrays}: a concurrent stream cannot reload weights (use a bigger chip)")
    cm = chipmap if chipmap is not None else map_to_chip(placement, hw)
    if cm.hw.n_arrays != hw.n_arrays or cm.hw.chip.arrays_per_tile != hw.chip.arrays_per_tile:
        raise ShapeError(f"the chip map is for {cm.hw.name} ({cm.hw.n_arrays} arrays), the stream for {hw.name} "
                         f"({hw.n_arrays})")
    if len(cm.epochs) > 1:
        raise ShapeError(f"{placement.strategy} needs {len(cm.epochs)} weight-reload epochs on {hw.name}: a "
                         f"concurrent stream holds one (use a bigger chip)")
    if len(cm.physical) != placement.n_arrays:
        raise ShapeError(f"the chip map has {len(cm.physical)} arrays, the placement {placement.n_arrays}")
    return tuple(int(a) for a in cm.physical)


def _turn(tile: int, last: int | None, left: int, n_tiles: int) -> tuple:
    """Sort key of the alternation over tiles: another tile than ``last`` first, then the tile with the most
    commands ``left``, then round-robin from the tile after ``last``."""
    return tile == last, -left, (tile - (last if last is not None else -1) - 1) % n_tiles


def _out_set(args) -> frozenset[int]:
    return frozenset(range(args["out_addr"], args["out_addr"] + args["ncols"] * args["out_stride"],
                           args["out_stride"]))


def _blocks(i: int, sb: Scoreboard, tiles: list[int], mvms: list[Command], spans: list[tuple[int, int]],
            done: list[bool]) -> int:
    """How many pending MVMs of other tiles the record (hull and lattice, :class:`Scoreboard`) of ``i``'s tile
    would newly meet once ``i`` is issued."""
    t, (lo, hi), a_i = tiles[i], spans[i], mvms[i].args
    h, lat = sb.hulls.get(t), sb.lattices.get(t)
    mask, ph = out_mask(a_i), a_i["out_addr"]
    new = ((lo, hi), (mask, ph)) if h is None else ((min(h[0], lo), max(h[1], hi)),
                                                    (merge_lattice(*lat, mask, ph), lat[1]))

    def meets(j, rec) -> bool:
        (a, b), (mk, p) = rec
        lo_j, hi_j = spans[j]
        return lo_j < b and a < hi_j and not (mvms[j].args["out_addr"] ^ p) & out_mask(mvms[j].args) & mk

    return sum(1 for j in range(len(spans)) if j != i and not done[j] and tiles[j] != t and meets(j, new)
               and (h is None or not meets(j, (h, lat))))


def _order_mvms(mvms: list[Command], sb: Scoreboard, last: int | None) -> tuple[list[Command], int | None]:
    """List-schedule one run of MVMs (module docstring) and put the local barriers they need; return the
    commands and the tile of the last MVM. ``sb`` is stepped over every command returned."""
    n_tiles = sb.n_tiles
    tiles = [sb.tile_of(c.args["array"]) for c in mvms]
    outs = [_out_set(c.args) for c in mvms]
    spans = [out_span(c.args) for c in mvms]
    # an MVM waits for the earlier ones of other tiles that write one of its outputs, unless both accumulate
    # (accumulations commute); MVMs of one tile keep their order anyway
    deps = [[j for j in range(i) if tiles[j] != tiles[i] and not (mvms[i].args["accumulate"]
                                                                   and mvms[j].args["accumulate"])
             and not outs[i].isdisjoint(outs[j])] for i in range(len(mvms))]
    queues: dict[int, list[int]] = {}
    for i, t in enumerate(tiles):
        queues.setdefault(t, []).append(i)
    head = dict.fromkeys(queues, 0)
    done = [False] * len(mvms)
    out: list[Command] = []
    for _ in range(len(mvms)):
        ready = [queues[t][head[t]] for t in queues if head[t] < len(queues[t])]
        ready = [i for i in ready if all(done[j] for j in deps[i])]
        free = [i for i in ready if sb.conflict(mvms[i].args) is None]
        if free:
            # the fewest MVMs of other tiles newly blocked by the grown hull and lattice; then another tile than the
            # last one if possible, the one with the most MVMs left (so the run keeps alternating to its end); ties
            # round-robin from the last tile
            i = min(free, key=lambda i: (_blocks(i, sb, tiles, mvms, spans, done),
                                         *_turn(tiles[i], last, len(queues[tiles[i]]) - head[tiles[i]], n_tiles)))
        else:
            i = min(ready)
            while (u := sb.needs_barrier(mvms[i].args)) is not None:
                bar = Command.barrier(array=u * sb.apt)
                sb.step(bar.op, bar.args)
                out.append(bar)
        sb.step(Opcode.MVM, mvms[i].args)
        out.append(mvms[i])
        done[i] = True
        head[tiles[i]] += 1
        last = tiles[i]
    return out, last


def concurrent_program(commands, hw: HwConfig, physical: tuple[int, ...]) -> list[Command]:
    """A sequential program's commands (MVM, REQUANT, BARRIER; logical arrays) for the concurrent chip ``hw``:
    physical arrays, MVM runs ordered over the tiles, local barriers where needed, no all-tile barrier (module
    docstring). The program must start with every tile synchronised (it follows a LOAD_IN)."""
    sb = Scoreboard(hw)
    out: list[Command] = []
    run: list[Command] = []
    last = None

    def flush():
        nonlocal last
        if run:
            cmds, last = _order_mvms(run, sb, last)
            out.extend(cmds)
            run.clear()

    for c in commands:
        if c.op is Opcode.MVM:
            run.append(Command(Opcode.MVM, dict(c.args, array=physical[c.args["array"]])))
            continue
        flush()
        if c.op is Opcode.BARRIER and not c.args.get("local", 0):
            continue                       # every boundary of an MVM run is a chip command: it waits anyway
        if c.op is Opcode.BARRIER:
            c = Command.barrier(array=physical[c.args["array"]])
        sb.step(c.op, c.args)
        out.append(c)
    flush()
    return out


def interleave_tiles(commands, hw: HwConfig) -> list[Command]:
    """Tile commands (WRITE_W) reordered to alternate tiles, each tile's commands in their order: next from the
    tile, other than the last one's, with the most commands left (ties: round-robin), so that as few neighbours
    as the tile counts allow share a tile."""
    apt = hw.chip.arrays_per_tile
    per: dict[int, list[Command]] = {}
    for c in commands:
        per.setdefault(c.args["array"] // apt, []).append(c)
    head = dict.fromkeys(per, 0)
    out: list[Command] = []
    last = None
    for _ in range(len(commands)):
        t = min((u for u in per if head[u] < len(per[u])), key=lambda u: _turn(u, last, len(per[u]) - head[u],
                                                                                 hw.n_tiles))
        out.append(per[t][head[t]])
        head[t] += 1
        last = t
    return out


def for_chip(compiled: CompiledModel, hw: HwConfig | None = None, chipmap=None) -> CompiledModel:
    """``compiled`` (logical arrays) as the stream of the concurrent chip ``hw`` (default ``compiled.hw``; see
    the module docstring); on a configuration that is not concurrent, ``compiled`` itself."""
    hw = compiled.hw if hw is None else hw
    if compiled.physical is not None:
        raise ValueError("the model is already compiled for a chip")
    if not is_concurrent(hw):
        return compiled if hw is compiled.hw else replace(compiled, hw=hw)
    phys = chip_arrays(compiled.placement, hw, chipmap)
    progs = {name: replace(p, commands=tuple(concurrent_program(p.commands, hw, phys)))
             for name, p in compiled.programs.items()}
    wc = [Command(c.op, dict(c.args, array=phys[c.args["array"]]), c.data) for c in compiled.weight_commands]
    return replace(compiled, hw=hw, programs=progs, weight_commands=tuple(interleave_tiles(wc, hw)), physical=phys)


def compile_model(spec, factors: dict, hw: HwConfig, *, strategy: Strategy | str = Strategy.AUTO,
                  arrays: int | None = None, requant_shifts: dict[str, int] | None = None,
                  adc_mode: AdcMode | str = AdcMode.EXACT, colocate: bool = False,
                  placement: Placement | None = None, concurrent: bool = True, chipmap=None) -> CompiledModel:
    """Compile a model: quantise factors, place, schedule, and build programs and weight commands.

    ``factors`` maps every mapped matmul name to ``(R, L, bias)`` (float, numpy or torch; bias is ignored here:
    it is added digitally by the runner). ``requant_shifts`` overrides :func:`compiler.quant.default_requant_shift`
    per matmul. ``adc_mode`` is ``"exact"`` (lossless when the configuration allows) or ``"paper"`` (the
    paper's ADC resolutions, see :mod:`compiler.schedule`). ``colocate`` lets ``auto`` fire same-input stage-1
    blocks together (programs then carry ``depends_on``). On a concurrent chip (:func:`is_concurrent`) the
    programs are :func:`for_chip`'s (physical arrays of ``chipmap``, default the ``fixed`` map; ordered over the
    tiles, local barriers), unless ``concurrent`` is False (the logical programs, e.g. to rewrite them first).
    """
    mapped = spec.mapped()
    missing = [m.name for m in mapped if m.name not in factors]
    if missing:
        raise ModelError(f"no Monarch factors for {len(missing)} mapped matmul(s), e.g. {missing[0]!r}")
    nbs = {int(np.shape(factors[m.name][0])[0]) for m in mapped}
    if len(nbs) != 1:
        raise ShapeError(f"all matmuls must use one nblocks for placement, found {sorted(nbs)}")
    nb = nbs.pop()
    geoms = geometry(spec, nb)
    quant: dict[str, QuantizedMonarch] = {}
    for m, g in zip(mapped, geoms):
        R, L = factors[m.name][0], factors[m.name][1]
        if tuple(np.shape(R)) != g.r_shape or tuple(np.shape(L)) != g.l_shape:
            raise ShapeError(f"{m.name}: factors R {tuple(np.shape(R))}, L {tuple(np.shape(L))} do not match "
                             f"the Monarch shapes {g.r_shape}, {g.l_shape} for nblocks {nb}")
        q = quantize_monarch(m.name, R, L, m.in_features, m.out_features, hw.weight_bits)
        if strategy == Strategy.LINEAR:
            q = quantize_dense(q, R, L, hw.weight_bits)
        quant[m.name] = q
    strategy = as_strategy(strategy)
    if placement is None:
        placement = place(geoms, hw, strategy, arrays=arrays, colocate=colocate)
    if placement.n_arrays > hw.n_arrays:
        raise ShapeError(f"{strategy} placement needs {placement.n_arrays} arrays, {hw.name} has {hw.n_arrays}")
    sched = schedule(placement, hw, adc_mode)
    shifts = {}
    for mi, m in enumerate(mapped):
        if requant_shifts and m.name in requant_shifts:
            shifts[mi] = int(requant_shifts[m.name])
        else:
            shifts[mi] = default_requant_shift(quant[m.name], hw.input_bits)
    progs, _ = build_programs(placement, sched, hw, shifts)
    wc = weight_commands(placement, hw, quant)
    out = CompiledModel(hw=hw, strategy=strategy, nblocks=nb, placement=placement, weight_commands=tuple(wc),
                        programs=progs, quant=quant, schedule=sched, adc_mode=adc_mode)
    return for_chip(out, chipmap=chipmap) if concurrent and is_concurrent(hw) else out
