"""The CIM command set, defined once.

Every part of the kit encodes and decodes commands through this module: the mapper's encoder, the golden
model's decoder (:mod:`sw_model`), the Amaranth command decoder (:mod:`hw`) and the cocotb driver (:mod:`sim`).
Bit positions are never written by hand anywhere: the word layouts are Amaranth
:class:`~amaranth.lib.data.StructLayout` objects built from a :class:`~cimisa.config.HwConfig` by
:class:`Isa`, and the fast Python codec reads its offsets from those layouts.

A command stream is a sequence of ``Isa.word_bits``-bit words. Each command is one *header* word::

    bits [0, 4)   opcode  (:class:`Opcode`; 0 and 8..15 are illegal)
    bits [4, ..)  the opcode's fields (:data:`FIELDS`), packed LSB first, widths derived from the configuration

``WRITE_W`` and ``LOAD_IN`` headers are followed by ``ceil(count / per_word)`` *payload* words, each holding
``per_word`` two's complement elements (weights or inputs) packed LSB first; unused lanes are zero.
The meaning of each opcode, as numpy, is in :mod:`cimisa.semantics`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from amaranth import signed, unsigned
from amaranth.lib import data, enum

from cimisa.config import ACC_BITS, HwConfig, _show
from cimisa.errors import KitError
from cimisa.rules import MAX_REQUANT_SHIFT

__all__ = [
    "Opcode", "ErrorCode", "RunState", "FIELDS", "FIELD_DEFAULTS", "PAYLOAD", "Command", "Isa", "EncodeError",
    "DecodeError", "OPCODE_BITS", "bits_for",
]

OPCODE_BITS = 4


class Opcode(enum.Enum, shape=OPCODE_BITS):
    """CIM opcodes. Their meanings are the functions of the same name in :mod:`cimisa.semantics`."""

    WRITE_W = 1   #: program weights into one row of an array (payload: weights)
    LOAD_IN = 2   #: load input values into the input buffer (payload: inputs)
    MVM = 3       #: bit-serial matrix-vector multiply on one array's active row/column window
    REQUANT = 4   #: move accumulators to the input buffer, rounded, shifted and saturated
    READ = 5      #: stream accumulators out as result words
    BARRIER = 6   #: wait until every earlier command (``local``: of one tile) has finished
    HALT = 7      #: stop; words after HALT are ignored


class ErrorCode(enum.Enum, shape=4):
    """Why a machine stopped with an error; identical in the golden model and the RTL status register."""

    NONE = 0
    ILLEGAL_OPCODE = 1   #: the header's opcode is not an :class:`Opcode`
    BAD_ARRAY = 2        #: array index >= n_arrays
    BAD_ROW = 3          #: row window empty or past the last row
    BAD_COL = 4          #: column window empty or past the last column
    BAD_IN_ADDR = 5      #: an input-buffer access (or count) outside the buffer, or aliased writes
    BAD_OUT_ADDR = 6     #: an output-buffer access (or count) outside the buffer, or aliased writes
    BAD_ADC = 7          #: MVM adc_bits outside 1..config.adc_bits
    TRUNCATED = 8        #: the stream ended inside a payload or before HALT
    HAZARD = 9           #: an MVM whose outputs may race with another tile's (:mod:`cimisa.concurrency`)


class RunState(enum.Enum, shape=2):
    """State of a machine: still accepting commands, halted cleanly, or stopped by an error."""

    RUNNING = 0
    HALTED = 1
    ERROR = 2


def _is_exact_int(v) -> bool:
    """Whether ``v`` is a Python int and not a bool (JSON numbers with a fraction or exponent are floats)."""
    return type(v) is int


def bits_for(value: int) -> int:
    """Return the unsigned width that holds ``0..value`` (at least 1)."""
    return max(1, int(value).bit_length())


#: Field kinds -> (description, width as a function of the configuration).
FIELD_KINDS: dict[str, tuple[str, callable]] = {
    "array": ("array index, 0..n_arrays-1", lambda c: bits_for(c.n_arrays - 1)),
    "row": ("row index, 0..rows-1", lambda c: bits_for(c.rows - 1)),
    "nrows": ("row count, 1..rows", lambda c: bits_for(c.rows)),
    "col": ("logical column (weight) index, 0..logical_cols-1", lambda c: bits_for(c.logical_cols - 1)),
    "ncols": ("logical column (weight) count, 1..logical_cols", lambda c: bits_for(c.logical_cols)),
    "in_addr": ("input-buffer address, 0..in_depth-1", lambda c: bits_for(c.in_depth - 1)),
    "in_count": ("input element count, 1..in_depth", lambda c: bits_for(c.in_depth)),
    "out_addr": ("output-buffer address, 0..out_depth-1", lambda c: bits_for(c.out_depth - 1)),
    "out_count": ("accumulator count, 1..out_depth", lambda c: bits_for(c.out_depth)),
    "flag": ("0 or 1", lambda c: 1),
    "adc_bits": ("ADC resolution for this MVM, 1..adc_bits", lambda c: bits_for(c.adc_bits)),
    "adc_shift": ("ADC step is 2**adc_shift", lambda c: bits_for(c.lossless_adc_bits)),
    "rq_shift": (f"right shift with rounding, 0..{MAX_REQUANT_SHIFT}", lambda c: bits_for(MAX_REQUANT_SHIFT)),
}

#: Header fields of each opcode, in bit order after the opcode: (name, kind).
FIELDS: dict[Opcode, tuple[tuple[str, str], ...]] = {
    Opcode.WRITE_W: (("array", "array"), ("row", "row"), ("col", "col"), ("count", "ncols")),
    Opcode.LOAD_IN: (("addr", "in_addr"), ("count", "in_count")),
    Opcode.MVM: (("array", "array"), ("row0", "row"), ("nrows", "nrows"), ("col0", "col"), ("ncols", "ncols"),
                 ("in_addr", "in_addr"), ("in_stride", "in_addr"), ("out_addr", "out_addr"),
                 ("out_stride", "out_addr"), ("accumulate", "flag"), ("adc_bits", "adc_bits"),
                 ("adc_shift", "adc_shift")),
    Opcode.REQUANT: (("src", "out_addr"), ("count", "out_count"), ("dst", "in_addr"), ("dst_stride", "in_addr"),
                     ("shift", "rq_shift")),
    Opcode.READ: (("addr", "out_addr"), ("count", "out_count")),
    Opcode.BARRIER: (("array", "array"), ("local", "flag")),
    Opcode.HALT: (),
}

#: Header fields that may be left out of a :class:`Command` (and of its JSON): opcode -> {field: default}.
#: ``BARRIER()`` is the barrier of every tile (all fields zero: the encoding of the barrier before tiles).
FIELD_DEFAULTS: dict[Opcode, dict[str, int]] = {Opcode.BARRIER: {"array": 0, "local": 0}}

#: Opcodes followed by payload words: opcode -> "weight" or "input" (the element type).
PAYLOAD: dict[Opcode, str] = {Opcode.WRITE_W: "weight", Opcode.LOAD_IN: "input"}


class EncodeError(KitError):
    """A command cannot be encoded: a field value does not fit its width, or a payload has the wrong size."""


class DecodeError(KitError):
    """A word sequence cannot be decoded into commands (illegal opcode or truncated payload).

    ``index`` is the index of the offending command, ``code`` the matching :class:`ErrorCode`.
    """

    def __init__(self, message: str, *, index: int, code: ErrorCode):
        super().__init__(f"command {index}: {message}")
        self.index = index
        self.code = code


@dataclass(frozen=True)
class Command:
    """One CIM command: an opcode, its header fields, and (for WRITE_W / LOAD_IN) its payload elements."""

    op: Opcode
    args: Mapping[str, int] = field(default_factory=dict)
    data: tuple[int, ...] = ()

    def __post_init__(self):
        try:
            object.__setattr__(self, "op", Opcode(self.op))
        except (ValueError, TypeError):
            raise EncodeError(f"unknown opcode {_show(self.op)}") from None
        try:   # the Python API accepts numpy integers (and other int-like values) and stores plain ints
            object.__setattr__(self, "args", {k: int(v) for k, v in dict(self.args).items()})
            object.__setattr__(self, "data", tuple(int(v) for v in self.data))
        except (TypeError, ValueError, OverflowError) as exc:
            raise EncodeError(f"{self.op.name}: field and payload values must be integers ({exc})") from None
        names = [n for n, _ in FIELDS[self.op]]
        defaults = FIELD_DEFAULTS.get(self.op)
        if defaults and set(self.args) < set(names):
            object.__setattr__(self, "args", {n: self.args.get(n, defaults[n]) for n in names})
        if set(self.args) != set(names):
            missing = sorted(set(names) - set(self.args))
            extra = sorted(map(str, set(self.args) - set(names)))
            raise EncodeError(f"{self.op.name} takes fields {names}; missing {missing}, unexpected {extra}")
        if self.op in PAYLOAD:
            if len(self.data) != self.args["count"]:
                raise EncodeError(f"{self.op.name} count={self.args['count']} but {len(self.data)} payload values")
        elif self.data:
            raise EncodeError(f"{self.op.name} takes no payload")

    def __getattr__(self, name):
        try:
            return self.__dict__["args"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        parts = [f"{k}={v}" for k, v in self.args.items()]
        if self.data:
            parts.append(f"data=({', '.join(map(str, self.data[:8]))}{', ...' if len(self.data) > 8 else ''})")
        return f"{self.op.name}({', '.join(parts)})"

    def __hash__(self):
        return hash((self.op, tuple(sorted(self.args.items())), self.data))

    def to_json(self) -> dict:
        """Return the command as a JSON object (``op``, fields, and ``data`` for payload commands); fields of
        :data:`FIELD_DEFAULTS` are left out when all of them have their default values."""
        d = {"op": self.op.name, **self.args}
        defaults = FIELD_DEFAULTS.get(self.op)
        if defaults and all(self.args[k] == v for k, v in defaults.items()):
            d = {"op": self.op.name, **{k: v for k, v in self.args.items() if k not in defaults}}
        if self.op in PAYLOAD:
            d["data"] = list(self.data)
        return d

    @classmethod
    def from_json(cls, obj: Mapping) -> Command:
        """Build a command from :meth:`to_json` output; raise EncodeError naming the first problem.

        Strict, unlike the constructor: ``op`` must be an opcode name, every field an integer (not a bool, float
        or string) and ``data`` (payload commands only) a list of integers; an ``i`` key is ignored.
        """
        if not isinstance(obj, Mapping):
            raise EncodeError(f"a command must be a JSON object, not {_show(obj)}")
        obj = dict(obj)
        name = obj.pop("op", None)
        if not isinstance(name, str) or name not in Opcode.__members__:
            raise EncodeError(f"unknown opcode {_show(name)} (one of {', '.join(Opcode.__members__)})")
        op = Opcode[name]
        obj.pop("i", None)
        if op not in PAYLOAD and "data" in obj:
            raise EncodeError(f"{name} takes no payload (data)")
        data = obj.pop("data", [])
        if not isinstance(data, list):
            raise EncodeError(f"{name} data must be a list of integers, not {_show(data)}")
        for k, v in obj.items():
            if not (isinstance(k, str) and _is_exact_int(v)):
                raise EncodeError(f"{name} field {_show(k) if not isinstance(k, str) else k[:40]} must be an integer, "
                                  f"not {_show(v)}")
        for j, v in enumerate(data):
            if not _is_exact_int(v):
                raise EncodeError(f"{name} data[{j}] must be an integer, not {_show(v)}")
        return cls(op, obj, tuple(data))

    # Convenience constructors: keyword names are the header fields.
    @classmethod
    def write_w(cls, array: int, row: int, col: int, weights: Sequence[int]) -> Command:
        return cls(Opcode.WRITE_W, dict(array=array, row=row, col=col, count=len(weights)), tuple(weights))

    @classmethod
    def load_in(cls, addr: int, values: Sequence[int]) -> Command:
        return cls(Opcode.LOAD_IN, dict(addr=addr, count=len(values)), tuple(values))

    @classmethod
    def mvm(cls, *, array: int, row0: int, nrows: int, col0: int, ncols: int, in_addr: int, in_stride: int = 1,
            out_addr: int, out_stride: int = 1, accumulate: bool = False, adc_bits: int,
            adc_shift: int = 0) -> Command:
        return cls(Opcode.MVM, dict(array=array, row0=row0, nrows=nrows, col0=col0, ncols=ncols, in_addr=in_addr,
                                    in_stride=in_stride, out_addr=out_addr, out_stride=out_stride,
                                    accumulate=int(accumulate), adc_bits=adc_bits, adc_shift=adc_shift))

    @classmethod
    def requant(cls, *, src: int, count: int, dst: int, dst_stride: int = 1, shift: int = 0) -> Command:
        return cls(Opcode.REQUANT, dict(src=src, count=count, dst=dst, dst_stride=dst_stride, shift=shift))

    @classmethod
    def read(cls, addr: int, count: int) -> Command:
        return cls(Opcode.READ, dict(addr=addr, count=count))

    @classmethod
    def barrier(cls, array: int | None = None) -> Command:
        """The barrier of every tile, or (``array`` given) of the tile that holds ``array``."""
        if array is None:
            return cls(Opcode.BARRIER)
        return cls(Opcode.BARRIER, dict(array=array, local=1))

    @classmethod
    def halt(cls) -> Command:
        return cls(Opcode.HALT)


@dataclass(frozen=True)
class _FieldPos:
    name: str
    offset: int
    width: int


class Isa:
    """The command set instantiated for one hardware configuration: layouts, widths and a codec.

    Use :meth:`Isa.of` to share one instance per configuration.

    Members:
      ``header_layout``   StructLayout ``{"opcode": Opcode, "args": UnionLayout({op: StructLayout})}``
      ``weight_layout``   ArrayLayout of ``per_word_weights`` signed weights (a WRITE_W payload word)
      ``input_layout``    ArrayLayout of ``per_word_inputs`` signed inputs (a LOAD_IN payload word)
      ``status_layout``   StructLayout of the status register ``{state, error, index}``
      ``cmd_layout``      StructLayout ``{"word", "last"}`` of the RTL command stream
      ``result_shape``    ``signed(32)``, the RTL result stream element
      ``word_bits``       width of every stream word (header layout size rounded up to 32)
    """

    def __init__(self, cfg: HwConfig):
        self.cfg = cfg
        self.field_widths: dict[Opcode, dict[str, int]] = {
            op: {name: FIELD_KINDS[kind][1](cfg) for name, kind in fs} for op, fs in FIELDS.items()}
        self.arg_layouts: dict[Opcode, data.StructLayout] = {
            op: data.StructLayout({name: unsigned(w) for name, w in ws.items()})
            for op, ws in self.field_widths.items()}
        self.args_layout = data.UnionLayout({op.name.lower(): lay for op, lay in self.arg_layouts.items()})
        self.header_layout = data.StructLayout({"opcode": Opcode, "args": self.args_layout})
        self.word_bits = -(-self.header_layout.size // 32) * 32
        self.per_word_weights = self.word_bits // cfg.weight_bits
        self.per_word_inputs = self.word_bits // cfg.input_bits
        self.weight_layout = data.ArrayLayout(signed(cfg.weight_bits), self.per_word_weights)
        self.input_layout = data.ArrayLayout(signed(cfg.input_bits), self.per_word_inputs)
        self.word_bytes = self.word_bits // 8
        #: One element of the RTL command stream: a stream word and a flag marking the stream's last word.
        self.cmd_layout = data.StructLayout({"word": unsigned(self.word_bits), "last": unsigned(1)})
        #: One element of the RTL result stream (a READ output).
        self.result_shape = signed(ACC_BITS)
        self.index_bits = 32
        self.status_layout = data.StructLayout(
            {"state": RunState, "error": ErrorCode, "index": unsigned(self.index_bits)})
        # Offsets for the fast codec, read from the layouts (never written by hand).
        op_field = self.header_layout["opcode"]
        self._op_off, self._op_width = op_field.offset, op_field.width
        args_off = self.header_layout["args"].offset
        self._pos: dict[Opcode, tuple[_FieldPos, ...]] = {}
        for op, lay in self.arg_layouts.items():
            self._pos[op] = tuple(_FieldPos(name, args_off + f.offset, f.width) for name, f in lay)
        self._elem = {"weight": (cfg.weight_bits, self.per_word_weights),
                      "input": (cfg.input_bits, self.per_word_inputs)}

    @staticmethod
    @functools.lru_cache(maxsize=32)
    def of(cfg: HwConfig) -> Isa:
        """Return the (cached) command set for ``cfg``."""
        return Isa(cfg)

    def __repr__(self) -> str:
        return f"Isa.of({self.cfg.name!r}: word_bits={self.word_bits})"

    # ---- sizes -------------------------------------------------------------------------------------------
    def elem_bits(self, op: Opcode) -> int:
        """Width of one payload element of ``op``."""
        return self._elem[PAYLOAD[op]][0]

    def per_word(self, op: Opcode) -> int:
        """Payload elements per word for ``op``."""
        return self._elem[PAYLOAD[op]][1]

    def payload_words(self, op: Opcode, count: int) -> int:
        """Number of payload words that follow a header of ``op`` with ``count`` elements."""
        if op not in PAYLOAD:
            return 0
        return -(-count // self.per_word(op))

    def elem_range(self, kind: str) -> tuple[int, int]:
        """Inclusive range of a ``"weight"`` or ``"input"`` element."""
        bits = self._elem[kind][0]
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1

    # ---- encoding ----------------------------------------------------------------------------------------
    def encode_header(self, cmd: Command) -> int:
        """Return the header word of ``cmd``; raise EncodeError if a field does not fit."""
        word = int(cmd.op.value) << self._op_off
        for p in self._pos[cmd.op]:
            v = cmd.args[p.name]
            if not 0 <= v < (1 << p.width):
                raise EncodeError(f"{cmd.op.name} field {p.name}={v} does not fit {p.width} bits")
            word |= v << p.offset
        return word

    def encode_header_amaranth(self, cmd: Command) -> int:
        """Return the header word of ``cmd`` built with Amaranth's ``Layout.const`` (slow; for tests)."""
        return self.header_layout.const(
            {"opcode": cmd.op, "args": {cmd.op.name.lower(): dict(cmd.args)}}).as_bits()

    def encode_payload(self, cmd: Command) -> list[int]:
        """Return the payload words of ``cmd`` (empty for opcodes without payload)."""
        if cmd.op not in PAYLOAD:
            return []
        bits, per = self._elem[PAYLOAD[cmd.op]]
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        mask = (1 << bits) - 1
        words = []
        for start in range(0, len(cmd.data), per):
            w = 0
            for lane, v in enumerate(cmd.data[start:start + per]):
                if not lo <= v <= hi:
                    raise EncodeError(f"{cmd.op.name} payload value {v} outside {lo}..{hi}")
                w |= (v & mask) << (lane * bits)
            words.append(w)
        return words

    def encode(self, cmds: Iterable[Command]) -> list[int]:
        """Return the stream words of ``cmds``."""
        words: list[int] = []
        for i, cmd in enumerate(cmds):
            try:
                words.append(self.encode_header(cmd))
                words.extend(self.encode_payload(cmd))
            except EncodeError as exc:
                raise EncodeError(f"command {i}: {exc}") from None
        return words

    # ---- decoding ----------------------------------------------------------------------------------------
    def opcode_of(self, word: int) -> int:
        """Return the raw opcode bits of a header word."""
        return (word >> self._op_off) & ((1 << self._op_width) - 1)

    def decode_header(self, word: int) -> tuple[Opcode, dict[str, int]] | None:
        """Return ``(opcode, fields)`` of a header word, or None if its opcode is illegal."""
        raw = self.opcode_of(word)
        try:
            op = Opcode(raw)
        except ValueError:
            return None
        return op, {p.name: (word >> p.offset) & ((1 << p.width) - 1) for p in self._pos[op]}

    def decode_payload_word(self, op: Opcode, word: int) -> list[int]:
        """Return the ``per_word`` signed elements of one payload word of ``op``."""
        bits, per = self._elem[PAYLOAD[op]]
        mask, sign = (1 << bits) - 1, 1 << (bits - 1)
        out = []
        for lane in range(per):
            v = (word >> (lane * bits)) & mask
            out.append(v - (1 << bits) if v & sign else v)
        return out

    def iter_decode(self, words: Sequence[int]) -> Iterator[tuple[int, Command]]:
        """Yield ``(word_index, command)``; raise DecodeError on an illegal opcode or a truncated payload.

        Decoding stops after HALT.
        """
        i = n = 0
        while i < len(words):
            hdr = self.decode_header(words[i])
            if hdr is None:
                raise DecodeError(f"illegal opcode {self.opcode_of(words[i])}", index=n,
                                  code=ErrorCode.ILLEGAL_OPCODE)
            op, args = hdr
            payload: list[int] = []
            if op in PAYLOAD:
                nw = self.payload_words(op, args["count"])
                if i + 1 + nw > len(words):
                    raise DecodeError(f"{op.name} payload truncated: needs {nw} words, "
                                      f"{len(words) - i - 1} left", index=n, code=ErrorCode.TRUNCATED)
                for w in words[i + 1:i + 1 + nw]:
                    payload.extend(self.decode_payload_word(op, w))
                payload = payload[:args["count"]]
                i += nw
            yield i, Command(op, args, tuple(payload)) if op in PAYLOAD else Command(op, args)
            i += 1
            n += 1
            if op is Opcode.HALT:
                return

    def decode(self, words: Sequence[int]) -> list[Command]:
        """Return the commands of a word sequence (see :meth:`iter_decode`)."""
        return [c for _, c in self.iter_decode(words)]
