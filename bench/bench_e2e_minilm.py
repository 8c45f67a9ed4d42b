"""End-to-end accuracy of all-MiniLM-L6-v2 executed on the CIM golden model, against the dense model.

For each nblocks (2, 4, 8) and each factor source (optimal projection; projection + D2S calibration), the
model is compiled once for the hardware configuration (lossless ADCs), then every mapped matmul of the
held-out sentences runs as CIM commands on the batched golden model with ADCs of lossless / 8 / 5 / 3 bits,
and with analog noise (programming + read, seeded) at the listed ADC resolution. Reported per row: the mean
(and minimum) cosine similarity of the mean-pooled sentence embedding against the dense model, the same for
the float Monarch model (the D2S loss alone) and the Spearman correlation of the pairwise similarities.

Calibrated factors are cached as d2s folders (``--cache``), so only the first run pays for calibration.

    python bench/bench_e2e_minilm.py                       # the table of docs/e2e.md
    python bench/bench_e2e_minilm.py --sentences 32 --nblocks 4 --adc lossless,5   # a quick look

Writes ``bench/results/e2e_minilm.{json,csv,png}`` and prints the table.
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

from mapper.cli_args import add_format_options, format_overrides, with_format  # noqa: E402
from mapper.evaluate import run as R  # noqa: E402
from sw_model.noise import parse_noise  # noqa: E402

DEFAULT_NOISE = "prog=0.01;prog=0.03;read=0.001;prog=0.01,read=0.001"


def calibrated_factors(nblocks: int, cache: Path, calib_kw: dict, show_progress: bool):
    """Return ``Prepared`` for calibrated MiniLM at ``nblocks``, from the cache folder or by calibrating."""
    from mapper.d2s.calibrate import CalibConfig, calibrate  # noqa: PLC0415
    from mapper.d2s.io import save_monarch_dir  # noqa: PLC0415
    cfg = CalibConfig(**calib_kw)
    import hashlib  # noqa: PLC0415

    from mapper.evaluate.textdata import calibration_sentences  # noqa: PLC0415
    tag = "-".join(f"{k}{v}" for k, v in sorted(calib_kw.items())) or "default"
    text_tag = hashlib.sha256("\n".join(calibration_sentences()).encode()).hexdigest()[:8]   # the text set too
    folder = cache / f"minilm-nb{nblocks}-calib-{tag}-text{text_tag}"
    if (folder / "monarch.json").is_file():
        return R.prepare(str(folder), nblocks, show_progress=show_progress), folder, 0.0
    prep = R.prepare("minilm", nblocks, calibrate=False, show_progress=show_progress)
    t0 = time.perf_counter()
    factors, record = calibrate(prep.spec, prep.dense, prep.factors, cfg, show_progress=show_progress)
    secs = time.perf_counter() - t0
    save_monarch_dir(folder, prep.spec, nblocks, factors, {}, calibration=record)
    return R.prepare(str(folder), nblocks, show_progress=show_progress), folder, secs


def run_bench(args) -> list[dict]:
    torch.set_num_threads(args.threads)
    from mapper.evaluate.textdata import heldout_sentences  # noqa: PLC0415
    texts = heldout_sentences(args.sentences)
    hw = with_format(args.hw, format_overrides(args)).lossless()
    adcs = [a if a == "lossless" else int(a) for a in args.adc.split(",")]
    noises = [parse_noise(n) for n in args.noise.split(";") if n.strip()] if args.noise else []
    noise_adc = args.noise_adc if args.noise_adc == "lossless" else int(args.noise_adc)
    rules = [r for r in args.adc_rules.split(",") if r]
    calib_kw = json.loads(args.calib_config) if args.calib_config else {}
    rows: list[dict] = []
    dense_emb = None
    sources = {"both": ["projection", "calibrated"], "projection": ["projection"],
               "calibrated": ["calibrated"]}[args.factors]
    calib_kw = calib_kw or {"sentences": 128, "sweeps": 2, "distill": False}
    for nb in [int(v) for v in args.nblocks.split(",")]:
        for source in sources:
            t0 = time.perf_counter()
            calib_secs = 0.0
            if source == "calibrated":
                prep, folder, calib_secs = calibrated_factors(nb, Path(args.cache), calib_kw, args.progress)
            else:
                prep = R.prepare("minilm", nb, calibrate=False, show_progress=args.progress)
            batch = R.tokenize(prep, texts, max_len=args.max_len)
            if dense_emb is None:
                dense_emb = R.embed(prep.dense, batch)
            mon_emb = R.embed(prep.monarch, batch)
            mon = R.encoder_metrics(dense_emb, mon_emb)
            acts = R.collect_activations(prep, R.calibration_texts(args.calib_texts), max_len=args.max_len)
            setup = R.compile_cim(prep, hw, acts, strategy=args.strategy)
            prep_secs = time.perf_counter() - t0
            configs = []
            for a in adcs:
                for rule in (["bound"] if a == "lossless" else rules):
                    configs.append((a, rule, None))
            if source == sources[-1]:       # noise rows for the last factor source only (calibrated by default)
                configs += [(noise_adc, args.noise_rule, n) for n in noises]
            for adc, rule, noise in configs:
                t1 = time.perf_counter()
                model, ex = R.build_cim_model(prep, setup, adc_bits=adc, noise=noise, adc_rule=rule,
                                              max_error=args.max_error if rule == "accuracy" else None)
                desc = f"nb{nb} {source[:5]} adc={adc} {rule}" + (f" {noise.label()}" if noise else "")
                emb = R.embed(model, batch, progress=args.progress, desc=desc)
                met = R.encoder_metrics(dense_emb, emb)
                vs_mon = R.encoder_metrics(mon_emb, emb)
                row = {
                    "nblocks": nb, "factors": source, "adc_bits": str(adc),
                    "adc_rule": "-" if adc == "lossless" else rule,
                    "noise": noise.label() if noise else "none", "format": hw.fmt.describe(),
                    "adc_bits_sum": sum(c.args["adc_bits"] for _p, cmds in ex.programs.values() for c in cmds
                                        if c.op.name == "MVM"),
                    "cosine_mean": met["cosine_mean"], "cosine_min": met["cosine_min"],
                    "pair_spearman": met.get("pair_spearman"),
                    "monarch_float_cosine_mean": mon["cosine_mean"],
                    "monarch_float_pair_spearman": mon.get("pair_spearman"),
                    "cim_vs_float_monarch_cosine": vs_mon["cosine_mean"],
                    "sentences": len(texts), "tokens": int(batch["attention_mask"].sum()),
                    "mvm_token_commands": ex.mvms, "exec_seconds": round(time.perf_counter() - t1, 2),
                    "prepare_seconds": round(prep_secs, 2), "calibration_seconds": round(calib_secs, 2),
                    "strategy": args.strategy, "hw": hw.name,
                }
                rows.append(row)
                if args.partial:
                    write_results(rows, Path(args.out), {"partial": True, **vars(args)}, plot_it=False)
                print(f"{desc:40s} cos {row['cosine_mean']:.4f} (min {row['cosine_min']:.4f}) "
                      f"float-Monarch {row['monarch_float_cosine_mean']:.4f}  "
                      f"vs-float {row['cim_vs_float_monarch_cosine']:.4f}"
                      f"  {row['exec_seconds']:.1f} s", file=sys.stderr, flush=True)
            del setup, prep
    return rows


def write_results(rows: list[dict], out: Path, meta: dict, plot_it: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".e2e_minilm.json.tmp"
    tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / "e2e_minilm.json")
    tmp = out / ".e2e_minilm.csv.tmp"
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    tmp.replace(out / "e2e_minilm.csv")
    if plot_it:
        plot(rows, out / "e2e_minilm.png")


def plot(rows: list[dict], path: Path | None):
    """Cosine vs dense against ADC resolution, one panel per factor source; return the Figure.

    Colour: nblocks; line style: ADC step rule; dotted: the float Monarch model; one marker per analog-noise
    setting (named in the legend) at the resolution the noise rows ran with. Legend right of the panels.
    """
    from matplotlib.lines import Line2D  # noqa: PLC0415

    from mapper import plotstyle as S  # noqa: PLC0415
    plt = S.pyplot()
    clean = [r for r in rows if r["noise"] == "none"]
    adcs = list(dict.fromkeys(r["adc_bits"] for r in clean)) or list(dict.fromkeys(r["adc_bits"] for r in rows))
    sources = list(dict.fromkeys(r["factors"] for r in rows))
    nbs = sorted({r["nblocks"] for r in rows})
    noises = list(dict.fromkeys(r["noise"] for r in rows if r["noise"] != "none"))
    fig, axes = plt.subplots(1, len(sources), figsize=(4.6 * len(sources), 3.8), sharey=True, squeeze=False)
    for ax, source in zip(axes[0], sources):
        for ci, nb in enumerate(nbs):
            color = f"C{ci}"
            for rule, ls in (("calib", "-"), ("bound", "--")):
                pts = [(adcs.index(r["adc_bits"]), r["cosine_mean"]) for r in clean
                       if r["nblocks"] == nb and r["factors"] == source and r["adc_rule"] in (rule, "-")]
                if len(pts) > 1:
                    ax.plot(*zip(*pts), marker="o", ms=4, ls=ls, color=color)
            fl = [r["monarch_float_cosine_mean"] for r in clean if r["nblocks"] == nb and r["factors"] == source]
            if fl:
                ax.axhline(fl[0], ls=":", lw=0.9, color=color)
            for r in rows:
                if r["noise"] != "none" and r["factors"] == source and r["nblocks"] == nb:
                    k = noises.index(r["noise"])
                    x = adcs.index(r["adc_bits"]) if r["adc_bits"] in adcs else 0
                    ax.scatter([x + 0.09 * (k + 1)], [r["cosine_mean"]], marker=S.noise_marker(k), color=color,
                               s=26, linewidths=1.2, zorder=3)
        ax.set_xticks(range(len(adcs)), [a if a == "lossless" else f"{a} b" for a in adcs])
        ax.set_title(f"factors: {source}")
        ax.set_xlabel("ADC resolution (bits)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("embedding cosine vs dense (mean)")
    handles = [Line2D([], [], color=f"C{ci}", lw=2, label=f"nblocks {nb}") for ci, nb in enumerate(nbs)]
    handles += [Line2D([], [], color="#444444", ls="-", marker="o", ms=4, label="calib ADC rule"),
                Line2D([], [], color="#444444", ls="--", marker="o", ms=4, label="bound ADC rule"),
                Line2D([], [], color="#444444", ls=":", label="float Monarch (no CIM)")]
    noise_adc = sorted({r["adc_bits"] for r in rows if r["noise"] != "none"})
    for k, n in enumerate(noises):
        handles.append(Line2D([], [], color="#444444", ls="none", marker=S.noise_marker(k), ms=6,
                              label=f"noise {n}"))
    hw = next((r.get("hw") for r in rows if r.get("hw")), None)
    strategy = next((r.get("strategy") for r in rows if r.get("strategy")), None)
    extra = f"strategy: {strategy}" if strategy else None
    fig.suptitle(S.title("all-MiniLM-L6-v2 on the CIM golden model: embedding cosine vs dense",
                         model="all-MiniLM-L6-v2", hw=hw, extra=extra))
    fig.tight_layout()
    S.legend_outside(axes[0][-1], handles, where="right",
                     title="nblocks / ADC rule" + (f" / noise ({', '.join(a + ' b' for a in noise_adc)} ADC)"
                                                   if noises else ""), handlelength=3.2)
    if path is not None:
        S.save(fig, path)
    return fig


def print_table(rows: list[dict]) -> None:
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415
    t = Table(title="all-MiniLM-L6-v2 on the CIM golden model: cosine vs dense")
    for col in ("nblocks", "factors", "ADC", "rule", "noise", "cos mean", "cos min", "pair rho", "float Monarch cos",
                "CIM vs float", "exec s"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(str(r["nblocks"]), r["factors"], r["adc_bits"], r["adc_rule"], r["noise"], f"{r['cosine_mean']:.4f}",
                  f"{r['cosine_min']:.4f}", f"{r['pair_spearman']:.4f}", f"{r['monarch_float_cosine_mean']:.4f}",
                  f"{r['cim_vs_float_monarch_cosine']:.4f}", f"{r['exec_seconds']:.1f}")
    Console(width=140).print(t)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sentences", type=int, default=32, help="held-out sentences (an even spread)")
    p.add_argument("--nblocks", default="2,4,8")
    p.add_argument("--adc", default="lossless,8,5,3")
    p.add_argument("--factors", default="both", choices=("both", "projection", "calibrated"))
    p.add_argument("--noise", default=DEFAULT_NOISE, help="';'-separated noise settings (empty: none)")
    p.add_argument("--noise-adc", default="8", help="ADC resolution of the noise rows")
    p.add_argument("--adc-rules", default="bound,calib", help="ADC step rules for the lossy rows (bound, calib, "
                                                              "accuracy: with --max-error)")
    p.add_argument("--max-error", type=float, default=0.01, help="bound of the accuracy rule (mapper.adc_select)")
    add_format_options(p)
    p.add_argument("--noise-rule", default="calib", help="ADC step rule of the noise rows")
    p.add_argument("--hw", default="paper-256")
    p.add_argument("--strategy", default="auto")
    p.add_argument("--max-len", type=int, default=64)
    p.add_argument("--calib-texts", type=int, default=64, help="sentences for activation scales/shifts")
    p.add_argument("--calib-config", default=None, help="JSON of CalibConfig overrides for D2S calibration")
    p.add_argument("--cache", default=os.path.expanduser("~/.cache/cim-kit/e2e"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--partial", action="store_true", help="rewrite the JSON/CSV after every row")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    rows = run_bench(args)
    meta = {k: v for k, v in vars(args).items()}
    meta["total_seconds"] = round(time.perf_counter() - t0, 1)
    write_results(rows, Path(args.out), meta)
    print_table(rows)
    print(f"total {meta['total_seconds']} s; wrote {Path(args.out) / 'e2e_minilm.json'} (.csv, .png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
