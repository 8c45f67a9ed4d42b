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
import logging

from cimisa.errors import KitArgumentParser, cli_main

# Sub-command modules, each with ``register(subparsers)`` that adds a parser whose default ``func`` runs it.
SUBCOMMAND_MODULES = (
    "mapper.cli_build",
    "mapper.cli_d2s",
    "mapper.cli_reproduce",
    "mapper.cli_run",
)


def make_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every available sub-command."""
    parser = KitArgumentParser(
        prog="python -m mapper",
        description="Map Monarch (block-diagonal) transformers onto analog CIM crossbar arrays.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a sub-command not built yet
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    return cli_main(make_parser, argv, setup=_setup)


def _setup(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
