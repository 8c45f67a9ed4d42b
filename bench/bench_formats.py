"""Number formats on the real model: all-MiniLM-L6-v2 through the command stream, cell bits x ADC rule x strategy.

For each weight cell width (1, 2, 4 bits as differential pairs; 8 = one two's complement cell per weight, the
kit's original format) and each strategy, the model is compiled once for ``--hw`` in that format, then its held-out
sentences run through the batched golden model with three ADC rules:

* ``lossless``: every MVM's ADC holds every column sum (the exact integer model);
* ``paper``: the paper's ``ceil(log2(rows summed))`` bits per MVM, the format's full range less its top value
  (:func:`compiler.schedule.adc_setting`);
* ``accuracy``: per MVM the fewest bits that keep the stream's error under ``--max-error`` on calibration
  activations (:mod:`mapper.adc_select`).

Each row: embedding cosine (mean, min) and pairwise-similarity Spearman against the dense model, the same for the
lossless row of its format (``drop vs lossless``), and the cost at the ADC settings that ran (arrays, cells,
ADC conversions and energy per token from :mod:`compiler.cost`). The iso-accuracy baseline is the *dense*
model (``nblocks 1``: W itself, no Monarch) on the ``linear`` strategy with 8-bit weights, inputs and ADCs, with
the calib rule the issue measured (0.833) beside the paper and accuracy rules.

    python bench/bench_formats.py                         # the tables of docs/e2e.md (about 15 min on 2 cores)
    python bench/bench_formats.py --cells 1 --strategies auto --sentences 8     # a quick look

Writes ``bench/results/formats_minilm.{json,csv,md}`` and prints the table. Calibrated factors come from the
same cache as ``bench/bench_e2e_minilm.py`` (``--factors calibrated``, the default; the first run calibrates).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from cimisa.config import load_hw  # noqa: E402
from mapper.evaluate import run as R  # noqa: E402
from mapper.evaluate.cim import cost_report  # noqa: E402
from mapper.evaluate.run import priced_setup  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from bench_e2e_minilm import calibrated_factors  # noqa: E402


def fmt_overrides(cells: int) -> dict:
    """The format of a cell width: differential pairs of ``cells``-bit cells, or one two's complement cell (8)."""
    return {} if cells >= 8 else {"cell_bits": cells, "weight_encoding": "differential"}


def run_rows(args) -> list[dict]:
    torch.set_num_threads(args.threads)
    from mapper.evaluate.textdata import heldout_sentences  # noqa: PLC0415
    texts = heldout_sentences(args.sentences)
    calib = R.calibration_texts(args.calib_texts)
    rows: list[dict] = []
    configs = [(args.nblocks, cells, st, fmt_overrides(cells)) for cells in args.cells for st in args.strategies]
    if args.baseline:        # the dense W, one 8-bit cell per weight: as the issue measured, and with the encodings
        configs += [(1, 8, "linear", {}),     # that keep an 8-bit ADC closer to lossless (aihwkit: 0.935)
                    (1, 8, "linear", {"input_encoding": "sign-magnitude", "adc_rounding": "nearest"}),
                    (1, 1, "linear", fmt_overrides(1))]
    preps: dict = {}                 # per nblocks: the model, its tokenised sentences, its calibration activations
    dense_emb = None
    for nb, cells, strategy, overrides in configs:
        if nb not in preps:
            if args.factors == "calibrated" and nb > 1:
                calib_kw = {"sentences": 128, "sweeps": 2, "distill": False}
                p = calibrated_factors(nb, Path(args.cache), calib_kw, args.progress)[0]
            else:
                p = R.prepare("minilm", nb, calibrate=False, show_progress=args.progress)
            preps[nb] = (p, R.tokenize(p, texts, max_len=args.max_len),
                         R.collect_activations(p, calib, max_len=args.max_len))
        prep, batch, acts = preps[nb]
        if dense_emb is None:
            dense_emb = R.embed(prep.dense, batch)
        tokens = int(batch["attention_mask"].sum())
        hw = load_hw(args.hw, **overrides)
        hw = hw.lossless()
        t0 = time.perf_counter()
        setup = R.compile_cim(prep, hw, acts, strategy=strategy)
        compile_s = time.perf_counter() - t0
        rules = [("lossless", "bound", None)] + [(r, r, args.max_error if r == "accuracy" else None)
                                                 for r in args.rules if r != "lossless"]
        if nb == 1:                                        # the baseline: 8-bit ADCs as the issue measured them
            rules = [("lossless", "bound", None), ("calib-8b", "calib", None)]
            if not overrides:
                rules += [("paper", "paper", None), ("accuracy", "accuracy", args.max_error)]
        base = None
        for label, rule, max_error in rules:
            t1 = time.perf_counter()
            bits = 8 if label == "calib-8b" else None
            model, ex = R.build_cim_model(prep, setup, adc_bits=bits, adc_rule=rule, max_error=max_error)
            emb = R.embed(model, batch)
            met = R.encoder_metrics(dense_emb, emb)
            cost = cost_report(priced_setup(setup, ex), prep.spec, hw)
            adc_bits = [c.args["adc_bits"] for _n, (_p, cmds) in ex.programs.items() for c in cmds
                        if c.op.name == "MVM"]
            if base is None:
                base = met
            row = {
                "nblocks": nb, "model": "dense W (linear)" if nb == 1 else f"Monarch nb{nb}",
                "strategy": strategy, "cell_bits": cells, "format": hw.fmt.describe(),
                "cells_per_weight": hw.fmt.cols_per_weight,
                "inputs_rounding": f"{hw.input_encoding}/{hw.adc_rounding}", "adc_rule": label,
                "adc_bits_mean": round(sum(adc_bits) / max(1, len(adc_bits)), 2), "adc_bits_max": max(adc_bits),
                "cosine_mean": met["cosine_mean"], "cosine_min": met["cosine_min"],
                "pair_spearman": met.get("pair_spearman"),
                "drop_vs_lossless": round(base["cosine_mean"] - met["cosine_mean"], 5),
                "arrays": setup.compiled.placement.n_arrays,
                "weight_cells": int(setup.compiled.placement.weight_cells),
                "conversions_per_token": cost["conversions_per_token"],
                "energy_nj_per_token": cost["energy_nj"], "adc_energy_nj_per_token":
                    cost["energy_components_nj"]["adc"],
                "adc_selection_met": None if ex.adc_choice is None else ex.adc_choice.met,
                "sentences": len(texts), "tokens": tokens, "hw": hw.name, "factors": args.factors,
                "seconds": round(time.perf_counter() - t1 + (compile_s if label == "lossless" else 0), 1),
            }
            rows.append(row)
            print(f"{row['model']:16s} {strategy:6s} cells {cells} {label:9s} cos {row['cosine_mean']:.4f} "
                  f"(drop {row['drop_vs_lossless']:+.4f}) rho {_cell(row['pair_spearman'])} bits~{row['adc_bits_mean']}"
                  f" conv/tok {row['conversions_per_token']:.3g} E/tok {row['energy_nj_per_token']:.4g} nJ "
                  f"{row['seconds']} s", file=sys.stderr, flush=True)
            del model, ex
        del setup
    return rows


COLUMNS = [("model", "model"), ("strategy", "strategy"), ("cell_bits", "cell bits"),
           ("cells_per_weight", "cells/weight"), ("inputs_rounding", "inputs / ADC rounding"),
           ("adc_rule", "ADC rule"), ("adc_bits_mean", "ADC bits (mean)"),
           ("cosine_mean", "cosine"), ("cosine_min", "cos min"), ("pair_spearman", "pair rho"),
           ("drop_vs_lossless", "drop vs lossless"), ("arrays", "arrays"),
           ("conversions_per_token", "ADC conv./token"), ("energy_nj_per_token", "energy nJ/token"),
           ("adc_energy_nj_per_token", "ADC nJ/token")]


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) >= 1000 else f"{v:.4f}".rstrip("0").rstrip(".") if v % 1 else f"{v:.0f}"
    return str(v)


def markdown(rows: list[dict]) -> str:
    head = "| " + " | ".join(t for _k, t in COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    return head + "".join("| " + " | ".join(_cell(r[k]) for k, _t in COLUMNS) + " |\n" for r in rows)


def write(rows: list[dict], out: Path, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("formats_minilm.json", json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n"),
                       ("formats_minilm.md", markdown(rows))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out / name)
    tmp = out / ".formats_minilm.csv.tmp"
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    tmp.replace(out / "formats_minilm.csv")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sentences", type=int, default=16, help="held-out sentences (an even spread)")
    p.add_argument("--nblocks", type=int, default=4)
    p.add_argument("--cells", default="1,2,4,8", help="cell widths (8: one two's complement cell per weight)")
    p.add_argument("--rules", default="paper,accuracy", help="ADC rules besides lossless")
    p.add_argument("--strategies", default="auto,sparse")
    p.add_argument("--max-error", type=float, default=0.02, help="the accuracy rule's bound")
    p.add_argument("--factors", default="calibrated", choices=("calibrated", "projection"))
    p.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="skip the dense-W linear 8-bit baseline rows")
    p.add_argument("--hw", default="paper-256")
    p.add_argument("--max-len", type=int, default=64)
    p.add_argument("--calib-texts", type=int, default=64)
    p.add_argument("--cache", default=os.path.expanduser("~/.cache/cim-kit/e2e"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--no-progress", dest="progress", action="store_false")
    args = p.parse_args(argv)
    args.cells = [int(v) for v in args.cells.split(",") if v]
    args.strategies = [s for s in args.strategies.split(",") if s]
    args.rules = [r for r in args.rules.split(",") if r]
    t0 = time.perf_counter()
    rows = run_rows(args)
    meta = dict(vars(args), total_seconds=round(time.perf_counter() - t0, 1))
    write(rows, Path(args.out), meta)
    print(markdown(rows))
    print(f"total {meta['total_seconds']} s; wrote {Path(args.out) / 'formats_minilm.json'} (.csv, .md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
