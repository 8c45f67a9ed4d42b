"""``python -m mapper run``: a forward pass with every mapped matmul executed as CIM commands, vs dense."""

from __future__ import annotations

import argparse
import json
import math
import sys

from cimisa import progress
from compiler.kinds import AdcRule, Strategy, choices
from mapper.cli_args import (
    add_format_options,
    add_max_error_option,
    add_nblocks_option,
    add_out_options,
    check_out,
    format_overrides,
    nonneg_int,
    path_text,
    utf8_text,
    with_format,
)

__all__ = ["register", "main_run", "format_report"]


def _adc_arg(text: str):
    if text.lower() == "lossless":
        return "lossless"
    try:
        bits = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer or 'lossless', not {text!r}") from None
    if bits < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'lossless', not {text!r}")
    return bits


def register(subparsers) -> None:
    """Add the ``run`` sub-command."""
    p = subparsers.add_parser(
        "run", help="run text through the model with every mapped matmul on the CIM golden model",
        description="Forward pass in which every mapped matmul runs as CIM commands on the golden model "
                    "(weights and inputs quantised, ADC effects and optional analog noise included) and the rest "
                    "runs digitally; prints and saves the output against the dense model next to the cost report.")
    p.add_argument("--model", required=True, type=path_text,
                   help="zoo name (tiny-bert, tiny-gpt2, minilm, ...), Hugging Face checkpoint folder, or d2s "
                        "output folder")
    p.add_argument("--text", required=True, action="append", type=utf8_text,
                   help="input text, UTF-8 (repeat for several sentences; decoders use the first)")
    add_nblocks_option(p)
    p.add_argument("--calibrate", action="store_true", help="refine the projected factors with the D2S "
                                                            "calibration before mapping")
    p.add_argument("--hw", default="paper-256", type=path_text,
                   help="hardware configuration: built-in name or .toml/.json file")
    add_format_options(p)
    p.add_argument("--strategy", default="auto", choices=choices(Strategy), metavar="|".join(choices(Strategy)),
                   help="mapping strategy (default: auto)")
    p.add_argument("--adc-bits", type=_adc_arg, default=None, metavar="N|lossless",
                   help="ADC resolution of every MVM (default: the configuration's)")
    p.add_argument("--adc-rule", choices=choices(AdcRule), default="bound",
                   help="ADC step per MVM: 'bound' (no column sum the weights allow saturates), 'paper' (the "
                        "paper's ceil(log2(rows summed)) bits with the format's full range), 'calib' (the "
                        "range seen on calibration text fits) or 'accuracy' (per MVM the fewest bits, at most "
                        "--adc-bits, keeping the calibration error under --max-error)")
    add_max_error_option(p, "--adc-rule")
    p.add_argument("--noise", default=None, metavar="prog=P,read=R[,seed=S]",
                   help="analog noise as fractions of the largest weight (default: none, bit-exact)")
    p.add_argument("--gen-tokens", type=nonneg_int, default=8,
                   help="decoders: tokens to generate greedily (KV cache)")
    add_out_options(p, "also write run.json into the output folder DIR (default: print only; created or replaced "
                       "as a whole, like build's --out)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a summary")
    progress.add_common_options(p)
    p.set_defaults(func=main_run)


def _fmt(v) -> str:
    """An integer (or a float that is one) without decimals; other floats with 4 significant digits."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v == int(v) and abs(v) >= 1:
            return f"{int(v):,}"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.4g}" if abs(v) < 1e-3 or abs(v) >= 10 else f"{v:.4f}"
    return str(v)


#: Cost figures printed by ``mapper run`` (those of ``mapper build``'s summary, same names and units).
_COST_KEYS = ("latency_ns", "matmul_latency_ns", "energy_nj", "prefill_latency_ns", "adc_bits_histogram")


def format_report(rep: dict) -> str:
    """Return a human-readable summary of a run report."""
    noise = rep["noise"]
    lines = [f"model {rep['model']} ({rep['family']}), nblocks {rep['nblocks']}"
             f"{', calibrated' if rep['calibrated'] else ''}, strategy {rep.get('strategy', 'auto')}; hw {rep['hw']}: "
             f"weights {rep['weight_bits']} b, inputs {rep['input_bits']} b, ADC {rep['adc_bits']} b"
             f"{' (lossless)' if rep['adc_lossless'] else ''} ({rep.get('adc_rule', 'bound')} rule), noise "
             + (", ".join(f"{k}={v}" for k, v in noise.items()) if any(noise[k] for k in ("prog", "read"))
                else "none")]
    if rep.get("format"):
        from mapper.report import format_line  # noqa: PLC0415
        lines.append("  " + format_line(rep["format"]))
    if rep.get("adc_selection"):
        sel = rep["adc_selection"]
        hist = " ".join(f"{n} x {b} b" for b, n in sel["adc_bits_histogram"].items())
        lines.append(f"  accuracy ADC rule (max error {sel['max_error']:g}): calibration error "
                     f"{sel['calib_error']:.4f} ({'met' if sel['met_on_calibration'] else 'NOT met'}), ADC bits "
                     f"{sel['adc_bits_sum']:,} (bound rule {sel['lossless_adc_bits_sum']:,}): {hist}")
    met = rep["metrics"]
    for key in ("cim_vs_dense", "monarch_float_vs_dense", "cim_vs_monarch_float"):
        if key in met:
            lines.append(f"  {key:24s} " + ", ".join(f"{k} {_fmt(v)}" for k, v in met[key].items()))
    if "tokens" in met:
        lines.append(f"  {'tokens':24s} {_fmt(met['tokens'])}")
    for who in ("dense", "cim"):
        key = f"generated_{who}"
        if key in met:
            text = met.get(f"{key}_text")
            shown = repr(text) if text is not None else ""
            lines.append(f"  {key:24s} {shown} (token ids {met[key]})")
    if met.get("generated_agreement") is not None:
        lines.append(f"  {'generated_agreement':24s} {_fmt(met['generated_agreement'])}")
    ex = rep["execution"]
    lines.append(f"  executed {_fmt(ex['matmul_calls'])} matmul calls, {_fmt(ex['mvm_token_commands'])} MVM x token, "
                 f"{ex['exec_seconds']:.1f} s (total {ex['total_seconds']:.1f} s)")
    cost = rep.get("cost")
    if isinstance(cost, dict):
        summary = cost.get("summary", cost)
        flat = {k: summary[k] for k in _COST_KEYS if k in summary}
        if not flat:
            flat = {k: v for k, v in summary.items() if isinstance(v, (int, float, str))}
        hist = flat.pop("adc_bits_histogram", None)
        if isinstance(hist, dict):
            flat["ADC conversions"] = " ".join(f"{n} x {b} b" for b, n in hist.items())
        lines.append("  cost (per token, decode): " + ", ".join(f"{k} {_fmt(v)}" for k, v in flat.items()))
        lines.append(f"  {COST_NOTE}")
    else:
        lines.append("  cost: (cost model not available)")
    return "\n".join(lines)


#: Why ``mapper run``'s cost can differ from ``mapper build``'s on the same model (printed under the cost).
COST_NOTE = ("(mapper build's cost model for the stream this run executes: every conversion at the ADC resolution "
             "of the run; mapper build's figures use the paper's per-layer ADC resolution, log2 of the rows per "
             "column, and co-located blocks, so they are lower: see docs/e2e.md)")


def check_model(model: str, nblocks: int | None, calibrate: bool = False) -> None:
    """Refuse a model ``mapper run`` cannot execute, before torch is even loaded."""
    from cimisa.errors import ModelError  # noqa: PLC0415
    from mapper.models import RUN_FAMILIES, source_family  # noqa: PLC0415
    kind, family = source_family(model)
    if kind == "shape":
        raise ModelError(f"model {model!r} is shape-only (no weights); a run needs a tiny-* model, 'minilm' or "
                         f"a checkpoint folder")
    if family not in RUN_FAMILIES:
        raise ModelError(f"end-to-end runs support the families {', '.join(RUN_FAMILIES)}, not {family!r} "
                         f"({model})")
    if kind == "d2s" and calibrate:
        raise ModelError("--calibrate refines projected factors; a d2s folder's factors are used as stored "
                         "(calibrate them with mapper d2s --calibrate)")
    if kind == "d2s" and nblocks is not None:
        from mapper.pipeline import folder_nblocks  # noqa: PLC0415
        own = folder_nblocks(model)
        if own != nblocks:
            raise ModelError(f"d2s folder {model} has nblocks {own}, not {nblocks}")


def main_run(args) -> int:
    """Run the ``run`` sub-command; return the exit status."""
    if args.out:
        check_out(args.out, args.force, models=[args.model], files=[args.hw])     # before any work
    from sw_model.noise import parse_noise  # noqa: PLC0415
    noise = parse_noise(args.noise)
    hw = with_format(args.hw, format_overrides(args))
    from mapper.adc_select import check_max_error  # noqa: PLC0415
    check_max_error(args.adc_rule, args.max_error, AdcRule.ACCURACY)
    check_model(args.model, args.nblocks, args.calibrate)
    from mapper.evaluate.run import RunOptions, run, save_report  # noqa: PLC0415 (torch loads here)
    opts = RunOptions(model=args.model, texts=tuple(args.text), nblocks=args.nblocks, calibrate=args.calibrate,
                      hw=hw, strategy=args.strategy, adc_bits=args.adc_bits, adc_rule=args.adc_rule,
                      noise=noise, gen_tokens=args.gen_tokens, show_progress=progress.enabled(),
                      max_error=args.max_error)
    rep = run(opts).to_json()
    if args.out:
        path = save_report(rep, args.out, force=args.force)
        print(f"wrote {path}", file=sys.stderr)
    print(json.dumps(rep, indent=2, default=str) if args.json else format_report(rep))
    return 0
