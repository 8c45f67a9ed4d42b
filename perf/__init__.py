"""perf: the event-driven performance simulator of a chip running the kit's schedule (``docs/perf.md``).

:func:`simulate` runs a prefill of ``P`` tokens (pipelined over tokens and layers) and ``N`` autoregressive
decode tokens on the chip of ``hw`` (tiles sharing a periphery, digital and attention units, SRAM/DRAM, a
network), and returns a :class:`~perf.report.PerfReport`. The analytic model (:func:`compiler.cost.estimate`)
is its contention-free lower bound. Stream mode (:mod:`perf.stream`, :func:`predict`) predicts the cycles the
generated hardware takes for one command stream. Imports cimisa, compiler and numpy only.
"""

from __future__ import annotations

import numbers

import numpy as np

from cimisa.config import HwConfig
from cimisa.errors import ModelError
from compiler.chipmap import ChipMap
from compiler.components import area_breakdown, static_power_breakdown
from compiler.cost import estimate
from compiler.families import Kind
from compiler.phases import ModelDims, decode_kv, phases, prefill_kv
from compiler.schedule import Schedule
from perf.engine import Engine
from perf.report import PerfReport, critical_path, utilisation
from perf.stream import StreamPrediction, predict, predict_words
from perf.workload import steps

__all__ = ["simulate", "PerfReport", "predict", "predict_words", "StreamPrediction"]

#: Most tokens one simulation may run (prefill + decode): bounds time and memory.
MAX_TOKENS = 1 << 16


def _count(name: str, v, default: int) -> int:
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 0 <= v <= MAX_TOKENS:
        raise ModelError(f"{name} must be an integer in 0..{MAX_TOKENS}, not {v!r}")
    return int(v)


def _reloader(cm: ChipMap, hw: HwConfig, tiles: np.ndarray, ps) -> callable:
    """``reload(epoch) -> (ns, {component: nJ})`` of programming epoch ``epoch`` (-1: epoch 0 again).

    A reloaded row reads its ``logical_cols`` weights (``weight_bits`` each, as WRITE_W carries them) from DRAM
    and programs their cells and the bias column's (:mod:`cimisa.formats`; ``cols`` cells in the default
    format)."""
    c, ch = hw.cost, hw.chip
    fmt = hw.fmt
    cells_per_row = hw.logical_cols * fmt.cols_per_weight + fmt.bias_cols
    used: dict[int, set] = {}
    for ph in ps:
        used.setdefault(ph.epoch, set()).update(tiles[np.concatenate(ph.arrays)].tolist())

    def reload(epoch: int):
        rows = cm.wrap_rows if epoch < 0 else cm.reload_rows[epoch]
        n_tiles = max(1, len(used.get(max(epoch, 0), ())))
        nbytes = rows * hw.logical_cols * hw.weight_bits / 8
        ns = max(rows * c.t_program_row_ns / n_tiles, nbytes / ch.dram_bytes_per_ns)
        return ns, {"reload": rows * cells_per_row * c.e_program_cell_pj / 1000.0,
                    "memory": nbytes * c.e_dram_pj_per_byte / 1000.0}
    return reload


def simulate(sched: Schedule, hw: HwConfig, dims: ModelDims, *, chipmap: ChipMap | None = None,
             prefill_tokens: int | None = None, decode_tokens: int = 0, trace: bool = False,
             trace_tokens: int = 1, trace_layers=None) -> PerfReport:
    """Simulate a prefill of ``prefill_tokens`` (default ``dims.seq_len``) and ``decode_tokens`` decode tokens.

    ``chipmap`` places the logical arrays on the chip (:meth:`ChipMap.identity` when None; its ``hw`` is the chip
    simulated). ``trace`` keeps the intervals of the first ``trace_tokens`` tokens (of the decode when there is
    one, else of the prefill), of the layers ``trace_layers`` (names ``"<stage>.<layer>"``; None: all).
    """
    P = _count("prefill_tokens", prefill_tokens, dims.seq_len)
    N = _count("decode_tokens", decode_tokens, 0)
    cm = chipmap if chipmap is not None else ChipMap.identity(sched.placement, hw)
    hw = cm.hw
    tiles = cm.tiles_of()
    ps = phases(sched, hw, dims, cm)
    chain = steps(ps, hw, dims, tiles)
    eng = Engine(hw, dims, hw.n_tiles, trace_tokens=trace_tokens if trace else 0,
                 trace_layers=frozenset(trace_layers) if trace_layers is not None else None,
                 trace_phase="decode" if N else "prefill")
    reload = _reloader(cm, hw, tiles, ps)
    mems, written = prefill_kv(ps, hw, dims, P)
    end, last = eng.pipeline(chain, P, 0.0, reload, mems) if P else (0.0, -1)
    if P and written:                      # K/V that live in DRAM are written there once (streamed)
        eng.energy["memory"] = eng.energy.get("memory", 0.0) + written * hw.cost.e_dram_pj_per_byte / 1000.0
    pre_energy = dict(eng.energy)
    eng.energy = {}
    eng.phase = "decode"
    dec_chain = [st for st in chain if ps[st.phase].in_decode]
    mem = decode_kv(ps, hw, dims, P + max(0, N - 1))
    ends, last_d = eng.decode(dec_chain, N, P, end, reload, len(cm.epochs), mem, last) if N else ([], last)
    finish = ends[-1] if ends else end
    tok_ns = tuple(float(b - a) for a, b in zip([end, *ends[:-1]], ends))
    used_tiles = len(np.unique(tiles))
    ch = hw.chip
    cap = {"tile": used_tiles, "link": used_tiles, "digital": ch.digital_units, "attention": ch.attention_units}
    path, by_kind = critical_path(eng.events, last_d if N else last)
    an = estimate(sched, hw, dims, cm)
    return PerfReport(
        prefill_tokens=P, decode_tokens=N, prefill_latency_ns=end, decode_token_ns=tok_ns,
        prefill_energy=pre_energy, decode_energy=eng.energy, energy_by_layer=eng.energy_layer,
        static_power_mw=float(sum(static_power_breakdown(hw).values())),
        static_power_breakdown=static_power_breakdown(hw), area_breakdown=area_breakdown(hw), busy_ns=eng.busy,
        utilisation=utilisation(eng.util, finish, cap), critical_path=path, critical_by_kind=by_kind,
        analytic={"decode_latency_ns": an.decode_latency_ns, "decode_energy_nj": an.decode_energy_nj,
                  "prefill_latency_ns": an.prefill_latency_ns, "prefill_energy_nj": an.prefill_energy_nj},
        trace=[dict(zip(("resource", "tile", "start_ns", "end_ns", "kind", "layer", "token"), iv))
               for iv in eng.trace],
        energy_basis="prefill" if dims.rules.kind is Kind.ENCODER else "decode")
