"""The chip around the arrays: tiles, each tile's shared periphery, digital and attention units, memory, network.

:class:`ChipParams` is the ``chip`` part of the one hardware configuration (:class:`cimisa.config.HwConfig`,
a ``[chip]`` table in a TOML file). ``HwConfig.n_arrays`` arrays are grouped into
``tiles = n_arrays // arrays_per_tile`` tiles; array ``a`` is tier ``a % arrays_per_tile`` of tile
``a // arrays_per_tile``. A tile's periphery (its ADC bank, DACs and drivers) is shared by its arrays: at most
``mvms_per_tile`` of them run an MVM at the same time, each using ``adcs_per_array`` ADCs of the tile's bank of
``mvms_per_tile * adcs_per_array``. ADC ``j`` of a port serves columns ``j, j + A, j + 2A, ...`` (``A`` =
``adcs_per_array``), so a window of ``n`` columns takes ``ceil(n / A)`` conversion rounds per input bit.

The defaults are the flat machine the kit modelled before the chip existed: one array per tile (every array
owns its ADCs and runs in parallel), an ``ideal`` network (a constant ``cost.t_comm_ns`` per dependent stage,
no data-volume cost), so every built-in configuration keeps its figures. Sources and assumptions of each value:
``docs/chip.md`` and ``docs/cost-model.md``.

None of these settings changes what a command stream computes: :attr:`HwConfig.arch_hash` leaves them out.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["ChipParams", "TOPOLOGIES", "CHIP_INT_LIMITS", "check_fields", "show_value", "is_int", "is_number",
           "finite_in"]

#: Network topologies between tiles: ``ideal`` (constant ``cost.t_comm_ns`` per dependent stage, no volume
#: cost; the flat machine), ``mesh`` (2-D mesh, XY routing, ``mesh_cols`` columns), ``ring`` (bidirectional,
#: shortest way), ``bus`` (one shared link, one hop).
TOPOLOGIES = ("ideal", "mesh", "ring", "bus")

#: Integer settings of :class:`ChipParams` and their inclusive ranges.
CHIP_INT_LIMITS: dict[str, tuple[int, int]] = {
    "arrays_per_tile": (1, 1 << 20),
    "mvms_per_tile": (1, 1 << 20),
    "digital_units": (1, 1 << 16),
    "attention_units": (1, 1 << 16),
    "attention_lanes": (1, 1 << 20),
    "sram_kib": (0, 1 << 30),
    "mesh_cols": (0, 1 << 20),
    "queue_depth": (0, 1 << 16),
}

#: Upper bound of every real-valued setting (bandwidths, latencies): larger values are not physical.
REAL_MAX = 1e12


def show_value(v: Any) -> str:
    """A short one-line rendering of a user-supplied value for error messages (huge integers as ``~2**n``)."""
    if isinstance(v, bool) or v is None:
        return {True: "true", False: "false", None: "null"}[v]
    if isinstance(v, numbers.Integral):
        v = int(v)
        return str(v) if v.bit_length() <= 64 else f"{'-' if v < 0 else ''}~2**{v.bit_length() - 1}"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        r = repr(v)
        return r if len(r) <= 40 else r[:36] + "...'"
    if isinstance(v, (list, tuple)):
        return f"a list of {len(v)} item{'s' * (len(v) != 1)}"
    if isinstance(v, dict):
        return "a table"
    return f"a {type(v).__name__}"


def is_int(v: Any) -> bool:
    """Whether ``v`` is an integer (Python or numpy), not a bool, float or string."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """Whether ``v`` is a real number (int or float), not a bool or string."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def finite_in(v: Any, lo: float, hi: float) -> bool:
    """Whether the number ``v`` is finite and within ``lo..hi`` (no float conversion of huge integers)."""
    if isinstance(v, numbers.Integral):
        return lo <= v <= hi
    return math.isfinite(v) and lo <= v <= hi


def check_fields(obj: Any, prefix: str, int_limits: dict[str, tuple[int, int]],
                 choices: dict[str, tuple[str, ...]] | None = None,
                 real_limits: dict[str, tuple[float, float]] | None = None) -> list[str]:
    """Return the type/range problems of a frozen dataclass of settings, each naming ``<prefix>.<key>``.

    Integer fields are those of ``int_limits``, string fields those of ``choices``; every other field is a
    finite real number in ``real_limits.get(name, (0, REAL_MAX))``. Valid numbers are normalised in place (a
    numpy integer becomes an ``int``, an integer given for a real becomes a ``float``) so JSON output is uniform.
    """
    choices = choices or {}
    real_limits = real_limits or {}
    out: list[str] = []
    for f in fields(obj):
        v = getattr(obj, f.name)
        key = f"{prefix}.{f.name}"
        if f.name in int_limits:
            lo, hi = int_limits[f.name]
            if not is_int(v) or not lo <= v <= hi:
                out.append(f"{key} must be an integer in {lo}..{hi}, not {show_value(v)}")
            else:
                object.__setattr__(obj, f.name, int(v))
        elif f.name in choices:
            if not isinstance(v, str) or v not in choices[f.name]:
                out.append(f"{key} must be one of {', '.join(choices[f.name])}, not {show_value(v)}")
        else:
            lo, hi = real_limits.get(f.name, (0.0, REAL_MAX))
            if not is_number(v) or not finite_in(v, lo, hi):
                out.append(f"{key} must be a finite number in {lo:g}..{hi:g}, not {show_value(v)}".replace("e+", "e"))
            else:
                object.__setattr__(obj, f.name, float(v))
    return out


@dataclass(frozen=True)
class ChipParams:
    """How the arrays are organised into a chip (see the module docstring). Times in ns, sizes in KiB/bytes."""

    #: Arrays (tiers) per tile; must divide ``HwConfig.n_arrays``.
    arrays_per_tile: int = 1
    #: Arrays of one tile that can run an MVM at the same time (ports of the shared periphery); the tile's ADC
    #: bank holds ``mvms_per_tile * adcs_per_array`` ADCs. At most ``arrays_per_tile``.
    mvms_per_tile: int = 1
    #: Digital vector units of the chip (REQUANT, norms, activations, residual adds), ``cost.digital_lanes``
    #: lanes each.
    digital_units: int = 1
    #: Attention units of the chip (scores, softmax, weighted sum of values), ``attention_lanes`` lanes each.
    attention_units: int = 1
    attention_lanes: int = 1024
    #: On-chip SRAM for activations and the KV cache (KiB); a KV cache that does not fit is read from DRAM.
    sram_kib: int = 65536
    #: SRAM port bandwidth (bytes per ns) and DRAM bandwidth (bytes per ns = GB/s; 3D-SiM's default 5.332).
    sram_bytes_per_ns: float = 1024.0
    dram_bytes_per_ns: float = 5.332
    #: Network between tiles: one of :data:`TOPOLOGIES`.
    topology: str = "ideal"
    #: Bandwidth of one link (bytes per ns) and latency of one hop (ns).
    link_bytes_per_ns: float = 32.0
    hop_latency_ns: float = 1.0
    #: Columns of the tile mesh (0: the smallest ``c`` with ``c * c >= tiles``).
    mesh_cols: int = 0
    #: Stream words (command headers and WRITE_W payload words) each tile's command queue holds. 0: no queues,
    #: the chip executes a stream one command at a time (the sequential machine); >= 1 with several tiles: tiles
    #: run their commands side by side (:mod:`cimisa.concurrency`, :mod:`cimisa.timing`, :mod:`hw.chip`).
    queue_depth: int = 0

    def violations(self, n_arrays: int | None = None) -> list[str]:
        """Return every rule these settings break (empty when valid), each naming ``chip.<key>``.

        With ``n_arrays`` (the configuration's array count) also the rules between the chip and the arrays.
        """
        out = check_fields(self, "chip", CHIP_INT_LIMITS, {"topology": TOPOLOGIES})
        bad = {p.split()[0] for p in out}
        if not bad & {"chip.arrays_per_tile", "chip.mvms_per_tile"} and self.mvms_per_tile > self.arrays_per_tile:
            out.append(f"chip.mvms_per_tile must be at most chip.arrays_per_tile ({self.arrays_per_tile}), "
                       f"not {self.mvms_per_tile}")
        if (n_arrays is not None and "chip.arrays_per_tile" not in bad and isinstance(n_arrays, int)
                and n_arrays % self.arrays_per_tile):
            out.append(f"chip.arrays_per_tile must divide n_arrays ({n_arrays}), not {self.arrays_per_tile}")
        return out

    def tiles(self, n_arrays: int) -> int:
        """Tiles of a configuration with ``n_arrays`` arrays."""
        return n_arrays // self.arrays_per_tile

    def tile_of(self, array: int) -> int:
        """The tile that holds array ``array``."""
        return array // self.arrays_per_tile

    def grid(self, n_arrays: int) -> tuple[int, int]:
        """``(rows, cols)`` of the tile mesh of a configuration with ``n_arrays`` arrays."""
        t = self.tiles(n_arrays)
        c = self.mesh_cols or max(1, math.isqrt(t - 1) + 1 if t > 1 else 1)
        return -(-t // c), c
