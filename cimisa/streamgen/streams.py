"""Named word streams: seeded random legal streams, and illegal streams that each stop with one error.

Every stream is built from :class:`~cimisa.isa.Command` objects and encoded with :class:`~cimisa.isa.Isa`; the one
word that no :class:`Command` can express (a header with an undefined opcode) is made by replacing the opcode field
of a legal header (:func:`with_opcode`), at the offset and width read from ``Isa.header_layout``.

The legal commands come from :func:`cimisa.streamgen.random_commands`. Deterministic: the same configuration and
seed give the same stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cimisa.concurrency import Scoreboard, is_concurrent
from cimisa.config import HwConfig
from cimisa.isa import Command, ErrorCode, Isa, Opcode
from cimisa.streamgen.boundary import fits
from cimisa.streamgen.generate import random_commands

__all__ = ["StreamCase", "random_stream", "illegal_commands", "illegal_streams", "reachable_errors", "with_opcode",
           "opcodes_of", "hazard_cases"]


@dataclass(frozen=True)
class StreamCase:
    """A named word stream, with the error it is built to provoke (``ErrorCode.NONE`` for legal streams)."""

    name: str
    words: tuple[int, ...]
    intent: ErrorCode = ErrorCode.NONE
    commands: tuple[Command, ...] = field(default=(), repr=False)

    def __repr__(self) -> str:
        return f"StreamCase({self.name!r}, words={len(self.words)}, intent={self.intent.name})"


def random_stream(cfg: HwConfig, seed: int, n: int = 40) -> StreamCase:
    """Return :func:`random_commands` (prologue, at least ``n`` commands, HALT) as a :class:`StreamCase`."""
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


def illegal_commands(cfg: HwConfig) -> list[tuple[str, ErrorCode, Command]]:
    """Offending commands, one or more per error code; some may not be encodable on ``cfg`` (filtered later)."""
    R, C, I, O = cfg.rows, cfg.logical_cols, cfg.in_depth, cfg.out_depth
    mvm = dict(array=0, row0=0, nrows=1, col0=0, ncols=1, in_addr=0, in_stride=1, out_addr=0, out_stride=1,
               accumulate=False, adc_bits=cfg.adc_bits, adc_shift=0)

    def m(**kw):
        return Command.mvm(**{**mvm, **kw})

    # Each bound one past its largest legal value (the largest legal values are in the legal streams).
    out = [
        ("write_w-array", ErrorCode.BAD_ARRAY, Command.write_w(cfg.n_arrays, 0, 0, [1])),
        ("mvm-array", ErrorCode.BAD_ARRAY, m(array=cfg.n_arrays)),
        ("write_w-row", ErrorCode.BAD_ROW, Command.write_w(0, R, 0, [1])),
        ("mvm-nrows0", ErrorCode.BAD_ROW, m(nrows=0)),
        ("mvm-row-window", ErrorCode.BAD_ROW, m(row0=R - 1, nrows=2)),
        ("write_w-col-window", ErrorCode.BAD_COL, Command.write_w(0, 0, C - 1, [1, 2])),
        ("write_w-count0", ErrorCode.BAD_COL, Command(Opcode.WRITE_W, dict(array=0, row=0, col=0, count=0))),
        ("mvm-ncols0", ErrorCode.BAD_COL, m(ncols=0)),
        ("mvm-col-window", ErrorCode.BAD_COL, m(col0=1, ncols=C)),
        ("mvm-adc0", ErrorCode.BAD_ADC, m(adc_bits=0)),
        ("mvm-adc-wide", ErrorCode.BAD_ADC, m(adc_bits=cfg.adc_bits + 1)),
        ("load_in-window", ErrorCode.BAD_IN_ADDR, Command.load_in(I - 1, [1, 2])),
        ("load_in-count0", ErrorCode.BAD_IN_ADDR, Command(Opcode.LOAD_IN, dict(addr=0, count=0))),
        ("mvm-in-stride", ErrorCode.BAD_IN_ADDR, m(nrows=2, in_addr=I - 1, in_stride=1)),
        *([("mvm-in-last", ErrorCode.BAD_IN_ADDR, m(nrows=3, in_addr=(I - 1) % 2 + 1, in_stride=(I - 1) // 2))]
          if R >= 3 else []),
        ("requant-dst-stride0", ErrorCode.BAD_IN_ADDR, Command.requant(src=0, count=2, dst=0, dst_stride=0)),
        ("requant-dst-window", ErrorCode.BAD_IN_ADDR, Command.requant(src=0, count=2, dst=I - 1, dst_stride=1)),
        ("read-window", ErrorCode.BAD_OUT_ADDR, Command.read(O - 1, 2)),
        ("read-count0", ErrorCode.BAD_OUT_ADDR, Command(Opcode.READ, dict(addr=0, count=0))),
        ("mvm-out-stride0", ErrorCode.BAD_OUT_ADDR, m(ncols=2, out_stride=0)),
        ("mvm-out-window", ErrorCode.BAD_OUT_ADDR, m(ncols=2, out_addr=O - 1)),
        ("requant-src", ErrorCode.BAD_OUT_ADDR, Command.requant(src=O - 1, count=2, dst=0, dst_stride=1)),
        ("requant-count0", ErrorCode.BAD_OUT_ADDR, Command(Opcode.REQUANT, dict(src=0, count=0, dst=0,
                                                                                dst_stride=0, shift=0))),
        ("barrier-local-array", ErrorCode.BAD_ARRAY, Command.barrier(cfg.n_arrays)),
        ("barrier-all-array", ErrorCode.BAD_ARRAY, Command(Opcode.BARRIER, dict(array=cfg.n_arrays, local=0))),
    ]
    return out


def hazard_cases(cfg: HwConfig) -> list[tuple[str, list[Command]]]:
    """Command lists whose last MVM stops a concurrent chip with HAZARD (none unless ``is_concurrent(cfg)``).

    Each starts from synchronised tiles; every command but the last is legal. Cases: the same outputs on two tiles;
    one shared address at the end of a hull (the span's last element, strided); a hull of two MVMs whose gap holds
    the other tile's outputs (no shared address: the hull is conservative); after a WRITE_W (which does not
    synchronise); after a local BARRIER of the *other* tile (which clears only that tile); an output of a tile
    whose lattice was narrowed by two MVMs of different phases; an accumulating MVM on the spans of two other tiles
    (three or more tiles: the lowest is reported).
    """
    if not is_concurrent(cfg):
        return []
    apt, O = cfg.chip.arrays_per_tile, cfg.out_depth
    t1 = apt                                               # the first array of tile 1
    last = cfg.n_arrays - 1                                # on the last tile
    n = max(1, min(4, cfg.logical_cols, O // 4))

    def m(array, out_addr, ncols=n, out_stride=1, accumulate=False):
        return Command.mvm(array=array, row0=0, nrows=min(2, cfg.rows), col0=0, ncols=ncols, in_addr=0,
                           out_addr=out_addr, out_stride=out_stride, accumulate=accumulate, adc_bits=cfg.adc_bits)

    stride = max(1, min(3, (O - 1) // max(1, n - 1))) if n > 1 else 1
    end = (n - 1) * stride                                 # the last output of a strided span from 0
    out = [
        ("same-outputs", [m(0, 0), m(t1, 0)]),
        ("last-element", [m(0, 0, out_stride=stride), m(last, end, ncols=1)]),
        ("hull-gap", [m(0, 0, ncols=1), m(0, 2 * n + 1, ncols=1), m(t1, n, ncols=1)]),
        ("after-write_w", [m(t1, O - n), Command.write_w(t1, 0, 0, [1]), m(0, O - 1, ncols=1)]),
        ("after-other-barrier", [m(0, 0), Command.barrier(t1), m(t1 + apt - 1, n - 1, ncols=1)]),
    ]
    if apt >= 2 and cfg.logical_cols >= 2 and O >= 8:
        # tile 0's lattice narrows (phases 0 and 2 of stride 4: the even addresses); output 6 is the second MVM's
        out.append(("narrowed-lattice", [m(0, 0, ncols=2, out_stride=4), m(1, 2, ncols=2, out_stride=4),
                                         m(t1, 6, ncols=1, out_stride=4)]))
    if cfg.n_tiles >= 3:
        out.append(("two-hulls", [m(t1, n), m(2 * apt, 0), m(0, 0, ncols=min(2 * n, cfg.logical_cols),
                                                           accumulate=True)]))
    return out


def reachable_errors(cfg: HwConfig) -> set[ErrorCode]:
    """Return the error codes some encodable stream provokes on ``cfg``.

    An out-of-range field needs a field wider than its range: with ``n_arrays`` a power of two, no array index
    is out of range, so ``BAD_ARRAY`` cannot occur. ``HAZARD`` occurs only on a concurrent chip.
    """
    codes = {code for _, code, cmd in illegal_commands(cfg) if fits(cfg, cmd)}
    codes |= {ErrorCode.HAZARD} if hazard_cases(cfg) else set()
    return codes | {ErrorCode.ILLEGAL_OPCODE, ErrorCode.TRUNCATED}


def illegal_streams(cfg: HwConfig, seed: int = 0, prefix: int = 6) -> list[StreamCase]:
    """Return streams that each stop with one error, after ``prefix`` random legal commands.

    After the offending command come more legal commands and a HALT, which the machine must discard. Covers
    every code in :func:`reachable_errors`: each out-of-range check (several variants; a BARRIER naming an array
    past the last), undefined opcodes, a payload cut short by the end of the stream, a stream without HALT and,
    on a concurrent chip, each race of :func:`hazard_cases`.
    """
    isa = Isa.of(cfg)
    out: list[StreamCase] = []

    def case(name, intent, pre_cmds, words):
        out.append(StreamCase(name, tuple(words), intent, tuple(pre_cmds)))

    for k, (name, code, bad) in enumerate(illegal_commands(cfg)):
        if not fits(cfg, bad):
            continue
        pre = random_commands(cfg, seed * 1000 + k, prefix, halt=False, prologue=False)
        post = random_commands(cfg, seed * 1000 + 500 + k, 3, prologue=False)
        case(f"{code.name.lower()}:{name}", code, pre + [bad] + post, isa.encode(pre + [bad] + post))

    op_width = isa.header_layout["opcode"].width
    undefined = [v for v in range(1 << op_width) if v not in {o.value for o in Opcode}]
    for k, raw in enumerate([undefined[0], undefined[-1], undefined[len(undefined) // 2]]):
        pre = random_commands(cfg, seed * 1000 + 100 + k, prefix, halt=False, prologue=False)
        post = random_commands(cfg, seed * 1000 + 600 + k, 2, prologue=False)
        bad = with_opcode(isa, isa.encode_header(Command.barrier()), raw)
        case(f"illegal_opcode:{raw}", ErrorCode.ILLEGAL_OPCODE, pre + post,
             isa.encode(pre) + [bad] + isa.encode(post))

    # Payloads cut short: a LOAD_IN / WRITE_W followed by only the first of its payload words.
    lo, _ = isa.elem_range("input")
    for k, (op, cmd) in enumerate([
            (Opcode.LOAD_IN, Command.load_in(
                0, [lo + (3 * i) % 7 for i in range(min(cfg.in_depth, 2 * isa.per_word(Opcode.LOAD_IN) + 1))])),
            (Opcode.WRITE_W, Command.write_w(
                0, 1, 0, [(-1) ** i for i in range(min(cfg.logical_cols, 2 * isa.per_word(Opcode.WRITE_W) + 1))]))]):
        need = isa.payload_words(op, cmd.count)
        if need < 2:
            continue                                  # a one-word payload cannot be cut short mid-payload
        pre = random_commands(cfg, seed * 1000 + 200 + k, prefix, halt=False, prologue=False)
        words = isa.encode(pre + [cmd])
        case(f"truncated:{op.name.lower()}-payload", ErrorCode.TRUNCATED, pre + [cmd], words[:len(words) - need + 1])
    # A stream that simply ends before HALT.
    pre = random_commands(cfg, seed * 1000 + 202, prefix, halt=False, prologue=False)
    case("truncated:no-halt", ErrorCode.TRUNCATED, pre, isa.encode(pre))
    # Races between tiles (a concurrent chip): after random legal commands, the tiles synchronised by an
    # all-tile BARRIER (or not, when no tile has MVMs pending), then the hazard.
    for k, (name, cmds) in enumerate(hazard_cases(cfg)):
        pre = random_commands(cfg, seed * 1000 + 300 + k, prefix, halt=False, prologue=False)
        sb = Scoreboard(cfg)
        for c in pre:
            sb.step(c.op, c.args)
        if sb.hulls or k % 2:
            pre = pre + [Command.barrier()]
        post = random_commands(cfg, seed * 1000 + 700 + k, 3, prologue=False)
        case(f"hazard:{name}", ErrorCode.HAZARD, pre + cmds + post, isa.encode(pre + cmds + post))
    return out
