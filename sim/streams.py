"""Command streams for co-simulation: seeded random legal streams and illegal streams, one per error.

Every stream is built from :class:`~cimisa.isa.Command` objects and encoded with :class:`~cimisa.isa.Isa`; the one
word that no :class:`Command` can express (a header with an undefined opcode) is made by replacing the opcode field
of a legal header, at the offset and width read from ``Isa.header_layout``.

Generators are deterministic: the same configuration and seed give the same stream.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from cimisa.config import HwConfig
from cimisa.isa import Command, ErrorCode, Isa, Opcode

__all__ = ["StreamCase", "random_commands", "random_stream", "illegal_streams", "reachable_errors",
           "with_opcode", "opcodes_of", "coverage_bins", "covered"]


@dataclass(frozen=True)
class StreamCase:
    """A named word stream, with the error it is built to provoke (``ErrorCode.NONE`` for legal streams)."""

    name: str
    words: tuple[int, ...]
    intent: ErrorCode = ErrorCode.NONE
    commands: tuple[Command, ...] = field(default=(), repr=False)

    def __repr__(self) -> str:
        return f"StreamCase({self.name!r}, words={len(self.words)}, intent={self.intent.name})"


class _Gen:
    """Draws legal commands for one configuration from a seeded :class:`random.Random`.

    Addresses are biased towards a small "hot" region and a few "hot" arrays, so MVMs read loaded inputs and
    programmed weights, and READs see what MVMs wrote.
    """

    def __init__(self, cfg: HwConfig, rng: random.Random):
        self.cfg, self.rng = cfg, rng
        self.isa = Isa.of(cfg)
        self.wlo, self.whi = self.isa.elem_range("weight")
        self.ilo, self.ihi = self.isa.elem_range("input")
        self.hot_arrays = rng.sample(range(cfg.n_arrays), min(3, cfg.n_arrays))
        self.hot_in = min(cfg.in_depth, 64)
        self.hot_out = min(cfg.out_depth, 64)

    def _addr(self, depth: int, hot: int, count: int) -> int:
        """An address ``a`` with ``a + count <= depth``, usually inside the hot region."""
        hi = depth - count
        if hi <= 0:
            return 0
        if self.rng.random() < 0.8 and hot - count > 0:
            return self.rng.randrange(0, min(hi, hot - count) + 1)
        return self.rng.randrange(0, hi + 1)

    def _count(self, limit: int, small: int = 16) -> int:
        """A count in ``1..limit``, usually at most ``small``."""
        if self.rng.random() < 0.85:
            return self.rng.randint(1, max(1, min(limit, small)))
        return self.rng.randint(1, limit)

    def _strided(self, depth: int, hot: int, n: int, allow_zero: bool) -> tuple[int, int]:
        """Return ``(base, stride)`` with ``base + (n-1)*stride < depth`` (stride 0 only if allowed or n == 1)."""
        lo = 0 if (allow_zero or n == 1) else 1
        max_stride = (depth - 1) // (n - 1) if n > 1 else depth - 1
        stride = self.rng.randint(lo, max(lo, min(max_stride, 3 if self.rng.random() < 0.9 else max_stride)))
        span = (n - 1) * stride
        return self._addr(depth - span, hot, 1), stride

    def array(self) -> int:
        if self.rng.random() < 0.85:
            return self.rng.choice(self.hot_arrays)
        return self.rng.randrange(self.cfg.n_arrays)

    def command(self, op: Opcode) -> Command:
        cfg, rng = self.cfg, self.rng
        if op is Opcode.WRITE_W:
            col = rng.randrange(cfg.cols)
            n = self._count(cfg.cols - col, cfg.cols)
            return Command.write_w(self.array(), rng.randrange(cfg.rows), col,
                                   [rng.randint(self.wlo, self.whi) for _ in range(n)])
        if op is Opcode.LOAD_IN:
            n = self._count(cfg.in_depth, 48)
            return Command.load_in(self._addr(cfg.in_depth, self.hot_in, n),
                                   [rng.randint(self.ilo, self.ihi) for _ in range(n)])
        if op is Opcode.MVM:
            row0 = rng.randrange(cfg.rows) if rng.random() < 0.5 else 0
            nrows = rng.randint(1, cfg.rows - row0)
            col0 = rng.randrange(cfg.cols) if rng.random() < 0.5 else 0
            ncols = rng.randint(1, cfg.cols - col0)
            in_addr, in_stride = self._strided(cfg.in_depth, self.hot_in, nrows, allow_zero=True)
            out_addr, out_stride = self._strided(cfg.out_depth, self.hot_out, ncols, allow_zero=False)
            shift_max = (1 << self.isa.field_widths[Opcode.MVM]["adc_shift"]) - 1
            return Command.mvm(array=self.array(), row0=row0, nrows=nrows, col0=col0, ncols=ncols,
                               in_addr=in_addr, in_stride=in_stride, out_addr=out_addr, out_stride=out_stride,
                               accumulate=rng.random() < 0.4, adc_bits=rng.randint(1, cfg.adc_bits),
                               adc_shift=0 if rng.random() < 0.6 else rng.randint(0, shift_max))
        if op is Opcode.REQUANT:
            n = self._count(cfg.out_depth)
            src = self._addr(cfg.out_depth, self.hot_out, n)
            dst, stride = self._strided(cfg.in_depth, self.hot_in, n, allow_zero=False)
            shift_max = (1 << self.isa.field_widths[Opcode.REQUANT]["shift"]) - 1
            return Command.requant(src=src, count=n, dst=dst, dst_stride=stride,
                                   shift=rng.choice([0, rng.randint(0, 12), rng.randint(0, shift_max)]))
        if op is Opcode.READ:
            n = self._count(cfg.out_depth)
            return Command.read(self._addr(cfg.out_depth, self.hot_out, n), n)
        if op is Opcode.BARRIER:
            return Command.barrier()
        return Command.halt()


#: Relative frequency of each opcode in random streams (HALT only ends a stream).
_WEIGHTS = {Opcode.WRITE_W: 4, Opcode.LOAD_IN: 3, Opcode.MVM: 4, Opcode.REQUANT: 2, Opcode.READ: 3,
            Opcode.BARRIER: 1}


def random_commands(cfg: HwConfig, seed: int, n: int = 40, *, halt: bool = True) -> list[Command]:
    """Return ``n`` random legal commands (plus a final HALT if ``halt``) covering every non-HALT opcode.

    The first commands program a few weights and load inputs, so later MVMs compute on non-zero data.
    """
    rng = random.Random(f"sim.streams.random/{cfg.arch_hash}/{seed}")
    g = _Gen(cfg, rng)
    ops = list(_WEIGHTS)
    body = [Opcode.WRITE_W, Opcode.LOAD_IN]
    body += rng.choices(ops, weights=[_WEIGHTS[o] for o in ops], k=max(0, n - len(body)))
    missing = [o for o in ops if o not in body]
    for o in missing:                                 # every opcode at least once
        body.insert(rng.randint(2, len(body)), o)
    cmds = [g.command(o) for o in body]
    if halt:
        cmds.append(Command.halt())
    return cmds


def random_stream(cfg: HwConfig, seed: int, n: int = 40) -> StreamCase:
    """Return a random legal stream of ``n`` commands and a HALT, as a :class:`StreamCase`."""
    cmds = random_commands(cfg, seed, n)
    return StreamCase(f"random-{seed}", tuple(Isa.of(cfg).encode(cmds)), ErrorCode.NONE, tuple(cmds))


def opcodes_of(cmds) -> set[Opcode]:
    """Return the set of opcodes in a command list."""
    return {c.op for c in cmds}


def with_opcode(isa: Isa, word: int, raw_opcode: int) -> int:
    """Return header ``word`` with its opcode field replaced by ``raw_opcode`` (which may be undefined).

    The field's offset and width come from ``isa.header_layout``.
    """
    f = isa.header_layout["opcode"]
    mask = ((1 << f.width) - 1) << f.offset
    if not 0 <= raw_opcode < (1 << f.width):
        raise ValueError(f"raw_opcode must fit {f.width} bits, not {raw_opcode!r}")
    return (word & ~mask) | (raw_opcode << f.offset)


def _fits(isa: Isa, cmd: Command) -> bool:
    widths = isa.field_widths[cmd.op]
    return all(0 <= v < (1 << widths[k]) for k, v in cmd.args.items())


def _illegal_commands(cfg: HwConfig) -> list[tuple[str, ErrorCode, Command]]:
    """Offending commands, one or more per error code; some may not be encodable on ``cfg`` (filtered later)."""
    R, C, I, O = cfg.rows, cfg.cols, cfg.in_depth, cfg.out_depth
    mvm = dict(array=0, row0=0, nrows=1, col0=0, ncols=1, in_addr=0, in_stride=1, out_addr=0, out_stride=1,
               accumulate=False, adc_bits=cfg.adc_bits, adc_shift=0)

    def m(**kw):
        return Command.mvm(**{**mvm, **kw})

    out = [
        ("write_w-array", ErrorCode.BAD_ARRAY, Command.write_w(cfg.n_arrays, 0, 0, [1])),
        ("mvm-array", ErrorCode.BAD_ARRAY, m(array=cfg.n_arrays)),
        ("write_w-row", ErrorCode.BAD_ROW, Command.write_w(0, R, 0, [1])),
        ("mvm-nrows0", ErrorCode.BAD_ROW, m(nrows=0)),
        ("mvm-row-window", ErrorCode.BAD_ROW, m(row0=R - 1, nrows=2)),
        ("write_w-col-window", ErrorCode.BAD_COL, Command.write_w(0, 0, C - 1, [1, 2])),
        ("mvm-ncols0", ErrorCode.BAD_COL, m(ncols=0)),
        ("mvm-col-window", ErrorCode.BAD_COL, m(col0=1, ncols=C)),
        ("mvm-adc0", ErrorCode.BAD_ADC, m(adc_bits=0)),
        ("mvm-adc-wide", ErrorCode.BAD_ADC, m(adc_bits=cfg.adc_bits + 1)),
        ("load_in-window", ErrorCode.BAD_IN_ADDR, Command.load_in(I - 1, [1, 2])),
        ("mvm-in-stride", ErrorCode.BAD_IN_ADDR, m(nrows=2, in_addr=I - 1, in_stride=1)),
        ("requant-dst-stride0", ErrorCode.BAD_IN_ADDR, Command.requant(src=0, count=2, dst=0, dst_stride=0)),
        ("read-window", ErrorCode.BAD_OUT_ADDR, Command.read(O - 1, 2)),
        ("read-count0", ErrorCode.BAD_OUT_ADDR, Command(Opcode.READ, dict(addr=0, count=0))),
        ("mvm-out-stride0", ErrorCode.BAD_OUT_ADDR, m(ncols=2, out_stride=0)),
        ("requant-src", ErrorCode.BAD_OUT_ADDR, Command.requant(src=O - 1, count=2, dst=0, dst_stride=1)),
    ]
    return out


def reachable_errors(cfg: HwConfig) -> set[ErrorCode]:
    """Return the error codes some encodable stream provokes on ``cfg``.

    An out-of-range field needs a field wider than its range: with ``n_arrays`` a power of two, no array index
    is out of range, so ``BAD_ARRAY`` cannot occur.
    """
    isa = Isa.of(cfg)
    codes = {code for _, code, cmd in _illegal_commands(cfg) if _fits(isa, cmd)}
    return codes | {ErrorCode.ILLEGAL_OPCODE, ErrorCode.TRUNCATED}


def illegal_streams(cfg: HwConfig, seed: int = 0, prefix: int = 6) -> list[StreamCase]:
    """Return streams that each stop with one error, after ``prefix`` random legal commands.

    After the offending command come more legal commands and a HALT, which the machine must discard. Covers
    every code in :func:`reachable_errors`: each out-of-range check (several variants), undefined opcodes, a
    payload cut short by the end of the stream, and a stream without HALT.
    """
    isa = Isa.of(cfg)
    out: list[StreamCase] = []

    def case(name, intent, pre_cmds, words):
        out.append(StreamCase(name, tuple(words), intent, tuple(pre_cmds)))

    for k, (name, code, bad) in enumerate(_illegal_commands(cfg)):
        if not _fits(isa, bad):
            continue
        pre = random_commands(cfg, seed * 1000 + k, prefix, halt=False)
        post = random_commands(cfg, seed * 1000 + 500 + k, 3, halt=True)
        case(f"{code.name.lower()}:{name}", code, pre + [bad] + post, isa.encode(pre + [bad] + post))

    op_width = isa.header_layout["opcode"].width
    undefined = [v for v in range(1 << op_width) if v not in {o.value for o in Opcode}]
    for k, raw in enumerate([undefined[0], undefined[-1], undefined[len(undefined) // 2]]):
        pre = random_commands(cfg, seed * 1000 + 100 + k, prefix, halt=False)
        post = random_commands(cfg, seed * 1000 + 600 + k, 2, halt=True)
        bad = with_opcode(isa, isa.encode_header(Command.barrier()), raw)
        case(f"illegal_opcode:{raw}", ErrorCode.ILLEGAL_OPCODE, pre + post,
             isa.encode(pre) + [bad] + isa.encode(post))

    # Payloads cut short: a LOAD_IN / WRITE_W followed by only the first of its payload words.
    lo, _ = isa.elem_range("input")
    for k, (op, cmd) in enumerate([
            (Opcode.LOAD_IN, Command.load_in(
                0, [lo + (3 * i) % 7 for i in range(min(cfg.in_depth, 2 * isa.per_word(Opcode.LOAD_IN) + 1))])),
            (Opcode.WRITE_W, Command.write_w(
                0, 1, 0, [(-1) ** i for i in range(min(cfg.cols, 2 * isa.per_word(Opcode.WRITE_W) + 1))]))]):
        need = isa.payload_words(op, cmd.count)
        if need < 2:
            continue                                  # a one-word payload cannot be cut short mid-payload
        pre = random_commands(cfg, seed * 1000 + 200 + k, prefix, halt=False)
        words = isa.encode(pre + [cmd])
        case(f"truncated:{op.name.lower()}-payload", ErrorCode.TRUNCATED, pre + [cmd], words[:len(words) - need + 1])
    # A stream that simply ends before HALT.
    pre = random_commands(cfg, seed * 1000 + 202, prefix, halt=False)
    case("truncated:no-halt", ErrorCode.TRUNCATED, pre, isa.encode(pre))
    return out


def coverage_bins(cfg: HwConfig) -> set[str]:
    """Return every functional-coverage bin :func:`covered` can report for ``cfg``: each opcode, and the corner
    cases of its fields (full and single-row/column windows, strides 0/1/>1, accumulate, ADC resolution and
    shift, multi-word payloads where a row or the input buffer is longer than one word, REQUANT rounding).
    """
    isa = Isa.of(cfg)
    return ({f"op:{o.name}" for o in Opcode}
            | {"mvm:accumulate=0", "mvm:accumulate=1", "mvm:adc_bits=1", "mvm:adc_bits=max", "mvm:adc_bits=mid",
               "mvm:adc_shift=0", "mvm:adc_shift>0", "mvm:in_stride=0", "mvm:in_stride=1", "mvm:in_stride>1",
               "mvm:out_stride=1", "mvm:out_stride>1", "mvm:nrows=1", "mvm:nrows=all", "mvm:ncols=1",
               "mvm:ncols=all", "requant:shift=0", "requant:shift>0", "requant:count>1", "read:count=1",
               "read:count>1", "write_w:count=1", "load_in:count=1"}
            | ({"write_w:multiword"} if cfg.cols > isa.per_word(Opcode.WRITE_W) else set())     # reachable only
            | ({"load_in:multiword"} if cfg.in_depth > isa.per_word(Opcode.LOAD_IN) else set()))  # when it fits


def covered(cfg: HwConfig, cmds) -> set[str]:
    """Return the coverage bins (see :func:`coverage_bins`) that ``cmds`` hit."""
    isa = Isa.of(cfg)
    hit: set[str] = set()
    for c in cmds:
        hit.add(f"op:{c.op.name}")
        a = c.args
        if c.op is Opcode.MVM:
            hit.add(f"mvm:accumulate={a['accumulate']}")
            hit.add("mvm:adc_bits=1" if a["adc_bits"] == 1 else
                    "mvm:adc_bits=max" if a["adc_bits"] == cfg.adc_bits else "mvm:adc_bits=mid")
            hit.add("mvm:adc_shift=0" if a["adc_shift"] == 0 else "mvm:adc_shift>0")
            if a["nrows"] > 1:
                hit.add(f"mvm:in_stride={a['in_stride']}" if a["in_stride"] <= 1 else "mvm:in_stride>1")
            if a["ncols"] > 1:
                hit.add("mvm:out_stride=1" if a["out_stride"] == 1 else "mvm:out_stride>1")
            if a["nrows"] in (1, cfg.rows):
                hit.add("mvm:nrows=1" if a["nrows"] == 1 else "mvm:nrows=all")
            if a["ncols"] in (1, cfg.cols):
                hit.add("mvm:ncols=1" if a["ncols"] == 1 else "mvm:ncols=all")
        elif c.op is Opcode.REQUANT:
            hit.add("requant:shift=0" if a["shift"] == 0 else "requant:shift>0")
            if a["count"] > 1:
                hit.add("requant:count>1")
        elif c.op is Opcode.READ:
            hit.add("read:count=1" if a["count"] == 1 else "read:count>1")
        elif c.op in (Opcode.WRITE_W, Opcode.LOAD_IN):
            name = c.op.name.lower()
            if a["count"] == 1:
                hit.add(f"{name}:count=1")
            if isa.payload_words(c.op, a["count"]) > 1:
                hit.add(f"{name}:multiword")
    return hit
