"""Run a command-stream file on the golden model: ``python -m sw_model run STREAM [--impl naive] [--out F]``.

``STREAM`` is a binary container (``.bin``) or a JSONL dump (``.jsonl``), as ``python -m mapper build`` writes
them; a file with another name is recognised by its content. Prints the final state, the error (if any, with
the command index), the number of results and a digest; ``--out`` writes the status and the results as JSON
(an existing file only with ``--force``; the path is checked before the stream runs).

Exit status (like a test runner: 1 means the stream ran and failed, 2 means it could not be run):

- 0: the stream ran and the machine halted cleanly;
- 1: the stream ran and the machine stopped with an error (state ERROR); stderr has one line
  ``error: command <index>: <ERROR_CODE>``, and ``--out`` is still written;
- 2: unusable input (bad option, missing, corrupt or unreadable stream file, invalid configuration block,
  unusable ``--out``); stderr has one ``error:`` line naming the problem, nothing is written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

from cimisa import progress, threads
from cimisa.errors import KitArgumentParser, cli_main

EXIT_STATUS = """\
exit status:
  0  the stream ran and the machine halted cleanly
  1  the stream ran and the machine stopped with an error (ERROR state; stderr names the
     error code and the failing command's index; --out is still written)
  2  unusable input: bad option, missing/corrupt/unreadable stream file, invalid
     configuration block, unusable --out (one error: line, nothing written)"""


def make_parser() -> KitArgumentParser:
    ap = KitArgumentParser(prog="python -m sw_model", description="Run a CIM command stream on the golden model.",
                           epilog=EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    progress.add_common_options(ap, threads=False, top_level=True)
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    r = sub.add_parser("run", help="execute a commands.bin or commands.jsonl file",
                       description="Execute a command stream (a .bin container or a .jsonl dump, as mapper build "
                                   "writes them) on the golden model: print the final state, the error with the "
                                   "failing command's index, the number of results and their digest.",
                       epilog=EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("stream", help="binary container (.bin) or JSONL dump (.jsonl)")
    r.add_argument("--impl", choices=("fast", "naive"), default="fast",
                   help="arithmetic: vectorised numpy (fast, default) or explicit loops (naive)")
    r.add_argument("--out", help="also write status and results as JSON to this file (default: print only)")
    r.add_argument("--force", action="store_true", help="replace an existing --out file")
    progress.add_common_options(r)
    r.set_defaults(func=_run)
    return ap


def _run(args) -> int:
    from cimisa.fsutil import atomic_write_text, check_out_file  # noqa: PLC0415
    from cimisa.stream import read_any  # noqa: PLC0415
    from sw_model.machine import run  # noqa: PLC0415

    out = check_out_file(args.out, force=args.force, what="--out file") if args.out is not None else None
    f = read_any(args.stream)
    cfg, words = f.cfg, f.words
    with progress.stage("sw_model run", show=len(words) > 100_000):
        res = run(cfg, words, impl=args.impl, raise_on_error=False)
    digest = hashlib.sha256(res.results.astype("<i8").tobytes()).hexdigest()[:16]
    state, error, index = res.status_tuple()
    print(f"hardware {cfg.name} ({cfg.arch_hash}); {len(words)} words, {res.commands} commands executed")
    print(f"state {state}, error {error}, index {index}; {len(res.results)} results (sha256 {digest})")
    if out is not None:
        atomic_write_text(out, json.dumps({"hw": cfg.name, "state": state, "error": error, "index": index,
                                           "results": res.results.tolist()}) + "\n")
    if not res.ok:
        print(f"error: command {index}: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    threads.early(argv)                     # BLAS thread variables before numpy loads
    return cli_main(make_parser, argv, setup=progress.setup)


if __name__ == "__main__":
    sys.exit(main())
