"""Fuzzing the loaders: whatever the bytes, reading a stream or a configuration raises only a KitError.

Binary containers and JSONL dumps are fuzzed with random bytes, with byte flips / truncations / insertions of
valid files (also re-sealed with correct checksums, so that the mutation reaches the configuration block and the
command count), and JSONL dumps with random JSON values in each field; configuration dicts with random JSON
values per key. Any exception other than :class:`~cimisa.errors.KitError` fails, and so does an example slower
than the deadline (a hang).
"""

import json
import struct
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cimisa.config import BUILTIN, CostParams, HwConfig
from cimisa.errors import ConfigError, KitError, StreamError
from cimisa.isa import Command
from cimisa.stream import _HEAD, loads_jsonl, pack_stream, unpack_stream
from sw_model.machine import run

FUZZ = settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow])

TINY = BUILTIN["fpga-tiny"]
MICRO = BUILTIN["fpga-micro"]
CMDS = [Command.write_w(1, 2, 3, [1, -2, 3]), Command.load_in(5, list(range(-20, 20))),
        Command.mvm(array=1, row0=0, nrows=4, col0=0, ncols=8, in_addr=5, out_addr=0, adc_bits=9),
        Command.requant(src=0, count=4, dst=0, shift=2), Command.read(0, 8), Command.barrier(), Command.halt()]
MICRO_CMDS = [Command.write_w(0, 0, 0, [3]), Command.load_in(0, [-5]),
              Command.mvm(array=0, row0=0, nrows=1, col0=0, ncols=1, in_addr=0, out_addr=0, adc_bits=8),
              Command.read(0, 1), Command.halt()]


def _pack(cfg, cmds):
    from cimisa.isa import Isa
    return pack_stream(cfg, Isa.of(cfg).encode(cmds), commands=len(cmds))


def _dump(cfg, cmds):
    from cimisa.stream import dumps_jsonl
    return dumps_jsonl(cfg, cmds)


VALID_BINS = [_pack(TINY, CMDS), _pack(MICRO, MICRO_CMDS)]
VALID_JSONL = [_dump(TINY, CMDS), _dump(MICRO, MICRO_CMDS)]
FIXED = _HEAD.size + 4


def _reseal(blob: bytes) -> bytes:
    """Recompute both checksums of a (mutated) container so that parsing gets past them."""
    if len(blob) < FIXED:
        return blob
    jlen = struct.unpack_from("<I", blob, 20)[0]
    cfg_json = blob[FIXED:FIXED + jlen]
    body = blob[FIXED + jlen:]
    head = bytearray(blob[:_HEAD.size])
    struct.pack_into("<I", head, 32, zlib.crc32(body))
    return bytes(head) + struct.pack("<I", zlib.crc32(bytes(head) + cfg_json)) + blob[_HEAD.size + 4:]


def _load_bin(blob: bytes) -> None:
    """Parse a container; if it loads, decode it and run it: only KitErrors may come out."""
    try:
        f = unpack_stream(blob, origin="fuzz.bin")
    except (StreamError, ConfigError):
        return
    try:
        f.decode()
    except KitError:
        pass
    run(f.cfg, f.words, raise_on_error=False)


def _load_jsonl(text) -> None:
    try:
        cfg, cmds = loads_jsonl(text, origin="fuzz.jsonl")
    except (StreamError, ConfigError):
        return
    from cimisa.isa import Isa
    run(cfg, Isa.of(cfg).encode(cmds), raise_on_error=False)


# A mutation: ("flip", position, mask), ("cut", position), ("insert", position, bytes), ("delete", position, n)
mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, 10**6)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 8)),
)


def _mutate(data: bytes, muts) -> bytes:
    b = bytearray(data)
    for m in muts:
        if not b:
            break
        pos = m[1] % len(b)
        if m[0] == "flip":
            b[pos] ^= m[2]
        elif m[0] == "cut":
            del b[pos:]
        elif m[0] == "insert":
            b[pos:pos] = m[2]
        else:
            del b[pos:pos + m[2]]
    return bytes(b)


# ---- (a) random bytes ----------------------------------------------------------------------------------------

@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_container(blob):
    _load_bin(blob)
    _load_bin(b"CIMSTRM\0" + blob)                     # past the magic
    _load_bin(_reseal(b"CIMSTRM\0\x01\x00" + blob))    # past the magic, the version and the checksums


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_jsonl(blob):
    _load_jsonl(blob)
    _load_jsonl(VALID_JSONL[1].split("\n", 1)[0].encode() + b"\n" + blob)    # a valid header, garbage commands


# ---- (b) valid files with flips, truncations and insertions --------------------------------------------------

@FUZZ
@given(st.sampled_from(range(len(VALID_BINS))), st.lists(mutation, min_size=1, max_size=4), st.booleans())
def test_mutated_container(which, muts, reseal):
    blob = _mutate(VALID_BINS[which], muts)
    _load_bin(_reseal(blob) if reseal else blob)


@FUZZ
@given(st.sampled_from(range(len(VALID_JSONL))), st.lists(mutation, min_size=1, max_size=4))
def test_mutated_jsonl(which, muts):
    _load_jsonl(_mutate(VALID_JSONL[which].encode(), muts))


# ---- (c) random JSON values in each field ----------------------------------------------------------------------

json_scalar = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(-(2**80), 2**80), st.sampled_from([0, 1, -1, 2**31, 2**32, 2**64, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 1.0, 32.0, 1e-320, 1e308]),
    st.text(max_size=12), st.sampled_from(["1", "32", "WRITE_W", "HALT", "paper-256", "fpga-tiny", ""]),
)
json_value = st.recursive(json_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


@FUZZ
@given(st.sampled_from(range(len(VALID_JSONL))), st.data())
def test_jsonl_random_values_per_field(which, data):
    lines = VALID_JSONL[which].rstrip("\n").split("\n")
    for _ in range(data.draw(st.integers(1, 3))):
        n = data.draw(st.integers(0, len(lines) - 1))
        obj = json.loads(lines[n])
        if not isinstance(obj, dict):
            continue
        keys = [(k,) for k in sorted(obj)] + [("new_key",)]
        hw = obj.get("hw") if n == 0 else None
        if isinstance(hw, dict):
            keys += [("hw", k) for k in sorted(hw)] + [("hw", "base")]
            if isinstance(hw.get("cost"), dict):
                keys += [("hw", "cost", k) for k in sorted(hw["cost"])]
        *path, last = data.draw(st.sampled_from(keys))
        target = obj
        for p in path:
            target = target[p]
        if data.draw(st.booleans()) and last in target:
            del target[last]
        else:
            target[last] = data.draw(json_value)
        lines[n] = json.dumps(obj)
    _load_jsonl("\n".join(lines) + "\n")


@FUZZ
@given(st.data())
def test_jsonl_random_whole_values(data):
    """Whole lines replaced by random JSON values (header or command)."""
    lines = VALID_JSONL[1].rstrip("\n").split("\n")
    n = data.draw(st.integers(0, len(lines)))
    line = json.dumps(data.draw(json_value))
    lines = lines[:n] + [line] + lines[n + 1:]
    _load_jsonl("\n".join(lines))


# ---- configuration dicts ---------------------------------------------------------------------------------------

HW_KEYS = [f.name for f in HwConfig.__dataclass_fields__.values() if f.name != "cost"]
COST_KEYS = list(CostParams.__dataclass_fields__)


@FUZZ
@given(st.sampled_from(sorted(BUILTIN)), st.booleans(), st.data())
def test_config_dict_random_values_per_key(base, use_base, data):
    d = {"base": base, "name": "fuzz"} if use_base else BUILTIN[base].to_dict()
    for _ in range(data.draw(st.integers(1, 4))):
        key = data.draw(st.sampled_from(HW_KEYS + ["base", "cost", "bogus"] + [f"cost.{k}" for k in COST_KEYS]))
        value = data.draw(json_value)
        if key.startswith("cost."):
            if not isinstance(d.get("cost"), dict):
                d["cost"] = {}
            d["cost"][key[5:]] = value
        else:
            d[key] = value
    try:
        cfg = HwConfig.from_dict(d, origin="fuzz")
    except ConfigError as exc:
        assert "\n" not in exc.one_line() and len(exc.one_line()) < 4000
        return
    assert cfg.violations() == []
    json.loads(cfg.to_json())
    assert cfg.lossless_adc_bits <= 28


@FUZZ
@given(json_value)
def test_config_from_any_json_value(value):
    try:
        HwConfig.from_dict(value, origin="fuzz")
    except ConfigError:
        pass
