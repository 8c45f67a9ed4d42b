"""Command line of the mapper: ``python -m mapper <command> ...``.

Each sub-command lives in its own module exposing ``register(subparsers)``; the module's handler returns an
exit status. Options are parsed by :class:`cimisa.errors.KitArgumentParser` inside
:func:`cimisa.errors.cli_main`, so a bad option and every other user error (:class:`cimisa.errors.KitError`)
print one ``error:`` line and exit with status 2. Option values are checked while parsing
(:mod:`mapper.cli_args`), output folders before any expensive work.
"""

from __future__ import annotations

import argparse
import importlib

from cimisa import threads
from cimisa.errors import KitArgumentParser, cli_main
from cimisa.progress import add_common_options, setup

# Sub-command modules, each with ``register(subparsers)`` that adds a parser whose default ``func`` runs it.
SUBCOMMAND_MODULES = (
    "mapper.cli_build",
    "mapper.cli_d2s",
    "mapper.cli_reproduce",
    "mapper.cli_run",
    "mapper.cli_sweep",
)


def make_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every available sub-command."""
    parser = KitArgumentParser(
        prog="python -m mapper",
        description="Map Monarch (block-diagonal) transformers onto analog CIM crossbar arrays. Options common "
                    "to every command: docs/conventions.md, section Options.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_common_options(parser, threads=False, top_level=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    threads.early(argv)                     # BLAS thread variables before numpy or torch load
    return cli_main(make_parser, argv, setup=setup)
