"""Coverage of a command stream: the bins it hits (opcodes, field corners, value-level events) and its counts.

:func:`covered` replays a command list on the semantics and returns the coverage bins it hits (see
:func:`coverage_bins`): every opcode, every field corner, and value-level bins (ADC saturation at both ends,
floor rounding of negative column sums, REQUANT ties and saturation, results observed by a READ).
:func:`stream_stats` returns counts (how many MVM outputs are non-zero, exact, saturated, ...).
:func:`cosim_coverage_bins` is the subset co-simulation reports on. On a concurrent chip both add the concurrency
bins (:func:`chip_coverage_bins`: MVMs per tile, overlap, bus competition, queue runs, busy and idle barriers).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from types import SimpleNamespace

import numpy as np

from cimisa import kernel, rules, semantics
from cimisa.concurrency import CHIP_OPS, Scoreboard, is_concurrent, out_span
from cimisa.config import HwConfig
from cimisa.isa import PAYLOAD, Command, ErrorCode, Isa, Opcode
from cimisa.timing import mvm_back, mvm_cycles, mvm_front

__all__ = ["coverage_bins", "covered", "stream_stats", "StreamStats", "cosim_coverage_bins", "cosim_covered",
           "chip_coverage_bins", "HAZARD_BIN"]

#: The bin of a stream that stops with HAZARD (only illegal streams reach it: ``coverage_bins(cfg, illegal=True)``).
HAZARD_BIN = "chip:hazard"


def chip_coverage_bins(cfg: HwConfig) -> set[str]:
    """Return the concurrency bins of a legal stream on ``cfg`` (none unless ``is_concurrent(cfg)``).

    * ``chip:mvm_tile=<t>``: an MVM on each tile;
    * ``chip:overlap``: an MVM on a tile while another tile has MVMs since its last synchronisation (so they may
      run at the same time); ``chip:overlap_all``: every tile has such MVMs at once;
    * ``chip:equal_back_to_back``: two MVMs in a row on different tiles with the same cycles (their write-backs
      compete for the bus); ``chip:staggered_request``: two MVMs in a row, the second on a lower tile with one
      cycle less before its write-back and the same write-back (both request the bus in the same cycle when the
      tiles start idle; the lower tile wins); needs 3 rows or more;
    * ``chip:queue_run`` / ``chip:queue_run_long``: ``queue_depth + 1`` / ``+ 2`` MVMs in a row to one tile (its
      queue fills / the dispatcher waits for it);
    * ``chip:barrier_local_busy`` / ``_idle``: a local BARRIER of a tile with / without tile commands since its
      last synchronisation; ``chip:barrier_all_busy`` / ``_idle``: an all-tile BARRIER with / without them;
    * ``chip:write_w_while_busy``: a WRITE_W while another tile has MVMs since its last synchronisation;
    * ``chip:chip_op_while_busy``: a chip command (LOAD_IN, REQUANT, READ, HALT) that waits for pending MVMs;
    * ``chip:adjacent_spans``: an MVM whose output span touches another tile's hull without meeting it (the
      closest legal case to a HAZARD).
    """
    if not is_concurrent(cfg):
        return set()
    bins = {f"chip:mvm_tile={t}" for t in range(cfg.n_tiles)}
    bins |= {"chip:overlap", "chip:overlap_all", "chip:equal_back_to_back", "chip:queue_run", "chip:queue_run_long",
             "chip:barrier_local_busy", "chip:barrier_local_idle", "chip:barrier_all_busy", "chip:barrier_all_idle",
             "chip:write_w_while_busy", "chip:chip_op_while_busy", "chip:adjacent_spans"}
    if cfg.rows >= 3:
        bins.add("chip:staggered_request")
    return bins


class _ChipCoverage:
    """The concurrency bins of a replayed stream (:func:`chip_coverage_bins`) and its HAZARD."""

    def __init__(self, cfg: HwConfig):
        self.cfg = cfg
        self.sb = Scoreboard(cfg)
        self.apt = cfg.chip.arrays_per_tile
        self.depth = cfg.chip.queue_depth
        self.busy: set[int] = set()                 # tiles with tile commands since their last synchronisation
        self.prev: tuple[int, dict] | None = None   # the previous command, if an MVM: (tile, fields)
        self.run = (-1, 0)                          # (tile, length) of the current run of MVMs to one tile
        self.overlaps = 0

    def step(self, c: Command, hit: set[str]) -> bool:
        """Record legal command ``c``'s bins in ``hit``; False (and the HAZARD bin) if it stops with HAZARD."""
        cfg, a, sb = self.cfg, c.args, self.sb
        prev, self.prev = self.prev, None
        if c.op is Opcode.MVM:
            t = a["array"] // self.apt
            if sb.conflict(a) is not None:
                hit.add(HAZARD_BIN)
                return False
            hit.add(f"chip:mvm_tile={t}")
            if any(u != t for u in sb.hulls):
                hit.add("chip:overlap")
                self.overlaps += 1
            lo, hi = out_span(a)
            if any(u != t and (h[1] == lo or h[0] == hi) for u, h in sb.hulls.items()):
                hit.add("chip:adjacent_spans")
            if prev is not None and prev[0] != t:
                p = prev[1]
                if (mvm_cycles(cfg, p["row0"], p["nrows"], p["ncols"])
                        == mvm_cycles(cfg, a["row0"], a["nrows"], a["ncols"])):
                    hit.add("chip:equal_back_to_back")
                if (t < prev[0] and mvm_back(cfg, p["ncols"]) == mvm_back(cfg, a["ncols"])
                        and mvm_front(cfg, p["row0"], p["nrows"], p["ncols"])
                        == mvm_front(cfg, a["row0"], a["nrows"], a["ncols"]) + 1):
                    hit.add("chip:staggered_request")
            self.run = (t, self.run[1] + 1) if self.run[0] == t else (t, 1)
            if self.run[1] >= self.depth + 1:
                hit.add("chip:queue_run")
            if self.run[1] >= self.depth + 2:
                hit.add("chip:queue_run_long")
            sb.step(c.op, a)
            if len(sb.hulls) == cfg.n_tiles:
                hit.add("chip:overlap_all")
            self.busy.add(t)
            self.prev = (t, dict(a))
            return True
        self.run = (-1, 0)
        if c.op is Opcode.WRITE_W:
            t = a["array"] // self.apt
            if any(u != t for u in sb.hulls):
                hit.add("chip:write_w_while_busy")
            self.busy.add(t)
        elif c.op is Opcode.BARRIER:
            if a["local"]:
                t = a["array"] // self.apt
                hit.add("chip:barrier_local_busy" if t in self.busy else "chip:barrier_local_idle")
                self.busy.discard(t)
            else:
                hit.add("chip:barrier_all_busy" if self.busy else "chip:barrier_all_idle")
                self.busy.clear()
        elif c.op in CHIP_OPS:
            if sb.hulls:
                hit.add("chip:chip_op_while_busy")
            self.busy.clear()
        sb.step(c.op, a)
        return True


def coverage_bins(cfg: HwConfig, *, illegal: bool = False) -> set[str]:
    """Return every coverage bin :func:`covered` can report for a legal stream on ``cfg`` (bins a configuration
    cannot reach, e.g. a multi-word row when a row fits one word, are left out); ``illegal`` adds
    :data:`HAZARD_BIN` on a concurrent chip (reached by a stream that stops with HAZARD).

    * ``op:<NAME>`` for each opcode;
    * field corners: ``<op>:<field>=0`` / ``=max``, windows ``=full`` / ``count=1`` / ending at the last
      element, strides 0 / 1 / >1 / largest, ADC resolution 1 / mid / max, ADC shift 0 / >0 / max, REQUANT shift
      0 / 1 / max, accumulate 0 / 1, multi-word payloads;
    * values: payload extremes, ADC codes saturated at both ends (the low end, and negative sums, only in formats
      with signed ADC ranges; an unsigned range saturated in formats that have one), coarse steps that floor
      negative and positive column sums (and, for nearest rounding, sums half a step from a code), negative
      inputs (sign-bit plane), exact non-zero MVMs, REQUANT ties (positive and negative),
      rounding up, saturation at both ends; results observed: a READ of an MVM's output, and of an MVM that
      read a REQUANT's output;
    * on a concurrent chip, the concurrency bins of :func:`chip_coverage_bins`.
    """
    isa = Isa.of(cfg)
    bins = {f"op:{o.name}" for o in Opcode} | chip_coverage_bins(cfg)
    if illegal and is_concurrent(cfg):
        bins.add(HAZARD_BIN)
    bins |= {f"write_w:{b}" for b in ("array=0", "array=max", "row=0", "row=max", "col=0", "end=max", "count=1",
                                      "count=full", "weight=min", "weight=max")}
    bins |= {f"load_in:{b}" for b in ("addr=0", "end=max", "count=1", "input=min", "input=max")}
    bins |= {f"mvm:{b}" for b in ("array=0", "array=max", "row0=0", "row_end=max", "nrows=1", "nrows=all",
                                  "col0=0", "col_end=max", "ncols=1", "ncols=all", "in_addr=0", "in_last=max",
                                  "in_stride=0", "in_stride=1", "in_stride>1", "in_stride=largest", "out_addr=0",
                                  "out_last=max", "out_stride=1", "out_stride>1", "accumulate=0",
                                  "accumulate=1", "adc_bits=1", "adc_bits=max", "adc_shift=0", "adc_shift>0",
                                  "adc_shift=max", "nonzero", "exact_nonzero", "adc_sat_hi", "neg_input",
                                  "floor_pos", "observed")}
    kinds = cfg.fmt.sum_bounds(1)                  # which ADC ranges the format has: signed (False), unsigned
    if False in kinds:
        bins |= {"mvm:adc_sat_lo", "mvm:floor_neg"}
    if True in kinds and not cfg.fmt.is_default:
        bins.add("mvm:adc_sat_unsigned")
    if cfg.fmt.adc_rounding == "nearest":
        bins.add("mvm:adc_half_step")
    if cfg.adc_bits > 2:
        bins.add("mvm:adc_bits=mid")
    bins |= {f"requant:{b}" for b in ("src=0", "src_end=max", "dst=0", "dst_last=max", "count=1", "count>1",
                                      "dst_stride>1", "shift=0", "shift>0", "shift=1", "shift=max", "tie_pos",
                                      "tie_neg", "round_up", "sat_hi", "sat_lo", "observed")}
    bins |= {f"read:{b}" for b in ("addr=0", "end=max", "count=1", "count>1", "count=full")}
    if cfg.logical_cols > isa.per_word(Opcode.WRITE_W):
        bins.add("write_w:multiword")
    if cfg.in_depth > isa.per_word(Opcode.LOAD_IN):
        bins.add("load_in:multiword")
    return bins


@dataclass(frozen=True)
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
    mvm_overlaps: int = 0           #: MVMs sent while another tile had MVMs since its last synchronisation

    @property
    def nonzero_fraction(self) -> float:
        """Share of MVM outputs whose contribution is non-zero."""
        return self.mvm_nonzero / self.mvm_outputs if self.mvm_outputs else 0.0


def _replay(cfg: HwConfig, cmds: Iterable[Command]) -> tuple[set[str], StreamStats]:
    """Replay legal commands on the semantics; return the bins hit and the counts (stops at HALT or an error, and
    at a HAZARD, whose bin it adds)."""
    isa = Isa.of(cfg)
    chip = _ChipCoverage(cfg) if is_concurrent(cfg) else None
    st = semantics.MachineState(cfg)
    hit: set[str] = set()
    s = SimpleNamespace(**{f.name: 0 for f in fields(StreamStats)})      # the counts, frozen at the end
    in_rq = np.zeros(cfg.in_depth, dtype=bool)     # input written by REQUANT
    out_mvm = np.zeros(cfg.out_depth, dtype=bool)  # accumulator written by an MVM
    out_rq = np.zeros(cfg.out_depth, dtype=bool)   # ... by an MVM that read a REQUANT output
    wlo, whi = isa.elem_range("weight")
    ilo, ihi = isa.elem_range("input")
    rlo, rhi = cfg.fmt.input_range                 # REQUANT saturates to the format's inputs
    fmt = cfg.fmt

    def unsigned_at(mask):
        """The ``(p, d)`` (``p = -1``: the bias column) of the saturated sums in ``mask`` (ncols*P [+1], 1, D)."""
        qs, _, ds = np.nonzero(mask)
        n = mask.shape[0] - fmt.bias_cols
        return {(int(q) % fmt.cols_per_weight if q < n else -1, int(d)) for q, d in zip(qs, ds)}
    adc_shift_max = (1 << isa.field_widths[Opcode.MVM]["adc_shift"]) - 1
    rq_shift_max = (1 << isa.field_widths[Opcode.REQUANT]["shift"]) - 1
    mw = {op: cfg.logical_cols > isa.per_word(op) if op is Opcode.WRITE_W else cfg.in_depth > isa.per_word(op)
          for op in PAYLOAD}

    def corner(name, value, lo, hi):
        if value == lo:
            hit.add(f"{name}=0")
        if value == hi:
            hit.add(f"{name}=max")

    for c in cmds:
        if semantics.check(cfg, c.op, c.args) is not ErrorCode.NONE:
            break
        if chip is not None and not chip.step(c, hit):
            break
        s.commands += 1
        hit.add(f"op:{c.op.name}")
        a = c.args
        if c.op is Opcode.WRITE_W:
            corner("write_w:array", a["array"], 0, cfg.n_arrays - 1)
            corner("write_w:row", a["row"], 0, cfg.rows - 1)
            if a["col"] == 0:
                hit.add("write_w:col=0")
            if a["col"] + a["count"] == cfg.logical_cols:
                hit.add("write_w:end=max")
            if a["count"] == cfg.logical_cols:
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
            if a["col0"] + nc == cfg.logical_cols:
                hit.add("mvm:col_end=max")
            for name, v, full in (("nrows", nr, cfg.rows), ("ncols", nc, cfg.logical_cols)):
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
            # The ADC of every drive cycle and physical column (cimisa.kernel's format path), instrumented.
            x = st.inbuf[in_idx]
            w = st.array(a["array"])[a["row0"]:a["row0"] + nr, a["col0"]:a["col0"] + nc]
            sums = kernel.format_sums(w, x, fmt).astype(np.int64)            # (ncols*P [+1], 1, D)
            q = rules.round_div(sums, shift, fmt.adc_rounding)
            codes = kernel.format_codes(sums, fmt, bits, shift)
            acc = kernel.mvm_acc_format(w, x, fmt, bits, shift)
            sat_hi, sat_lo = int((q > codes).sum()), int((q < codes).sum())
            rem = sums & ((1 << shift) - 1)
            if sat_hi:
                hit.add("mvm:adc_sat_hi")
                if any(fmt.unsigned_sum(p, d) for p, d in unsigned_at(q > codes)):
                    hit.add("mvm:adc_sat_unsigned")
            if sat_lo:
                hit.add("mvm:adc_sat_lo")
            if np.any((sums < 0) & (rem != 0)):
                hit.add("mvm:floor_neg")
            if np.any((sums > 0) & (rem != 0)):
                hit.add("mvm:floor_pos")
            if shift and np.any(rem == 1 << (shift - 1)) and fmt.adc_rounding == "nearest":
                hit.add("mvm:adc_half_step")
            if np.any(x < 0) and (np.any(sums[..., -1] != 0) if fmt.input_encoding == "twos"
                                  else np.any(w[x < 0] != 0)):
                hit.add("mvm:neg_input")
            sat = sat_hi + sat_lo
            lossy = sat + int(np.count_nonzero(rem))
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
            inside = (r >= rlo) & (r <= rhi)
            s.requant_values += n
            s.requant_saturated += int((~inside).sum())
            if np.any(r > rhi):
                hit.add("requant:sat_hi")
            if np.any(r < rlo):
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
    s.mvm_overlaps = chip.overlaps if chip is not None else 0
    return hit, StreamStats(**vars(s))


def covered(cfg: HwConfig, cmds: Iterable[Command]) -> set[str]:
    """Return the coverage bins (see :func:`coverage_bins`) that legal commands ``cmds`` hit."""
    return _replay(cfg, cmds)[0]


def stream_stats(cfg: HwConfig, cmds: Iterable[Command]) -> StreamStats:
    """Return the :class:`StreamStats` of replaying legal commands ``cmds`` on the specification."""
    return _replay(cfg, cmds)[1]


def cosim_coverage_bins(cfg: HwConfig) -> set[str]:
    """Return the co-simulation's coverage bins for ``cfg``: each opcode, and the corner cases of its fields (full
    and single-row/column windows, strides 0/1/>1, accumulate, ADC resolution and shift, multi-word payloads where
    a row or the input buffer is longer than one word, REQUANT shift 0 and >0).

    A subset of :func:`coverage_bins` (which adds address corners and value bins: ADC saturation, REQUANT ties,
    observed results); on a concurrent chip, with every concurrency bin (:func:`chip_coverage_bins`).
    """
    isa = Isa.of(cfg)
    return ({f"op:{o.name}" for o in Opcode}
            | {"mvm:accumulate=0", "mvm:accumulate=1", "mvm:adc_bits=1", "mvm:adc_bits=max", "mvm:adc_bits=mid",
               "mvm:adc_shift=0", "mvm:adc_shift>0", "mvm:in_stride=0", "mvm:in_stride=1", "mvm:in_stride>1",
               "mvm:out_stride=1", "mvm:out_stride>1", "mvm:nrows=1", "mvm:nrows=all", "mvm:ncols=1",
               "mvm:ncols=all", "requant:shift=0", "requant:shift>0", "requant:count>1", "read:count=1",
               "read:count>1", "write_w:count=1", "load_in:count=1"}
            | ({"write_w:multiword"} if cfg.logical_cols > isa.per_word(Opcode.WRITE_W) else set())     # reachable only
            | ({"load_in:multiword"} if cfg.in_depth > isa.per_word(Opcode.LOAD_IN) else set())   # when it fits
            | chip_coverage_bins(cfg))


def cosim_covered(cfg: HwConfig, cmds: Iterable[Command]) -> set[str]:
    """Return the bins of :func:`cosim_coverage_bins` that legal commands ``cmds`` hit."""
    return covered(cfg, cmds) & cosim_coverage_bins(cfg)
