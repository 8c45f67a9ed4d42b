"""Command-set utilities: ``python -m cimisa check-config FILE``.

``check-config`` validates a hardware configuration (a TOML/JSON file, or a built-in name) exactly as every
other command loads it, and prints a summary: the derived command-set widths, the capacity, the number format
(cells per weight, logical and physical columns, drive cycles, ADC rounding; :mod:`cimisa.formats`), the chip (tiles,
arrays per tile, each tile's ADC bank, total ADCs, units, memory, network; ``docs/chip.md``), the technology
and the cost constants. A valid configuration exits 0; an invalid one gives one ``error:`` line listing every
violation and exits 2. Nothing is written.
"""

from __future__ import annotations

import sys

from cimisa import progress
from cimisa.errors import KitArgumentParser, cli_main


def make_parser() -> KitArgumentParser:
    ap = KitArgumentParser(prog="python -m cimisa", description="CIM command-set utilities.")
    progress.add_common_options(ap, threads=False, top_level=True)
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    c = sub.add_parser("check-config", help="validate a hardware configuration file and print its summary",
                       description="Validate a hardware configuration (TOML/JSON file or built-in name) and print "
                                   "its summary. Exit status 0 when valid, 2 (one error: line) when not.")
    c.add_argument("config", metavar="FILE", help="a .toml/.json configuration file or a built-in name")
    c.add_argument("--json", action="store_true", help="print the full configuration as canonical JSON instead")
    progress.add_common_options(c, threads=False)
    c.set_defaults(func=_check_config)
    return ap


def _check_config(args) -> int:
    from cimisa.config import load_hw  # noqa: PLC0415
    from cimisa.isa import Isa  # noqa: PLC0415
    cfg = load_hw(args.config)
    if args.json:
        print(cfg.to_json())
        return 0
    isa = Isa.of(cfg)
    print(f"{cfg.name}: valid ({cfg.tag}, arch hash {cfg.arch_hash})")
    print(f"  {cfg.n_arrays} arrays of {cfg.rows} x {cfg.cols} = {cfg.total_cells} weight cells; "
          f"{cfg.weight_bits}-bit weights, {cfg.input_bits}-bit inputs")
    fmt = cfg.fmt
    print(f"  number format: {fmt.describe()}")
    print(f"  columns: {cfg.logical_cols} logical (weights per row) in {cfg.cols} physical; "
          f"{fmt.cols_per_weight} cell{'s' * (fmt.cols_per_weight != 1)} per weight"
          f"{', 1 bias column' if fmt.bias_cols else ''}; {fmt.conversions(cfg.logical_cols)} ADC conversions "
          f"per drive cycle of a full-width MVM")
    print(f"  ADCs: {cfg.adcs_per_array} per array, {cfg.adc_bits} bits (lossless: {cfg.lossless_adc_bits}); "
          f"{cfg.rows_per_cycle} rows per cycle")
    print(f"  buffers: {cfg.in_depth} inputs, {cfg.out_depth} accumulators")
    print(f"  stream words of {isa.word_bits} bits; {isa.per_word_weights} weights or {isa.per_word_inputs} "
          f"inputs per payload word")
    for line in chip_summary(cfg):
        print("  " + line)
    print("  tech: " + ", ".join(f"{k}={v:g}" if not isinstance(v, str) else f"{k}={v}"
                                 for k, v in cfg.tech.__dict__.items()))
    print("  cost: " + ", ".join(f"{k}={v:g}" for k, v in cfg.cost.__dict__.items()))
    return 0


def chip_summary(cfg) -> list[str]:
    """Lines describing the chip organisation of configuration ``cfg`` (tiles, ADC banks, units, network)."""
    c = cfg.chip
    net = c.topology
    if c.topology == "mesh":
        rows, cols = c.grid(cfg.n_arrays)
        net = f"mesh of {rows} x {cols}"
    if c.topology != "ideal":
        net += f", links {c.link_bytes_per_ns:g} B/ns, {c.hop_latency_ns:g} ns per hop"
    else:
        net += f" (a constant {cfg.cost.t_comm_ns:g} ns per dependent stage)"
    return [
        f"chip: {cfg.n_tiles} tile{'s' * (cfg.n_tiles != 1)} of {c.arrays_per_tile} "
        f"array{'s' * (c.arrays_per_tile != 1)} (tiers); network: {net}",
        f"  ADC bank per tile: {cfg.adcs_per_tile} ({c.mvms_per_tile} MVM{'s' * (c.mvms_per_tile != 1)} at a time "
        f"x {cfg.adcs_per_array} ADCs per array); {cfg.total_adcs} ADCs in all",
        f"  units: {c.digital_units} digital x {cfg.cost.digital_lanes} lanes, {c.attention_units} attention x "
        f"{c.attention_lanes} lanes; SRAM {c.sram_kib} KiB at {c.sram_bytes_per_ns:g} B/ns, DRAM "
        f"{c.dram_bytes_per_ns:g} GB/s",
    ]


def main(argv=None) -> int:
    return cli_main(make_parser, argv, setup=progress.setup)


if __name__ == "__main__":
    sys.exit(main())
