"""Option types and checks shared by the mapper's sub-commands (``python -m mapper ...``).

Every value is checked while the options are parsed, so nonsense (a negative block count, text that is not
UTF-8) is one ``error:`` line before any model is loaded. Output folders are checked by :func:`out_dir` at the
start of each command, before the expensive work.
"""

from __future__ import annotations

import argparse
import os

from compiler.kinds import AdcMode, Strategy, choices

__all__ = ["NBLOCKS_HELP", "default_out", "add_nblocks_option", "positive_int", "int_in", "nonneg_int", "seed_int",
           "utf8_text", "path_text", "add_out_options", "add_strategy_option", "add_adc_mode_option", "check_out",
           "FORCE_HELP", "MAX_SEED", "MAX_ARRAYS", "add_chip_options", "hw_choice", "MAX_TOKENS",
           "add_format_options", "format_overrides", "with_format", "add_max_error_option", "max_error_value"]

#: Help text of ``--force`` (every command that writes an output folder has it).
FORCE_HELP = "replace an existing output folder the kit did not write"
#: Largest array budget accepted by ``--arrays`` (placement keeps per-array state: a budget of billions would
#: exhaust memory; a million is far beyond any model's need).
MAX_ARRAYS = 1_000_000
#: Help text of ``--nblocks`` (the same default in every command).
NBLOCKS_HELP = ("Monarch blocks per factor (default: a d2s folder's own, else 2**round(log2(sqrt(d_model))): "
                "32 for d_model 1024, 16 for 384, 8 for 64)")
#: Largest accepted seed (numpy and torch both take it).
MAX_SEED = 2**32 - 1
#: Most tokens ``--prefill-tokens`` / ``--decode-tokens`` accept (the simulator's work grows with them).
MAX_TOKENS = 1 << 16


def _int(text: str) -> int:
    try:
        return int(str(text).strip(), 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, not {text!r}") from None


def positive_int(text: str) -> int:
    """An integer of at least 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return value


def int_in(lo: int, hi: int):
    """Return an option type for an integer in ``lo .. hi``."""
    def int_in_range(text: str) -> int:
        value = _int(text)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be an integer in {lo}..{hi}, not {text!r}")
        return value
    return int_in_range


def nonneg_int(text: str) -> int:
    """An integer of at least 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, not {text!r}")
    return value


def seed_int(text: str) -> int:
    """A seed: an integer in ``0 .. 2**32 - 1``."""
    value = _int(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer in 0..{MAX_SEED}, not {text!r}")
    return value


def utf8_text(text: str) -> str:
    """Text that is valid UTF-8 (bytes that are not arrive as lone surrogates) and not blank."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError("is not valid UTF-8 text") from None
    if not text.strip():
        raise argparse.ArgumentTypeError("must be a non-empty string")
    return text


def path_text(text: str) -> str:
    """A path or name: not empty and printable (valid UTF-8)."""
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"is not valid UTF-8 ({os.fsencode(text)!r}); rename it") from None
    return text


def add_nblocks_option(p: argparse.ArgumentParser) -> None:
    """Add ``--nblocks`` (optional, :data:`NBLOCKS_HELP`)."""
    p.add_argument("--nblocks", type=positive_int, default=None, metavar="N", help=NBLOCKS_HELP)


def default_out(command: str, *parts) -> str:
    """Return the default output folder ``<command>-<part>-...`` in the current folder; a part that is a path
    counts by its last component (``build-tiny-bert-auto``, ``d2s-minilm-16``)."""
    names = []
    for part in parts:
        if part is None:
            continue
        name = os.path.basename(os.path.normpath(str(part))) or "model"
        if name in (".", ".."):
            name = os.path.basename(os.path.abspath(str(part))) or "model"
        names.append(name)
    return "-".join([command, *names])


def add_out_options(p: argparse.ArgumentParser, help: str, *, required: bool = False, metavar: str = "DIR",
                    default=None) -> None:
    """Add ``--out`` (an output folder) and ``--force``."""
    p.add_argument("--out", type=path_text, required=required, default=default, metavar=metavar, help=help)
    p.add_argument("--force", action="store_true", help=FORCE_HELP)


def add_strategy_option(p: argparse.ArgumentParser, help: str) -> None:
    """Add ``--strategy``, one of :class:`~compiler.kinds.Strategy` (default ``auto``)."""
    names = choices(Strategy)
    p.add_argument("--strategy", default=Strategy.AUTO.value, choices=names, metavar="|".join(names), help=help)


def add_adc_mode_option(p: argparse.ArgumentParser, help: str) -> None:
    """Add ``--adc-mode``, one of :class:`~compiler.kinds.AdcMode` (default ``paper``)."""
    p.add_argument("--adc-mode", default=AdcMode.PAPER.value, choices=choices(AdcMode), help=help)


def check_out(path, force: bool, *, models=(), files=()):
    """Check the output folder before any work (:func:`cimisa.fsutil.check_out_dir`); return it.

    ``models`` (``--model`` values) and ``files`` (other input paths, such as ``--hw``) must lie outside the
    output folder: replacing it would delete them, even with ``--force``. A d2s folder's source model counts too.
    """
    from cimisa.errors import OutputError  # noqa: PLC0415
    from cimisa.fsutil import check_out_dir  # noqa: PLC0415
    out = check_out_dir(path, force=force)
    real_out = os.path.realpath(out)
    inputs = [("model", m) for m in models] + [("input file", f) for f in files]
    inputs += [("source model of the d2s folder", src) for m in models for src in _d2s_source(m)]
    for what, inp in inputs:
        if not inp or not os.path.exists(inp):
            continue               # a built-in name, or missing: the command reports it
        real = os.path.realpath(inp)
        if real == real_out or real.startswith(real_out.rstrip(os.sep) + os.sep):
            raise OutputError(f"output folder {path} holds the {what} {inp}; writing there would delete it, "
                              "choose another folder")
    return out


def _d2s_source(model: str) -> list[str]:
    import json  # noqa: PLC0415
    try:
        meta = json.loads(open(os.path.join(model, "monarch.json"), "rb").read().decode("utf-8"))
        source = meta["source"]
    except (OSError, ValueError, KeyError, TypeError):
        return []              # not a d2s folder, or a broken one: loading it reports the problem
    return [source] if isinstance(source, str) else []


def add_chip_options(p: argparse.ArgumentParser) -> None:
    """Add the chip options: ``--chip`` (a configuration with a ``[chip]`` table, taken like ``--hw``),
    ``--budget``, ``--reference``, ``--weight-reload``, ``--row-steps``, ``--prefill-tokens``,
    ``--decode-tokens`` (see ``docs/mapping.md``)."""
    from compiler.budget import BUDGETS  # noqa: PLC0415
    names = choices(Strategy)
    p.add_argument("--chip", default=None, type=path_text, metavar="PRESET|FILE",
                   help="the chip: a built-in configuration or TOML/JSON file with a [chip] table (taken as --hw)")
    p.add_argument("--budget", default=BUDGETS[0], choices=BUDGETS,
                   help="chip each strategy runs on: fixed (as given), need (the whole tiles it needs), iso-adc / "
                        "iso-area (its need chip with ADCs set to equal the reference's ADC count / area)")
    p.add_argument("--reference", default=None, choices=names, metavar="|".join(names),
                   help="the strategy an iso-adc / iso-area budget equals (default: linear)")
    p.add_argument("--weight-reload", action="store_true",
                   help="a model larger than the chip runs in epochs of matmuls, weights reprogrammed between them")
    p.add_argument("--row-steps", type=positive_int, default=None, metavar="N",
                   help="DenseMap: row chunks each block is fired in (default: the paper's 4; must divide the "
                        "block rows)")
    p.add_argument("--prefill-tokens", type=int_in(1, MAX_TOKENS), default=None, metavar="N",
                   help="tokens of the simulated prompt (default: the model's sequence length)")
    p.add_argument("--decode-tokens", type=int_in(0, MAX_TOKENS), default=None, metavar="N",
                   help="tokens simulated after the prompt (default: 16 for models with a decoder, 1 for "
                        "encoder-only models)")


def hw_choice(hw: str | None, chip: str | None, default: str = "paper-256") -> str:
    """The hardware configuration of ``--hw`` and ``--chip``: either (the same when both are given), else
    ``default``; :class:`~cimisa.errors.ConfigError` when they differ."""
    from cimisa.errors import ConfigError  # noqa: PLC0415
    if hw is not None and chip is not None and hw != chip:
        raise ConfigError(f"--hw {hw} and --chip {chip} name different configurations; give one of them")
    return chip or hw or default


def add_format_options(p: argparse.ArgumentParser) -> None:
    """Add the number-format options (``--cell-bits``, ``--weight-encoding``, ``--input-encoding``,
    ``--dac-bits``, ``--adc-rounding``): overrides of the configuration's own (:mod:`cimisa.formats`), applied by
    :func:`with_format`; None keeps the configuration's."""
    from cimisa.config import LIMITS  # noqa: PLC0415
    from cimisa.formats import ADC_ROUNDINGS, INPUT_ENCODINGS, WEIGHT_ENCODINGS  # noqa: PLC0415
    g = p.add_argument_group("number formats", "override the configuration's number formats (docs/isa.md, "
                                               "section Number formats; default: the configuration's own)")
    g.add_argument("--cell-bits", type=int_in(*LIMITS["cell_bits"]), default=None, metavar="N",
                   help="bits per weight cell; a weight is sliced over adjacent columns (0: one cell per weight)")
    g.add_argument("--weight-encoding", default=None, choices=WEIGHT_ENCODINGS,
                   help="signed weights as two's complement cells, differential pairs or offset (a bias column)")
    g.add_argument("--input-encoding", default=None, choices=INPUT_ENCODINGS,
                   help="inputs drive the rows as two's complement or sign-magnitude digits")
    g.add_argument("--dac-bits", type=int_in(*LIMITS["dac_bits"]), default=None, metavar="K",
                   help="input bits driven per cycle (a K-bit DAC; 1: bit-serial)")
    g.add_argument("--adc-rounding", default=None, choices=ADC_ROUNDINGS,
                   help="how the ADC rounds a column sum divided by its step")


def format_overrides(args) -> dict:
    """The number-format overrides of parsed options (:func:`add_format_options`), None where not given."""
    from cimisa.config import FORMAT_FIELDS  # noqa: PLC0415
    return {k: getattr(args, k, None) for k in FORMAT_FIELDS}


def with_format(hw, overrides: dict | None = None, **other):
    """Return the configuration ``hw`` (a name, file or :class:`~cimisa.config.HwConfig`) with ``other`` settings
    and the number-format ``overrides`` applied (None values ignored, as :func:`cimisa.config.load_hw`).

    A format with fewer bits per column sum lowers the lossless ADC width: the configuration's ``adc_bits`` is
    capped at it (a configuration with lossless ADCs stays lossless). Any other invalid combination is the
    configuration's one :class:`~cimisa.errors.ConfigError`.
    """
    from cimisa.config import load_hw  # noqa: PLC0415
    from cimisa.formats import NumberFormat, format_violations  # noqa: PLC0415
    cfg = load_hw(hw, **other)
    ov = {k: v for k, v in (overrides or {}).items() if v is not None}
    if not ov:
        return cfg
    merged = {k: ov.get(k, getattr(cfg, k)) for k in ("cell_bits", "weight_encoding", "input_encoding",
                                                      "dac_bits", "adc_rounding")}
    if not format_violations(cfg.weight_bits, cfg.input_bits, **merged):
        lossless = NumberFormat(cfg.weight_bits, cfg.input_bits, **merged).lossless_adc_bits(cfg.rows)
        if cfg.adc_bits > lossless:
            ov["adc_bits"] = lossless
    return load_hw(cfg, **ov)


def add_max_error_option(p: argparse.ArgumentParser, rule: str) -> None:
    """Add ``--max-error E``: the bound of the accuracy ADC rule (required with it, refused otherwise)."""
    p.add_argument("--max-error", type=max_error_value, default=None, metavar="E",
                   help=f"with {rule} accuracy: the stream's largest mean relative L2 error against the float "
                        "product on calibration inputs, e.g. 0.01 (mapper.adc_select)")


def max_error_value(text: str) -> float:
    """A relative error bound: a finite number >= 0."""
    import math  # noqa: PLC0415
    try:
        value = float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, not {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text!r}")
    return value
