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
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from cimisa.config import HwConfig
from cimisa.errors import ModelError, ShapeError
from cimisa.isa import Command, Opcode
from compiler.geometry import MatmulGeom, geometry
from compiler.kinds import AdcMode, Strategy
from compiler.place import Placement, as_strategy, place
from compiler.quant import QuantizedMonarch, default_requant_shift, quantize_dense, quantize_monarch
from compiler.schedule import Schedule, schedule

__all__ = ["MatmulProgram", "CompiledModel", "compile_model", "build_programs", "Buffers", "allocate_buffers"]


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


def compile_model(spec, factors: dict, hw: HwConfig, *, strategy: Strategy | str = Strategy.AUTO,
                  arrays: int | None = None, requant_shifts: dict[str, int] | None = None,
                  adc_mode: AdcMode | str = AdcMode.EXACT, colocate: bool = False,
                  placement: Placement | None = None) -> CompiledModel:
    """Compile a model: quantise factors, place, schedule, and build programs and weight commands.

    ``factors`` maps every mapped matmul name to ``(R, L, bias)`` (float, numpy or torch; bias is ignored here:
    it is added digitally by the runner). ``requant_shifts`` overrides :func:`compiler.quant.default_requant_shift`
    per matmul. ``adc_mode`` is ``"exact"`` (lossless when the configuration allows) or ``"paper"`` (the
    paper's ADC resolutions, see :mod:`compiler.schedule`). ``colocate`` lets ``auto`` fire same-input stage-1
    blocks together (programs then carry ``depends_on``).
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
    return CompiledModel(hw=hw, strategy=strategy, nblocks=nb, placement=placement, weight_commands=tuple(wc),
                         programs=progs, quant=quant, schedule=sched, adc_mode=adc_mode)
