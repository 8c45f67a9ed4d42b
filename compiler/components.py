"""Component models of a chip: ADC energy per conversion, and area and static power of every component.

Everything is computed from the one hardware configuration (:class:`cimisa.config.HwConfig`: its arrays,
``hw.chip`` for tiles, ports, units, memory and network, ``hw.tech`` for the node and the per-component
constants, ``hw.cost`` for rates and lanes). The ADC model is :mod:`compiler.adc_model`; sources of every
constant: ``docs/cost-model.md``.

Counts per component (``T`` tiles, ``P = chip.mvms_per_tile`` MVM ports per tile, ``A = adcs_per_array``):

============  =====================================================================================
component     count and unit area / static power
============  =====================================================================================
arrays        ``n_arrays`` arrays of ``rows * cols`` cells of ``cell_area_f2 * F**2`` (``3d``: one footprint
              per tile); ``p_array_uw`` each
adc           ``T * P * A`` ADCs (the tiles' banks) designed for ``adc_bits`` at the rate of ``cost.t_adc_ns``
dac           ``T * P * rows`` row drivers: each MVM port of a tile drives its own rows, the tile's tiers share
              them; a ``dac_bits``-bit driver is :func:`dac_units` 1-bit units (area and static power)
shift_add     one per ADC
digital       ``chip.digital_units * cost.digital_lanes`` lanes
attention     ``chip.attention_units * chip.attention_lanes`` lanes
sram          ``chip.sram_kib`` KiB
network       one router per tile (``mesh``, ``ring``), one shared arbiter (``bus``), none (``ideal``)
dram          static power only: the idle DRAM interface (off-chip, no area)
============  =====================================================================================

DAC (row driver) model, :func:`dac_energy_pj` and :func:`dac_units` (an assumption, ``docs/cost-model.md``): a
``k``-bit DAC is built of ``2**k - 1`` unit drivers (thermometer-coded, or a pulse of up to ``2**k - 1`` unit
lengths), each a 1-bit driver; energy per row drive ``cost.e_row_read_pj * (2**k - 1)`` (every drive charged at
full scale, as the 1-bit drive is charged whatever the bit); bipolar drive (``sign-magnitude`` inputs) needs a
unit set per polarity, doubling area and static power (one polarity fires per drive). The default 1-bit unipolar
drive is one unit: ``cost.e_row_read_pj`` per driven row and cycle, as before.
"""

from __future__ import annotations

import numpy as np

from cimisa.config import HwConfig
from compiler import adc_model

__all__ = ["AREA_KEYS", "POWER_KEYS", "adc_energy_pj", "adc_area_um2", "adc_static_uw", "dac_energy_pj", "dac_units",
           "area_breakdown", "static_power_breakdown", "area_mm2", "static_power_mw"]

#: Components of :func:`area_breakdown`, in report order.
AREA_KEYS = ("arrays", "adc", "dac", "shift_add", "digital", "attention", "sram", "network")
#: Components of :func:`static_power_breakdown`: those of the area and the DRAM interface.
POWER_KEYS = AREA_KEYS + ("dram",)

_UM2_PER_MM2 = 1e6


#: Finer resolutions searched by the survey envelope (effective bits above the requested ones).
_FINER = np.arange(0.0, 8.01, 0.125)


def _survey(bits, hw: HwConfig) -> tuple[np.ndarray, np.ndarray]:
    """Full-rate energy per conversion (pJ) and area (um^2) of a ``bits``-bit ADC under the survey model.

    The ADC reads ``enob = bits - tech.adc_enob_loss`` effective bits at the rate of its configured conversion
    time. A coarse conversion never costs more than one of a finer ADC: each figure is the minimum over designs
    of ``enob .. enob + 8`` effective bits (each at its own rate), which makes both non-decreasing in ``bits``
    (near the survey's energy floor a faster, coarser SAR would otherwise cost more than a slower, finer one).
    """
    b = np.asarray(bits, dtype=np.float64)
    uniq, inv = np.unique(b.ravel(), return_inverse=True)
    cand = uniq[:, None] + _FINER[None, :]                         # nominal bits of the finer designs
    enob = cand - hw.tech.adc_enob_loss
    rate = adc_model.adc_rate_hz(cand, hw)
    e = adc_model.survey_energy_pj(enob, rate, hw.tech.tech_nm)
    a = adc_model.survey_area_um2(rate, hw.tech.tech_nm, e)
    return e.min(axis=1)[inv].reshape(b.shape), a.min(axis=1)[inv].reshape(b.shape)


def _out(x: np.ndarray, bits):
    return x if np.ndim(bits) else float(x)


def adc_energy_pj(bits, hw: HwConfig) -> np.ndarray | float:
    """Dynamic energy of one conversion at ``bits`` (pJ; ``bits`` a number or an ndarray).

    ``survey``: ``(1 - tech.adc_leak_fraction)`` of the fitted full-rate energy (the rest is
    :func:`adc_static_uw`). ``walden``: ``cost.adc_fom_fj_per_step * 2**bits / 1000`` exactly.
    """
    if hw.tech.adc_model == "walden":
        return adc_model.walden_energy_pj(bits, hw.cost.adc_fom_fj_per_step)
    return _out((1.0 - hw.tech.adc_leak_fraction) * _survey(bits, hw)[0], bits)


def adc_area_um2(bits, hw: HwConfig) -> np.ndarray | float:
    """Area of one ADC of ``bits`` bits at its configured conversion rate (um^2): the survey's area regression,
    with the energy of the configured model."""
    if hw.tech.adc_model == "walden":
        e = adc_model.walden_energy_pj(bits, hw.cost.adc_fom_fj_per_step)
        return _out(adc_model.survey_area_um2(adc_model.adc_rate_hz(bits, hw), hw.tech.tech_nm, e), bits)
    return _out(_survey(bits, hw)[1], bits)


def adc_static_uw(bits, hw: HwConfig) -> np.ndarray | float:
    """Static power of one ADC designed for ``bits`` (uW): ``tech.p_adc_uw`` plus, for ``survey``, the leaking
    share ``tech.adc_leak_fraction`` of its full-rate power (the ``walden`` model has no leakage of its own)."""
    p = hw.tech.p_adc_uw
    if hw.tech.adc_model == "walden":
        return np.full(np.shape(bits), p) if np.ndim(bits) else float(p)
    full_uw = _survey(bits, hw)[0] * adc_model.adc_rate_hz(bits, hw) * 1e-6   # pJ * 1/s = 1e-6 uW
    return _out(p + hw.tech.adc_leak_fraction * full_uw, bits)


def dac_units(hw: HwConfig) -> int:
    """1-bit unit drivers of one row's DAC: ``2**dac_bits - 1``, twice for bipolar drive (module docstring)."""
    fmt = hw.fmt
    return ((1 << fmt.dac_bits) - 1) * (1 if all(fmt.digit_unipolar) else 2)


def dac_energy_pj(hw: HwConfig) -> float:
    """Energy of one row drive in one drive cycle (pJ): ``cost.e_row_read_pj * (2**dac_bits - 1)``."""
    return hw.cost.e_row_read_pj * ((1 << hw.fmt.dac_bits) - 1)


def _logic_scale(hw: HwConfig) -> float:
    """Area factor of logic quoted at ``tech.ref_nm`` on the configured node."""
    return (hw.tech.tech_nm / hw.tech.ref_nm) ** 2


def _counts(hw: HwConfig) -> dict[str, float]:
    """How many of each unit the chip has (see the module docstring)."""
    ch = hw.chip
    tiles = hw.n_tiles
    ports = tiles * ch.mvms_per_tile
    routers = {"ideal": 0, "bus": 1}.get(ch.topology, tiles)
    return {"arrays": hw.n_arrays, "adc": hw.total_adcs, "dac": ports * hw.rows * dac_units(hw),
            "shift_add": hw.total_adcs,
            "digital": ch.digital_units * hw.cost.digital_lanes,
            "attention": ch.attention_units * ch.attention_lanes, "sram_mib": ch.sram_kib / 1024.0,
            "network": routers}


def area_breakdown(hw: HwConfig) -> dict[str, float]:
    """Area of each component (mm^2), keys :data:`AREA_KEYS`."""
    t = hw.tech
    n = _counts(hw)
    s = _logic_scale(hw)
    footprints = hw.n_tiles if t.array_stack == "3d" else hw.n_arrays
    cell_um2 = t.cell_area_f2 * (t.tech_nm * 1e-3) ** 2
    return {
        "arrays": footprints * hw.rows * hw.cols * cell_um2 / _UM2_PER_MM2,
        "adc": n["adc"] * adc_area_um2(hw.adc_bits, hw) / _UM2_PER_MM2,
        "dac": n["dac"] * t.dac_area_um2 * s / _UM2_PER_MM2,
        "shift_add": n["shift_add"] * t.shift_add_area_um2 * s / _UM2_PER_MM2,
        "digital": n["digital"] * t.digital_lane_area_um2 * s / _UM2_PER_MM2,
        "attention": n["attention"] * t.attention_lane_area_um2 * s / _UM2_PER_MM2,
        "sram": n["sram_mib"] * t.sram_mm2_per_mib * s,
        "network": n["network"] * t.router_area_mm2 * s,
    }


def static_power_breakdown(hw: HwConfig) -> dict[str, float]:
    """Static power of each component (mW), keys :data:`POWER_KEYS`."""
    t = hw.tech
    n = _counts(hw)
    return {
        "arrays": n["arrays"] * t.p_array_uw / 1000.0,
        "adc": n["adc"] * adc_static_uw(hw.adc_bits, hw) / 1000.0,
        "dac": n["dac"] * t.p_dac_uw / 1000.0,
        "shift_add": n["shift_add"] * t.p_shift_add_uw / 1000.0,
        "digital": n["digital"] * t.p_digital_lane_uw / 1000.0,
        "attention": n["attention"] * t.p_attention_lane_uw / 1000.0,
        "sram": n["sram_mib"] * t.p_sram_mw_per_mib,
        "network": n["network"] * t.p_router_mw,
        "dram": t.p_dram_mw,
    }


def area_mm2(hw: HwConfig) -> float:
    """Total chip area (mm^2): the sum of :func:`area_breakdown`."""
    return float(sum(area_breakdown(hw).values()))


def static_power_mw(hw: HwConfig) -> float:
    """Total static power (mW): the sum of :func:`static_power_breakdown`."""
    return float(sum(static_power_breakdown(hw).values()))
