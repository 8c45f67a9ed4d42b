"""Technology constants: area and static power of every chip component, and the ADC/DAC model to use.

:class:`TechParams` is the ``tech`` part of the one hardware configuration (:class:`cimisa.config.HwConfig`, a
``[tech]`` table in a TOML file). The per-event (dynamic) time and energy constants are in
:class:`cimisa.config.CostParams`; the models that turn these constants into a chip's area, static power and
ADC energy are in :mod:`compiler.components` (ADC: :mod:`compiler.adc_model`). Sources of every value, and which
are assumptions: ``docs/cost-model.md``.

Areas of the periphery and digital logic are quoted at the node ``ref_nm`` (32 nm: ISAAC, ISCA 2016, gives most
of them) and scale as ``(tech_nm / ref_nm)**2``; the weight cells scale with ``tech_nm`` through
``cell_area_f2``; the ADC model takes ``tech_nm`` directly. Static powers are used as given (leakage per
device barely changes between nodes).

None of these settings changes what a command stream computes: :attr:`HwConfig.arch_hash` leaves them out.
"""

from __future__ import annotations

from dataclasses import dataclass

from cimisa.chip import check_fields

__all__ = ["TechParams", "ADC_MODELS", "ARRAY_STACKS", "TECH_INT_LIMITS", "TECH_REAL_LIMITS"]

#: ADC energy/area models: ``survey`` (fitted to B. Murmann's ADC survey, as the Accelergy ADC plug-in the paper
#: used), ``walden`` (``cost.adc_fom_fj_per_step * 2**bits`` per conversion: the kit's model before the chip).
ADC_MODELS = ("survey", "walden")

#: How a tile's arrays (tiers) occupy silicon: ``planar`` (side by side: every array adds its footprint) or
#: ``3d`` (stacked tiers, as 3D-SiM's: a tile's arrays share one footprint).
ARRAY_STACKS = ("planar", "3d")

#: Integer settings of :class:`TechParams` and their inclusive ranges.
TECH_INT_LIMITS: dict[str, tuple[int, int]] = {"tech_nm": (3, 180)}

#: Real settings with a range other than the default ``0..cimisa.chip.REAL_MAX``.
TECH_REAL_LIMITS: dict[str, tuple[float, float]] = {"adc_leak_fraction": (0.0, 0.99), "adc_enob_loss": (0.0, 4.0),
                                                   "ref_nm": (3.0, 1000.0)}


@dataclass(frozen=True)
class TechParams:
    """Area (um^2 / mm^2) and static power (uW / mW) of each component, the node and the ADC model."""

    #: Technology node (nm) of the cells, the periphery and the digital logic.
    tech_nm: int = 22
    #: One of :data:`ADC_MODELS`.
    adc_model: str = "survey"
    #: ``survey`` model: share of an ADC's full-rate energy that is static (leakage, bias, references), charged
    #: as power whether it converts or not; the rest is charged per conversion (the Accelergy ADC plug-in: 0.2).
    adc_leak_fraction: float = 0.2
    #: ``survey`` model: bits of resolution lost to noise and distortion; the survey (indexed by effective bits)
    #: is read at ``adc_bits - adc_enob_loss``. 0: the resolution is the ENOB, as in the plug-in.
    adc_enob_loss: float = 0.0
    #: Node (nm) at which the area constants below (dac, shift-add, lanes, SRAM, router) are quoted.
    ref_nm: float = 32.0
    #: Area of one weight cell in F^2 (F = ``tech_nm``): a 1T1R PCM/RRAM cell.
    cell_area_f2: float = 25.0
    #: One of :data:`ARRAY_STACKS`.
    array_stack: str = "planar"
    #: Area of one row driver / 1-bit DAC (um^2 at ``ref_nm``); one per row of each MVM port of a tile.
    dac_area_um2: float = 0.166
    #: Area of one shift-add unit (one per ADC, um^2 at ``ref_nm``).
    shift_add_area_um2: float = 60.0
    #: Area of one lane of a digital unit and of an attention unit (um^2 at ``ref_nm``).
    digital_lane_area_um2: float = 1517.0
    attention_lane_area_um2: float = 1517.0
    #: On-chip buffer area per MiB (mm^2 at ``ref_nm``) and of one network router (mm^2 at ``ref_nm``).
    sram_mm2_per_mib: float = 1.328
    router_area_mm2: float = 0.0378
    #: Static (leakage and bias) power: per array, per ADC beyond the ADC model's own, per DAC, per shift-add,
    #: per digital / attention lane (uW); per MiB of SRAM, per router and of the idle DRAM interface (mW).
    p_array_uw: float = 0.0
    p_adc_uw: float = 0.0
    p_dac_uw: float = 0.78
    p_shift_add_uw: float = 10.0
    p_digital_lane_uw: float = 976.5625
    p_attention_lane_uw: float = 976.5625
    p_sram_mw_per_mib: float = 66.2
    p_router_mw: float = 2.1
    p_dram_mw: float = 129.7

    def violations(self) -> list[str]:
        """Return every rule these constants break (empty when valid), each naming ``tech.<key>``."""
        return check_fields(self, "tech", TECH_INT_LIMITS, {"adc_model": ADC_MODELS, "array_stack": ARRAY_STACKS},
                            TECH_REAL_LIMITS)

