"""ADC energy per conversion and area as functions of resolution, conversion rate and technology node.

Two models (:data:`cimisa.tech.ADC_MODELS`, chosen by ``hw.tech.adc_model``):

``survey`` (the default)
    A fit to B. Murmann's ADC Performance Survey 1997-2023 (215 published ISSCC/VLSI designs, as packaged by the
    Accelergy ADC plug-in, Andrulis et al., arXiv:2404.06553), made in the plug-in's manner: a regression in log
    space, its intercept moved to a low quantile of the residuals so that the model answers "what does a good
    (not the best, not the median) design cost". Energy per conversion::

        ln E[pJ] = E0 + E_BIT * b + E_LOGBIT * ln(b) + E_NODE * ln(tech_nm) + E_RATE * max(0, ln(f / F_CORNER))

    with ``b = max(bits, B_MIN)``: about 4x per bit at high resolution (thermal noise), flat below the minimum
    ``B_MIN = -E_LOGBIT / E_BIT`` (about 5 effective bits: the survey has no cheaper low-resolution design, and
    the plug-in's model is flat there too); flat below the corner rate, rising above it. Area, regressed on the
    node, rate and energy as the plug-in does::

        ln A[um^2] = A0 + A_NODE * ln(tech_nm) + A_RATE * ln(f) + A_ENERGY * ln(E[pJ])

    ``bits`` is the effective number of bits (ENOB), as in the plug-in; ``tech.adc_enob_loss`` lowers it below
    the nominal resolution. :func:`fit_survey` fits these constants to ``compiler/data/adc_survey.csv``
    (``bench/bench_adc_model.py`` prints the fit and its error; the constants below are its output, and a test
    checks they still match). Outside the survey's range (3.4..17.2 effective bits, 4..1000 nm, 1e3..9e10
    conversions/s) the formulas extrapolate; the rate is clamped to ``F_MIN..F_MAX``.

``walden``
    ``cost.adc_fom_fj_per_step * 2**bits`` fJ per conversion (the Walden figure of merit; the kit's model
    before the chip). The area uses the survey's area regression with this energy.

The conversion rate comes from the configured conversion time, :func:`adc_time_ns` (SAR: linear in the bits,
ramp: ``2**bits``). Sources and the comparison with the plug-in's own fit: ``docs/cost-model.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["adc_time_ns", "adc_rate_hz", "survey_energy_pj", "survey_area_um2", "walden_energy_pj",
           "load_survey", "fit_survey", "SurveyFit", "SURVEY_CSV", "SURVEY_ENERGY", "B_MIN", "SURVEY_AREA", "F_CORNER",
           "F_MIN", "F_MAX", "ENERGY_QUANTILE", "AREA_QUANTILE", "ENERGY_BAND", "AREA_BAND"]

#: The survey's designs (rate, node, area, energy, SNDR, ENOB), with their citation in the file's header.
SURVEY_CSV = Path(__file__).with_name("data") / "adc_survey.csv"

#: Quantiles of the fit residuals the intercepts are moved to (the plug-in's choices: 20 % of designs are more
#: energy-efficient than the model, 10 % smaller).
ENERGY_QUANTILE = 0.2
AREA_QUANTILE = 0.1

#: Energy fit (``fit_survey``, printed by bench/bench_adc_model.py): intercept, per effective bit, per ln(bits),
#: per ln(nm), per ln(rate) above the corner.
SURVEY_ENERGY = {"E0": -2.755617, "E_BIT": 1.485090, "E_LOGBIT": -7.474514, "E_NODE": 1.400899, "E_RATE": 0.336411}
#: Rate (conversions/s) below which the survey's energy per conversion does not depend on the rate (10**5.75).
F_CORNER = 562341.325
#: Area fit: intercept, per ln(nm), per ln(rate), per ln(energy in pJ).
SURVEY_AREA = {"A0": 2.031604, "A_NODE": 0.929453, "A_RATE": 0.146756, "A_ENERGY": 0.329817}
#: 5 % and 95 % quantiles of ``ln(measured / modelled)`` over the survey: 90 % of the published designs lie
#: within ``model * exp(band)``.
ENERGY_BAND = (-0.6873, 3.6516)
AREA_BAND = (-0.5636, 4.6837)
#: Effective bits below which the energy no longer falls (the minimum of the fitted curve).
B_MIN = -SURVEY_ENERGY["E_LOGBIT"] / SURVEY_ENERGY["E_BIT"]
#: Rates are clamped to the survey's range (1e3..9e10 conversions/s, rounded up).
F_MIN = 1e3
F_MAX = 1e11


def adc_time_ns(bits, cost) -> np.ndarray | float:
    """Time of one conversion at ``bits`` (ns): ``t_adc * ((1 - ramp) * bits / ref + ramp * 2**(bits - ref))``.

    ``cost`` is a :class:`cimisa.config.CostParams`; ``bits`` a number or an array.
    """
    b = np.asarray(bits, dtype=np.float64)
    r = cost.adc_ramp_fraction
    t = cost.t_adc_ns * ((1 - r) * b / cost.adc_ref_bits + r * np.exp2(b - cost.adc_ref_bits))
    return t if t.ndim else float(t)


def adc_rate_hz(bits, hw) -> np.ndarray | float:
    """Conversion rate of one ADC at ``bits`` (conversions/s) of configuration ``hw``, clamped to ``F_MIN..F_MAX``.

    ``1e9 / adc_time_ns``. A zero conversion time (the ``paper`` preset hides the ADC inside the fixed MVM time)
    means the ADC does its share of one MVM over the whole array, ``digits * ceil(conversions / adcs_per_array)``
    conversions (``fmt.digits`` drive cycles, ``fmt.conversions(logical_cols)`` columns: :mod:`cimisa.formats`;
    ``input_bits * ceil(cols / adcs_per_array)`` in the default format), within ``cost.t_mvm_fixed_ns``; with
    that also zero, ``F_MAX``.
    """
    c = hw.cost
    t = np.asarray(adc_time_ns(bits, c), dtype=np.float64)
    fmt = hw.fmt
    per_mvm = fmt.digits * -(-fmt.conversions(hw.logical_cols) // hw.adcs_per_array)
    t_hidden = c.t_mvm_fixed_ns / per_mvm if c.t_mvm_fixed_ns > 0 else 1e9 / F_MAX
    f = 1e9 / np.where(t > 0, t, t_hidden)
    f = np.clip(f, F_MIN, F_MAX)
    return f if f.ndim else float(f)


def _ln_energy(c: dict[str, float], corner: float, enob, rate_hz, tech_nm) -> np.ndarray:
    """``ln E[pJ]`` of the energy formula with constants ``c`` (see the module docstring)."""
    b = np.maximum(np.asarray(enob, dtype=np.float64), -c["E_LOGBIT"] / c["E_BIT"])
    f = np.clip(np.asarray(rate_hz, dtype=np.float64), F_MIN, F_MAX)
    return (c["E0"] + c["E_BIT"] * b + c["E_LOGBIT"] * np.log(b) + c["E_NODE"] * np.log(tech_nm)
            + c["E_RATE"] * np.maximum(0.0, np.log(f / corner)))


def _ln_area(c: dict[str, float], rate_hz, tech_nm, energy_pj) -> np.ndarray:
    """``ln A[um^2]`` of the area formula with constants ``c``."""
    f = np.clip(np.asarray(rate_hz, dtype=np.float64), F_MIN, F_MAX)
    return (c["A0"] + c["A_NODE"] * np.log(tech_nm) + c["A_RATE"] * np.log(f)
            + c["A_ENERGY"] * np.log(np.asarray(energy_pj, dtype=np.float64)))


def survey_energy_pj(enob, rate_hz, tech_nm) -> np.ndarray | float:
    """Energy of one conversion (pJ) of the survey fit: the full energy ``P / f`` of a design of ``enob``
    effective bits (at least :data:`B_MIN`) running at ``rate_hz`` in ``tech_nm``."""
    e = np.exp(_ln_energy(SURVEY_ENERGY, F_CORNER, enob, rate_hz, tech_nm))
    return e if e.ndim else float(e)


def survey_area_um2(rate_hz, tech_nm, energy_pj) -> np.ndarray | float:
    """Area of one ADC (um^2) running at ``rate_hz`` with ``energy_pj`` per conversion (the survey's regression)."""
    a = np.exp(_ln_area(SURVEY_AREA, rate_hz, tech_nm, energy_pj))
    return a if a.ndim else float(a)


def walden_energy_pj(bits, fom_fj_per_step: float) -> np.ndarray | float:
    """Walden energy of one conversion (pJ): ``fom * 2**bits / 1000`` (the kit's formula before the chip)."""
    e = fom_fj_per_step * np.exp2(np.asarray(bits, dtype=np.float64)) / 1000.0
    return e if np.ndim(e) else float(e)


@dataclass(frozen=True)
class SurveyFit:
    """A fit of the survey (:func:`fit_survey`): the constants of :data:`SURVEY_ENERGY`, :data:`F_CORNER`,
    :data:`SURVEY_AREA`, the bands of the residuals, the quantile shifts of the intercepts (``ln``) and the fit's
    quality (RMS of ``ln`` residuals around the least-squares fit, R^2)."""

    energy: dict[str, float]
    f_corner: float
    area: dict[str, float]
    energy_band: tuple[float, float]
    area_band: tuple[float, float]
    energy_shift: float
    area_shift: float
    energy_rms: float
    area_rms: float
    energy_r2: float
    area_r2: float
    n: int

    def ln_energy(self, enob, rate_hz, tech_nm) -> np.ndarray:
        """``ln`` of this fit's energy per conversion (pJ), quantile-shifted as shipped."""
        return _ln_energy(self.energy, self.f_corner, enob, rate_hz, tech_nm)

    def ln_area(self, rate_hz, tech_nm, energy_pj) -> np.ndarray:
        """``ln`` of this fit's area (um^2), quantile-shifted as shipped."""
        return _ln_area(self.area, rate_hz, tech_nm, energy_pj)


def load_survey(path: Path | str = SURVEY_CSV) -> dict[str, np.ndarray]:
    """The survey's designs as columns (``rate_hz``, ``tech_nm``, ``area_um2``, ``energy_pj``, ``sndr_db``,
    ``enob``)."""
    lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    names = lines[0].split(",")
    rows = np.array([[float(v) for v in ln.split(",")] for ln in lines[1:]], dtype=np.float64)
    return {k: rows[:, i] for i, k in enumerate(names)}


def _lstsq(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    return coef, y - x @ coef


def fit_survey(data: dict[str, np.ndarray] | None = None) -> SurveyFit:
    """Fit the energy and area models to the survey (see the module docstring).

    Energy: least squares of ``ln E`` on ``1, enob, ln(enob), ln(node), max(0, ln(f / corner))`` for every corner
    on a grid
    of quarter decades 1e5..1e9 (the one with the smallest residual is kept), then the intercept is moved to the
    :data:`ENERGY_QUANTILE` quantile of the residuals. Area: least squares of ``ln A`` on ``1, ln(node), ln(f),
    ln(E)``, intercept moved to the :data:`AREA_QUANTILE` quantile. Bands: the 5 % and 95 % quantiles of
    ``ln(measured / modelled)`` around the final models (energy: flat below its minimum; area: at the measured
    energy).
    """
    d = load_survey() if data is None else data
    le, la = np.log(d["energy_pj"]), np.log(d["area_um2"])
    lf, lt, b = np.log(d["rate_hz"]), np.log(d["tech_nm"]), d["enob"]
    one = np.ones_like(le)
    best = None
    for corner in 10.0 ** np.arange(5.0, 9.01, 0.25):
        x = np.column_stack([one, b, np.log(b), lt, np.maximum(0.0, lf - np.log(corner))])
        coef, res = _lstsq(x, le)
        rms = float(np.sqrt(np.mean(res ** 2)))
        if best is None or rms < best[0] - 1e-12:
            best = (rms, corner, coef, res)
    e_rms, corner, ec, eres = best
    eshift = float(np.quantile(eres, ENERGY_QUANTILE))
    energy = {"E0": float(ec[0]) + eshift, "E_BIT": float(ec[1]), "E_LOGBIT": float(ec[2]), "E_NODE": float(ec[3]),
              "E_RATE": float(ec[4])}
    e_model = _ln_energy(energy, corner, b, d["rate_hz"], d["tech_nm"])   # the shipped form: flat below B_MIN
    x = np.column_stack([one, lt, lf, le])
    ac, ares = _lstsq(x, la)
    ashift = float(np.quantile(ares, AREA_QUANTILE))

    def band(res: np.ndarray) -> tuple[float, float]:
        return float(np.quantile(res, 0.05)), float(np.quantile(res, 0.95))

    return SurveyFit(
        energy=energy,
        f_corner=float(corner),
        area={"A0": float(ac[0]) + ashift, "A_NODE": float(ac[1]), "A_RATE": float(ac[2]), "A_ENERGY": float(ac[3])},
        energy_band=band(le - e_model), area_band=band(ares - ashift), energy_shift=eshift, area_shift=ashift,
        energy_rms=e_rms, area_rms=float(np.sqrt(np.mean(ares ** 2))),
        energy_r2=1.0 - float(np.var(eres) / np.var(le)), area_r2=1.0 - float(np.var(ares) / np.var(la)), n=len(le))
