"""The fast harness's file formats: the job file the host writes and the output file the harness writes back.

The harness replays the cocotb testbench's handshake randomness, so a job carries, per case with ``gap`` or
``backpressure``, the Mersenne Twister states of the driver's and the monitor's ``random.Random`` (seeded as
:func:`sim.cocotb_tests.test_cim_tile.run_case` seeds them), and the testbench's budgets.

Job file (host -> harness), little-endian::

Job file (host -> harness), little-endian::

    "CIMFJOB\\0"  u32 version  u32 payload_bits  u32 status_bits  u32 result_bits
    u32 state_offset  u32 state_width  u32 state_running  u32 n_cases
    per case: u64 n_words  f64 gap  f64 backpressure  u64 max_cycles  u64 stall_limit
              u32 reset_cycles  u32 drain_cycles  u32 has_rng
              [has_rng: u32 driver_mt[625]  u32 monitor_mt[625]]     (random.Random.getstate()[1])
              n_words x ceil(payload_bits/32) u32: the cmd payload (word | last << offset), low word first

Output file (harness -> host)::

    "CIMFOUT\\0"  u32 version  u32 n_cases
    per case: u64 cycles  u64 sim_cycles  u64 driver_cycles  u64 sent  u64 stalled  u64 wall_ns  u32 timed_out
              ceil(status_bits/32) u32: status register   u64 n_results   n_results x ceil(result_bits/32) u32
"""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cimisa.config import HwConfig
from cimisa.isa import Isa, RunState
from sim.job import Case
from sim.monitor import unpack_status
from sim.tools import SimulatorError

__all__ = ["FORMAT_VERSION", "JOB_MAGIC", "OUT_MAGIC", "HarnessOutput", "write_job", "read_output"]

#: File format version shared with harness.cpp (FORMAT_VERSION).
FORMAT_VERSION = 1
JOB_MAGIC = b"CIMFJOB\0"
OUT_MAGIC = b"CIMFOUT\0"


def _tb():
    """The cocotb testbench's constants and cycle budget (one source of truth for both paths)."""
    from sim.cocotb_tests import test_cim_tile  # noqa: PLC0415 (imports cocotb, which works outside a simulator)
    return test_cim_tile


def _words32(bits: int) -> int:
    return (bits + 31) // 32


def _mt_state(seed: float) -> bytes:
    """The Mersenne Twister state of ``random.Random(seed)`` (624 words + index) as 625 little-endian u32."""
    state = random.Random(seed).getstate()[1]
    return struct.pack("<625I", *state)


def write_job(path: str | os.PathLike, cfg: HwConfig, cases: Sequence[Case]) -> None:
    """Write ``cases`` as a harness job file (see the module docstring for the layout)."""
    isa = Isa.of(cfg)
    tb = _tb()
    layout = isa.cmd_layout
    word_f, last_f = layout["word"], layout["last"]
    pbits = layout.size
    pbytes = 4 * _words32(pbits)
    st = isa.status_layout["state"]
    chunks = [JOB_MAGIC, struct.pack("<8I", FORMAT_VERSION, pbits, isa.status_layout.size, isa.result_shape.width,
                                     st.offset, st.width,
                                     RunState.RUNNING.value, len(cases))]
    for c in cases:
        n = len(c.words)
        max_cycles = c.max_cycles or tb.default_max_cycles(n, cfg)
        has_rng = bool(c.gap or c.backpressure)
        chunks.append(struct.pack("<QddQQIII", n, float(c.gap), float(c.backpressure), max_cycles,
                                  tb.STALL_CYCLES, tb.RESET_CYCLES, tb.DRAIN_CYCLES, int(has_rng)))
        if has_rng:                                       # as run_case: the driver's rng first, the monitor's next
            rng = random.Random(c.seed)
            chunks.append(_mt_state(rng.random()))
            chunks.append(_mt_state(rng.random()))
        wo, lo = word_f.offset, last_f.offset
        chunks.append(b"".join(((int(w) << wo) | (int(k == n - 1) << lo)).to_bytes(pbytes, "little")
                               for k, w in enumerate(c.words)))
    Path(path).write_bytes(b"".join(chunks))


@dataclass(frozen=True)
class HarnessOutput:
    """What the harness reports for one case: cycles, handshake counts, wall time, status and result words."""

    cycles: int
    sim_cycles: int
    driver_cycles: int
    sent: int
    stalled: int
    wall_s: float
    timed_out: bool
    status: tuple[str, str, int]
    results: list[int]


def read_output(path: str | os.PathLike, cfg: HwConfig) -> list[HarnessOutput]:
    """Read a harness output file: one record per case that ran (fewer than the job's if the harness died)."""
    isa = Isa.of(cfg)
    sw, rbits = _words32(isa.status_layout.size), isa.result_shape.width
    rw = _words32(rbits)
    data = Path(path).read_bytes()
    if data[:8] != OUT_MAGIC:
        raise SimulatorError(f"{path} is not a fast-harness output file")
    version, n_cases = struct.unpack_from("<2I", data, 8)
    if version != FORMAT_VERSION:
        raise SimulatorError(f"fast-harness output version {version}, expected {FORMAT_VERSION}")
    pos, outs = 16, []
    head = struct.Struct("<6QI")
    for _ in range(n_cases):
        if pos + head.size + 4 * sw + 8 > len(data):
            break
        cycles, sim_cycles, driver_cycles, sent, stalled, wall_ns, timed_out = head.unpack_from(data, pos)
        pos += head.size
        status = _join(np.frombuffer(data, "<u4", sw, pos))
        pos += 4 * sw
        (nres,) = struct.unpack_from("<Q", data, pos)
        pos += 8
        if pos + 4 * rw * nres > len(data):
            break
        words = np.frombuffer(data, "<u4", rw * nres, pos).reshape(nres, rw)
        pos += 4 * rw * nres
        outs.append(HarnessOutput(cycles, sim_cycles, driver_cycles, sent, stalled, wall_ns * 1e-9, bool(timed_out),
                         unpack_status(isa, status), _results(words, rbits, isa.result_shape.signed)))
    return outs


def _join(words) -> int:
    v = 0
    for k, w in enumerate(words):
        v |= int(w) << (32 * k)
    return v


def _results(words: np.ndarray, bits: int, signed: bool) -> list[int]:
    """Result words (``n x words-per-result`` u32) as Python ints of the result shape."""
    if words.shape[1] == 1 and bits <= 32:
        v = words[:, 0].astype(np.int64) & ((1 << bits) - 1)
        if signed:
            v = np.where(v >= (1 << (bits - 1)), v - (1 << bits), v)
        return v.tolist()
    out = []
    for row in words:
        v = _join(row) & ((1 << bits) - 1)
        out.append(v - (1 << bits) if signed and v >> (bits - 1) else v)
    return out
