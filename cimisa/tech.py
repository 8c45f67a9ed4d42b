"""Technology constants: area and static power of every chip component, and the ADC/DAC model to use.

:class:`TechParams` is the ``tech`` part of the one hardware configuration (:class:`cimisa.config.HwConfig`, a
``[tech]`` table in a TOML file). The per-event (dynamic) time and energy constants are in
:class:`cimisa.config.CostParams`; the models that turn these constants into a chip's area, static power and
ADC energy are in :mod:`compiler.components`. Sources of every value: ``docs/cost-model.md``.

None of these settings changes what a command stream computes: :attr:`HwConfig.arch_hash` leaves them out.
"""

from __future__ import annotations

from dataclasses import dataclass

from cimisa.chip import check_fields

__all__ = ["TechParams", "ADC_MODELS", "TECH_INT_LIMITS"]

#: ADC energy/area models: ``survey`` (fitted to B. Murmann's ADC survey, as the Accelergy ADC plug-in the paper
#: used), ``walden`` (``cost.adc_fom_fj_per_step * 2**bits`` per conversion: the kit's model before the chip).
ADC_MODELS = ("survey", "walden")

#: Integer settings of :class:`TechParams` and their inclusive ranges.
TECH_INT_LIMITS: dict[str, tuple[int, int]] = {"tech_nm": (3, 180)}


@dataclass(frozen=True)
class TechParams:
    """Area (um^2 / mm^2) and static power (uW / mW) of each component, the node and the ADC model."""

    #: Technology node (nm) of the periphery and digital logic (the ADC model scales with it).
    tech_nm: int = 22
    #: One of :data:`ADC_MODELS`.
    adc_model: str = "survey"
    #: Area of one weight cell in F^2 (F = ``tech_nm``).
    cell_area_f2: float = 25.0
    #: Area of one row driver / 1-bit DAC (um^2).
    dac_area_um2: float = 1.0
    #: Area of one shift-add unit (one per ADC, um^2).
    shift_add_area_um2: float = 50.0
    #: Area of one lane of a digital unit and of an attention unit (um^2).
    digital_lane_area_um2: float = 300.0
    attention_lane_area_um2: float = 600.0
    #: SRAM area per MiB (mm^2) and one network router per tile (mm^2).
    sram_mm2_per_mib: float = 0.5
    router_area_mm2: float = 0.01
    #: Static (leakage and bias) power: per array, per ADC, per digital / attention lane (uW), per MiB of SRAM,
    #: per router and of the DRAM interface (mW).
    p_array_uw: float = 1.0
    p_adc_uw: float = 10.0
    p_digital_lane_uw: float = 50.0
    p_attention_lane_uw: float = 50.0
    p_sram_mw_per_mib: float = 1.0
    p_router_mw: float = 1.0
    p_dram_mw: float = 129.7

    def violations(self) -> list[str]:
        """Return every rule these constants break (empty when valid), each naming ``tech.<key>``."""
        return check_fields(self, "tech", TECH_INT_LIMITS, {"adc_model": ADC_MODELS})
