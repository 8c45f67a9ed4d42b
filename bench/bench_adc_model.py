"""The ADC model's fit to B. Murmann's ADC survey: constants, error, cross-validation, reference designs.

Fits :func:`compiler.adc_model.fit_survey` to ``compiler/data/adc_survey.csv`` (215 ISSCC/VLSI designs, as
extracted by the Accelergy ADC plug-in) and prints:

* the fitted constants next to the ones the kit ships (``compiler.adc_model.SURVEY_ENERGY`` etc.): they must agree;
* the fit's error: RMS of ``ln(measured / modelled)``, R^2, the 5..95 % residual band, and the same RMS under
  5-fold cross-validation (fit on 4/5 of the designs, error on the rest; a fit that only memorises the data
  would have a much larger held-out error);
* the model at reference points: ISAAC's ADC (Shafiee et al., ISCA 2016: 8 ADCs of 8 bits at 1.28 GS/s,
  16 mW and 0.0096 mm^2 in all, after L. Kull et al., ISSCC 2013, 8 b 1.2 GS/s SAR in 32 nm, 3.1 mW, SNDR
  39.3 dB = 6.2 ENOB, 0.0015 mm^2), an 8-bit 1 GS/s converter at 28 nm, and the Walden figure of merit
  ``cost.adc_fom_fj_per_step * 2**bits`` at the same points;
* energy and area against resolution for the default configuration's node and rate (the table in
  ``docs/cost-model.md``).

    python bench/bench_adc_model.py [--folds 5] [--json bench/results/adc_model.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cimisa.config import CostParams, load_hw  # noqa: E402
from cimisa.fsutil import atomic_write_text  # noqa: E402
from compiler import adc_model as M  # noqa: E402
from compiler import components as C  # noqa: E402


def cross_validate(data: dict[str, np.ndarray], folds: int, seed: int = 0) -> tuple[float, float]:
    """RMS of held-out ``ln(measured / modelled)`` energy and area residuals around the least-squares fit (before
    the quantile shift), over ``folds`` random folds."""
    n = len(data["enob"])
    order = np.random.default_rng(seed).permutation(n)
    e_res, a_res = [], []
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        fit = M.fit_survey({c: v[train] for c, v in data.items()})
        t = {c: v[test] for c, v in data.items()}
        e_res.append(np.log(t["energy_pj"]) - fit.ln_energy(t["enob"], t["rate_hz"], t["tech_nm"]) + fit.energy_shift)
        a_res.append(np.log(t["area_um2"]) - fit.ln_area(t["rate_hz"], t["tech_nm"], t["energy_pj"]) + fit.area_shift)
    rms = lambda r: float(np.sqrt(np.mean(np.concatenate(r) ** 2)))  # noqa: E731
    return rms(e_res), rms(a_res)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = ap.parse_args(argv)

    data = M.load_survey()
    fit = M.fit_survey(data)
    print(f"survey: {fit.n} designs, {M.SURVEY_CSV}")
    print("energy  ln E[pJ] = E0 + E_BIT*b + E_LOGBIT*ln(b) + E_NODE*ln(nm) + E_RATE*max(0, ln(f/F_CORNER)),"
          f" b = max(enob, B_MIN = {M.B_MIN:.3f})")
    for k, v in fit.energy.items():
        print(f"  {k:8s} fit {v:+.6f}   shipped {M.SURVEY_ENERGY[k]:+.6f}")
    print(f"  F_CORNER fit {fit.f_corner:.4g}   shipped {M.F_CORNER:.4g}")
    print("area    ln A[um^2] = A0 + A_NODE*ln(nm) + A_RATE*ln(f) + A_ENERGY*ln(E)")
    for k, v in fit.area.items():
        print(f"  {k:8s} fit {v:+.6f}   shipped {M.SURVEY_AREA[k]:+.6f}")
    cv_e, cv_a = cross_validate(data, args.folds)
    print(f"error (ln of measured/modelled): energy RMS {fit.energy_rms:.3f} (x{np.exp(fit.energy_rms):.2f}), "
          f"R^2 {fit.energy_r2:.3f}, band 5..95% {fit.energy_band[0]:+.2f}..{fit.energy_band[1]:+.2f}; "
          f"{args.folds}-fold held-out RMS {cv_e:.3f}")
    print(f"                                 area   RMS {fit.area_rms:.3f} (x{np.exp(fit.area_rms):.2f}), "
          f"R^2 {fit.area_r2:.3f}, band 5..95% {fit.area_band[0]:+.2f}..{fit.area_band[1]:+.2f}; "
          f"{args.folds}-fold held-out RMS {cv_a:.3f}")

    fom = CostParams().adc_fom_fj_per_step
    refs = [("ISAAC / Kull 2013, 8 b (6.2 ENOB) 1.2 GS/s 32 nm", 6.235, 1.2e9, 32, 2.58, 1500.0),
            ("ISAAC as used, 8 b 1.28 GS/s 32 nm (per ADC)", 8.0, 1.28e9, 32, 16e-3 / 8 / 1.28e9 * 1e12, 1200.0),
            ("8 b 1 GS/s at 28 nm", 8.0, 1e9, 28, None, None)]
    rows = []
    print(f"{'reference':52s} {'E model':>8s} {'E walden':>8s} {'E ref':>7s} {'A model':>8s} {'A ref':>7s}")
    for name, b, f, nm, e_ref, a_ref in refs:
        e = M.survey_energy_pj(b, f, nm)
        a = M.survey_area_um2(f, nm, e)
        w = M.walden_energy_pj(b, fom)
        rows.append({"reference": name, "enob": b, "rate_hz": f, "tech_nm": nm, "energy_pj": e, "walden_pj": w,
                     "energy_ref_pj": e_ref, "area_um2": a, "area_ref_um2": a_ref})
        print(f"{name:52s} {e:8.3f} {w:8.3f} {e_ref or float('nan'):7.3f} {a:8.0f} {a_ref or float('nan'):7.0f}")

    hw = load_hw("paper-256")
    print(f"by resolution, {hw.name}: t_adc {hw.cost.t_adc_ns} ns at {hw.cost.adc_ref_bits} b (SAR), "
          f"{hw.tech.tech_nm} nm, compiler.components (survey dynamic + static share = full energy)")
    print("bits  rate GS/s  survey pJ  walden pJ  survey area um^2")
    table = []
    walden = hw.replace(tech={"adc_model": "walden"})
    for b in range(1, 13):
        f = M.adc_rate_hz(b, hw)
        e = C.adc_energy_pj(b, hw) / (1 - hw.tech.adc_leak_fraction)
        table.append({"bits": b, "rate_hz": f, "survey_pj": e, "walden_pj": C.adc_energy_pj(b, walden),
                      "area_um2": C.adc_area_um2(b, hw)})
        print(f"{b:4d}  {f / 1e9:9.2f}  {e:9.3f}  {table[-1]['walden_pj']:9.3f}  {table[-1]['area_um2']:16.0f}")
    if args.json:
        out = {"fit": asdict(fit), "cv_rms": {"energy": cv_e, "area": cv_a}, "references": rows, "by_bits": table}
        atomic_write_text(args.json, json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
