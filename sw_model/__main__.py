"""Run a command-stream file on the golden model: ``python -m sw_model run commands.bin [--impl naive]``.

Prints the final state, the error (if any, with the command index), the number of results and a digest; writes
the results as JSON with ``--out``. Exit status: 0 when the stream halts cleanly, 1 when the machine stops with
an error, 2 for unusable input (missing or corrupt file).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

from cimisa.errors import KitError
from cimisa.fsutil import atomic_write_text
from cimisa.stream import read_jsonl, read_stream


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sw_model", description="Run a CIM command stream on the golden model.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute a commands.bin or commands.jsonl file")
    r.add_argument("stream", help="binary container (.bin) or JSONL dump (.jsonl)")
    r.add_argument("--impl", choices=("fast", "naive"), default="fast")
    r.add_argument("--out", help="write status and results as JSON here")
    args = ap.parse_args(argv)
    from sw_model.machine import run
    from cimisa.isa import Isa
    try:
        if args.stream.endswith(".jsonl"):
            cfg, cmds = read_jsonl(args.stream)
            words = Isa.of(cfg).encode(cmds)
        else:
            f = read_stream(args.stream)
            cfg, words = f.cfg, f.words
        res = run(cfg, words, impl=args.impl, raise_on_error=False)
    except KitError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 2
    digest = hashlib.sha256(res.results.astype("<i8").tobytes()).hexdigest()[:16]
    state, error, index = res.status_tuple()
    print(f"hardware {cfg.name} ({cfg.arch_hash}); {len(words)} words, {res.commands} commands executed")
    print(f"state {state}, error {error}, index {index}; {len(res.results)} results (sha256 {digest})")
    if args.out:
        atomic_write_text(args.out, json.dumps({"hw": cfg.name, "state": state, "error": error, "index": index,
                                                "results": res.results.tolist()}) + "\n")
    if not res.ok:
        print(f"error: command {index}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
