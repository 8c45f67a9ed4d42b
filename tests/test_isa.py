"""The command set: encoding, decoding, stream files, generated docs, and the module boundaries."""

import ast
import doctest
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cimisa.config
import cimisa.isa
import cimisa.kernel
import cimisa.kernel_int8
import cimisa.semantics
from cimisa import docgen
from cimisa.config import load_hw
from cimisa.errors import StreamError
from cimisa.isa import Command, DecodeError, EncodeError, ErrorCode, Isa, Opcode
from cimisa.stream import dumps_jsonl, pack_stream, read_jsonl, read_stream, unpack_stream, write_jsonl, write_stream
from tests.strategies import any_command

ROOT = Path(__file__).resolve().parent.parent
CFGS = [load_hw("fpga-micro"), load_hw("fpga-tiny"), load_hw("paper-256")]


@pytest.mark.parametrize("module", [cimisa.semantics, cimisa.isa, cimisa.config, cimisa.kernel, cimisa.kernel_int8])
def test_doctests(module):
    res = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0
    if module is cimisa.semantics:
        assert res.attempted >= 15     # every opcode's action carries an executed example


@pytest.mark.parametrize("cfg", CFGS, ids=lambda c: c.name)
@given(data=st.data())
def test_every_opcode_roundtrips_binary_and_jsonl(cfg, data, tmp_path_factory):
    cmds = [data.draw(any_command(cfg, op)) for op in Opcode if op is not Opcode.HALT]
    cmds.append(Command.halt())
    isa = Isa.of(cfg)
    words = isa.encode(cmds)
    assert isa.decode(words) == cmds
    # The fast codec and Amaranth's Layout.const agree on every header.
    for c in cmds:
        assert isa.encode_header(c) == isa.encode_header_amaranth(c)
        view = isa.header_layout.from_bits(isa.encode_header(c))
        assert view.opcode == c.op
        assert {k: int(getattr(getattr(view.args, c.op.name.lower()), k)) for k in c.args} == c.args
    assert unpack_stream(pack_stream(cfg, words)).decode() == cmds
    d = tmp_path_factory.mktemp("s")
    write_stream(d / "s.bin", cfg, cmds)
    write_jsonl(d / "s.jsonl", cfg, cmds)
    f = read_stream(d / "s.bin", expect=cfg)
    assert f.cfg == cfg and f.commands == len(cmds) and f.decode() == cmds
    cfg2, cmds2 = read_jsonl(d / "s.jsonl", expect=cfg)
    assert cfg2 == cfg and cmds2 == cmds


def test_payload_words_match_amaranth_array_layout():
    cfg = load_hw("fpga-tiny")
    isa = Isa.of(cfg)
    vals = list(range(-8, 8)) + [7, -8, 0, 1, -1, 3, 2, -5]
    cmd = Command.write_w(0, 0, 0, vals)
    (w,) = isa.encode_payload(cmd)
    assert w == isa.weight_layout.const(vals).as_bits()
    assert list(isa.weight_layout.from_bits(w)) == vals


def test_encode_errors_name_the_problem():
    isa = Isa.of(load_hw("fpga-micro"))
    with pytest.raises(EncodeError, match="nrows=32 does not fit 5 bits"):
        isa.encode([Command.mvm(array=0, row0=0, nrows=32, col0=0, ncols=1, in_addr=0, out_addr=0, adc_bits=1)])
    with pytest.raises(EncodeError, match="payload value 9 outside -8..7"):
        isa.encode([Command.write_w(0, 0, 0, [9])])
    with pytest.raises(EncodeError, match="missing"):
        Command(Opcode.READ, {"addr": 1})
    with pytest.raises(EncodeError, match="count=3 but 1 payload"):
        Command(Opcode.LOAD_IN, {"addr": 0, "count": 3}, (1,))
    with pytest.raises(EncodeError, match="unknown opcode"):
        Command.from_json({"op": "FLY"})


def test_decode_errors_carry_index_and_code():
    isa = Isa.of(load_hw("fpga-micro"))
    words = isa.encode([Command.barrier(), Command.load_in(0, list(range(-8, 8)) * 2), Command.halt()])
    with pytest.raises(DecodeError) as e:
        isa.decode(words[:2])   # LOAD_IN of 32 inputs needs 2 payload words
    assert e.value.index == 1 and e.value.code is ErrorCode.TRUNCATED
    bad = words[:1] + [0xF] + words[1:]
    with pytest.raises(DecodeError) as e:
        isa.decode(bad)
    assert e.value.index == 1 and e.value.code is ErrorCode.ILLEGAL_OPCODE
    assert "illegal opcode 15" in str(e.value)


def _blob():
    cfg = load_hw("fpga-tiny")
    cmds = [Command.write_w(1, 2, 3, [1, -2, 3]), Command.load_in(5, list(range(-20, 20))), Command.read(0, 8),
            Command.halt()]
    return cfg, cmds, pack_stream(cfg, Isa.of(cfg).encode(cmds))


@pytest.mark.parametrize("mutate, needle", [
    (lambda b: b[:10], "truncated header"),
    (lambda b: b"X" + b[1:], "bad magic"),
    (lambda b: b[:8] + b"\x09" + b[9:], "unsupported format version"),
    (lambda b: b[:-5], "body truncated"),
    (lambda b: b + b"\0", "trailing bytes"),
    (lambda b: b[:-1] + bytes([b[-1] ^ 0x10]), "body checksum mismatch"),
    (lambda b: b[:45] + bytes([b[45] ^ 1]) + b[46:], "header checksum mismatch"),
])
def test_container_corruption_detected(mutate, needle):
    _, _, blob = _blob()
    with pytest.raises(StreamError, match=needle):
        unpack_stream(mutate(blob))


def test_container_wrong_config_and_missing_file(tmp_path):
    cfg, cmds, blob = _blob()
    p = tmp_path / "s.bin"
    p.write_bytes(blob)
    with pytest.raises(StreamError, match="built for hardware 'fpga-tiny'"):
        read_stream(p, expect=load_hw("paper-256"))
    with pytest.raises(StreamError, match="cannot read"):
        read_stream(tmp_path / "nope.bin")


@pytest.mark.parametrize("edit, needle", [
    (lambda ls: ls[:1] + ["{not json"] + ls[2:], "not a JSON object"),
    (lambda ls: ls[:1] + ls[2:], "command index"),
    (lambda ls: [ls[0].replace('"version": 1', '"version": 7')] + ls[1:], "unsupported format version"),
    (lambda ls: ls + ['{"i": 4, "op": "HALT"}'], "header says 4 commands"),
    (lambda ls: ls[:1] + [json.dumps({"i": 0, "op": "WRITE_W", "array": 1, "row": 2, "col": 3, "count": 3,
                                      "data": [1, 2, 99]})] + ls[2:], "payload value 99"),
    (lambda ls: ["[]"] + ls[1:], "not a CIM command stream dump"),
])
def test_jsonl_corruption_detected(tmp_path, edit, needle):
    cfg, cmds, _ = _blob()
    lines = dumps_jsonl(cfg, cmds).splitlines()
    p = tmp_path / "s.jsonl"
    p.write_text("\n".join(edit(lines)) + "\n")
    with pytest.raises(StreamError, match=needle):
        read_jsonl(p)


def test_writes_are_atomic(tmp_path, monkeypatch):
    cfg, cmds, _ = _blob()
    p = tmp_path / "s.bin"
    bad = cmds + [Command.write_w(0, 0, 0, [100])]   # not encodable: nothing may be written
    with pytest.raises(EncodeError):
        write_stream(p, cfg, bad)
    with pytest.raises(EncodeError):
        write_jsonl(tmp_path / "s.jsonl", cfg, bad)
    assert list(tmp_path.iterdir()) == []


def test_isa_doc_is_fresh():
    """docs/isa.md is generated from the spec; regenerate with `python -m cimisa.docgen`."""
    assert (ROOT / "docs" / "isa.md").read_text() == docgen.render(), "docs/isa.md is stale"


def test_isa_doc_check_detects_staleness(tmp_path):
    stale = tmp_path / "isa.md"
    stale.write_text(docgen.render().replace("MVM", "MMV", 1))
    assert docgen.main(["--check", "--out", str(stale)]) == 1
    stale.write_text(docgen.render())
    assert docgen.main(["--check", "--out", str(stale)]) == 0


def test_no_hand_written_bit_positions_outside_isa():
    """Only cimisa/isa.py places fields in words; elsewhere a shift of a word by a literal is a hand-made field."""
    for pkg in ("sw_model", "mapper", "sim", "hw"):
        for f in (ROOT / pkg).rglob("*.py"):
            text = f.read_text()
            for node in ast.walk(ast.parse(text)):
                if (isinstance(node, ast.BinOp) and isinstance(node.op, (ast.LShift, ast.RShift))
                        and isinstance(node.right, ast.Constant)):
                    src = ast.get_source_segment(text, node) or ""
                    assert not any(k in src for k in ("opcode", "word", "header", "status")), \
                        f"{f}: hand-made bit position: {src}"


def test_sw_model_imports_nothing_from_hw():
    code = ("import sys, sw_model, sw_model.machine, sw_model.naive; "
            "bad = [m for m in sys.modules if m == 'hw' or m.startswith(('hw.', 'amaranth.back', 'amaranth.sim'))];"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    for f in (ROOT / "sw_model").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for n in names:
                assert not (n == "hw" or n.startswith(("hw.", "amaranth"))), f"{f} imports {n}"


# ---- the loaders trust nothing: header fields, configuration block, value types ------------------------------

def forge(cfg_block, words=(), *, ncmds=None, word_bits=None, version=1, jlen=None, hw_hash=None):
    """A container with an arbitrary configuration block (``dict`` or bytes) and correct checksums."""
    import struct
    import zlib

    from cimisa.stream import _HEAD, MAGIC
    cfg_json = cfg_block if isinstance(cfg_block, bytes) else json.dumps(cfg_block).encode()
    if isinstance(cfg_block, dict):
        try:
            cfg = load_hw("fpga-tiny").from_dict(cfg_block)
            hw_hash = hw_hash or bytes.fromhex(cfg.arch_hash)
            word_bits = word_bits or Isa.of(cfg).word_bits
        except Exception:   # noqa: BLE001 - an invalid block: any hash will do, it is never reached
            pass
    hw_hash = hw_hash or b"\0" * 8
    word_bits = word_bits or 64
    nb = word_bits // 8
    body = b"".join(w.to_bytes(nb, "little") for w in words)
    head = _HEAD.pack(MAGIC, version, word_bits, hw_hash, len(cfg_json) if jlen is None else jlen, len(words),
                      len(words) if ncmds is None else ncmds, zlib.crc32(body))
    return head + struct.pack("<I", zlib.crc32(head + cfg_json)) + cfg_json + body


def test_container_command_count_must_match_body():
    cfg, cmds, blob = _blob()
    words = Isa.of(cfg).encode(cmds)
    assert unpack_stream(pack_stream(cfg, words, commands=len(cmds))).commands == len(cmds)
    for wrong in (0, len(cmds) - 1, len(cmds) + 1, 2**32 - 1):
        with pytest.raises(StreamError, match=f"header says {wrong} commands, the body holds {len(cmds)}"):
            unpack_stream(pack_stream(cfg, words, commands=wrong))


@pytest.mark.parametrize("block, kw, needle", [
    ({**load_hw("fpga-tiny").to_dict(), "weight_bits": 10**6}, {}, "weight_bits must be an integer in 2..16"),
    ({**load_hw("fpga-tiny").to_dict(), "weight_bits": 2**70}, {}, "not ~2**70"),
    ({**load_hw("fpga-tiny").to_dict(), "rows": 32.0}, {}, "rows must be an integer in 2..4096, not 32.0"),
    ({**load_hw("fpga-tiny").to_dict(), "n_arrays": 10**6, "rows": 4096, "cols": 4096}, {}, "weight cells"),
    ({**load_hw("fpga-tiny").to_dict(), "base": ["x"]}, {}, "base must be a string"),
    ([1, 2], {}, "expected a table of settings"),
    (b"\xff\xfe not utf-8", {}, "bad configuration block: not UTF-8 JSON"),
    (b'{"name": NaN', {}, "bad configuration block: not UTF-8 JSON"),
    (b"[" * 50000, {}, "bad configuration block: not UTF-8 JSON"),
    (load_hw("fpga-tiny").to_dict(), dict(word_bits=64), "word width 64 does not match the configuration (96)"),
    (load_hw("fpga-tiny").to_dict(), dict(hw_hash=b"\1" * 8), "configuration does not match its hash"),
    (load_hw("fpga-tiny").to_dict(), dict(jlen=2**32 - 1), "configuration block length 4294967295 exceeds"),
    (load_hw("fpga-tiny").to_dict(), dict(jlen=5000), "truncated configuration block"),
    (load_hw("fpga-tiny").to_dict(), dict(version=0), "unsupported format version 0"),
])
def test_container_header_fields_checked(block, kw, needle):
    with pytest.raises(StreamError, match=re.escape(needle)) as e:
        unpack_stream(forge(block, **kw))
    assert "\n" not in e.value.one_line()


def _jsonl_lines():
    cfg, cmds, _ = _blob()
    return dumps_jsonl(cfg, cmds).splitlines()


def _with_cmd(lines, n, **changes):
    obj = json.loads(lines[n])
    obj.update(changes)
    return lines[:n] + [json.dumps(obj)] + lines[n + 1:]


@pytest.mark.parametrize("edit, needle", [
    (lambda ls: _with_cmd(ls, 1, op=["WRITE_W"]), ":2: command 0: unknown opcode a list of 1 item"),
    (lambda ls: _with_cmd(ls, 1, op={"a": 1}), ":2: command 0: unknown opcode a table"),
    (lambda ls: _with_cmd(ls, 1, op=1), ":2: command 0: unknown opcode 1"),
    (lambda ls: _with_cmd(ls, 1, op=None), ":2: command 0: unknown opcode null"),
    (lambda ls: _with_cmd(ls, 1, data=None), ":2: command 0: WRITE_W data must be a list of integers, not null"),
    (lambda ls: _with_cmd(ls, 1, data="123"), "WRITE_W data must be a list of integers, not '123'"),
    (lambda ls: _with_cmd(ls, 1, data={"0": 1}), "WRITE_W data must be a list of integers, not a table"),
    (lambda ls: _with_cmd(ls, 1, data=[1, [2], 3]), "WRITE_W data[1] must be an integer, not a list of 1 item"),
    (lambda ls: _with_cmd(ls, 1, data=[1, -2.0, 3]), "WRITE_W data[1] must be an integer, not -2.0"),
    (lambda ls: _with_cmd(ls, 1, data=[1, True, 3]), "WRITE_W data[1] must be an integer, not true"),
    (lambda ls: _with_cmd(ls, 1, data=[1, "2", 3]), "WRITE_W data[1] must be an integer, not '2'"),
    (lambda ls: _with_cmd(ls, 1, data=[1, float("nan"), 3]), "WRITE_W data[1] must be an integer, not nan"),
    (lambda ls: _with_cmd(ls, 1, data=[1, 2, 3, 4]), "count=3 but 4 payload values"),
    (lambda ls: _with_cmd(ls, 1, row=2.0), "WRITE_W field row must be an integer, not 2.0"),
    (lambda ls: _with_cmd(ls, 1, row=False), "WRITE_W field row must be an integer, not false"),
    (lambda ls: _with_cmd(ls, 1, row="2"), "WRITE_W field row must be an integer, not '2'"),
    (lambda ls: _with_cmd(ls, 1, row=-1), "WRITE_W field row=-1 does not fit"),
    (lambda ls: _with_cmd(ls, 4, data=[]), ":5: command 3: HALT takes no payload"),
    (lambda ls: _with_cmd(ls, 2, i=True), ":3: command index true, expected 1"),
    (lambda ls: _with_cmd(ls, 2, i=1.0), ":3: command index 1.0, expected 1"),
    (lambda ls: ls[:2] + ["[1, 2]"] + ls[3:], ":3: not a JSON object"),
    (lambda ls: ls[:2] + ["[" * 100000] + ls[3:], ":3: "),
    (lambda ls: [ls[0].replace('"version": 1', '"version": true')] + ls[1:], "unsupported format version true"),
    (lambda ls: [ls[0].replace('"version": 1', '"version": 1.0')] + ls[1:], "unsupported format version 1.0"),
    (lambda ls: [ls[0].replace('"commands": 4', '"commands": 4.0')] + ls[1:], "commands must be a non-negative"),
    (lambda ls: [ls[0].replace('"word_bits": 96', '"word_bits": 32')] + ls[1:], "word_bits 32 does not match"),
    (lambda ls: [ls[0].replace('"weight_bits": 4', '"weight_bits": 1000000')] + ls[1:],
     ":1: bad configuration \"hw\": invalid hardware configuration 'fpga-tiny': weight_bits must be"),
    (lambda ls: [ls[0].replace('"t_adc_ns": 1.0', '"t_adc_ns": NaN')] + ls[1:], "cost.t_adc_ns must be a finite"),
    (lambda ls: ['"just a string"'] + ls[1:], ":1: not a CIM command stream dump"),
    (lambda ls: [], "empty file"),
    (lambda ls: ["", "  "], "empty file"),
])
def test_jsonl_types_are_exact(tmp_path, edit, needle):
    p = tmp_path / "s.jsonl"
    p.write_text("\n".join(edit(_jsonl_lines())) + "\n")
    with pytest.raises(StreamError, match=re.escape(needle)) as e:
        read_jsonl(p)
    assert "\n" not in e.value.one_line() and str(p) in str(e.value)


def test_jsonl_not_utf8_names_the_line(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_bytes("\n".join(_jsonl_lines()[:3]).encode() + b'\n{"i": 2, "op": "RE\xffAD"}\n')
    with pytest.raises(StreamError, match=r"s\.jsonl:4: not UTF-8 text"):
        read_jsonl(p)


def test_unusable_stream_paths(tmp_path):
    from cimisa.stream import read_any
    with pytest.raises(StreamError, match="it is a folder"):
        read_stream(tmp_path)
    with pytest.raises(StreamError, match="not a regular file"):
        read_jsonl("/dev/zero")
    with pytest.raises(StreamError, match="No such file"):
        read_any(tmp_path / "missing.bin")
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(StreamError, match=r"not a command stream \(expected a \.bin container or a \.jsonl dump\)"):
        read_any(tmp_path / "notes.txt")
    cfg, cmds, blob = _blob()
    (tmp_path / "stream.dat").write_bytes(blob)       # recognised by its magic
    (tmp_path / "dump.txt").write_text(dumps_jsonl(cfg, cmds))
    assert read_any(tmp_path / "stream.dat").words == read_any(tmp_path / "dump.txt").words
    assert read_any(tmp_path / "dump.txt").commands == len(cmds)


def test_column_fields_count_logical_columns():
    """``col``/``ncols`` are logical columns (weights): fpga-tiny-sliced holds 32 weights per row in 192 physical
    columns, so its column fields are as wide as fpga-tiny's and a column past 31 cannot be encoded."""
    sliced, tiny = load_hw("fpga-tiny-sliced"), load_hw("fpga-tiny")
    assert (sliced.cols, sliced.logical_cols) == (192, 32)
    for op, names in ((Opcode.WRITE_W, ("col", "count")), (Opcode.MVM, ("col0", "ncols"))):   # (ADC fields differ)
        assert [Isa.of(sliced).field_widths[op][n] for n in names] == [Isa.of(tiny).field_widths[op][n] for n in names]
    assert Isa.of(sliced).field_widths[Opcode.MVM]["col0"] == 5
    with pytest.raises(EncodeError):
        Isa.of(sliced).encode([Command.mvm(array=0, row0=0, nrows=1, col0=32, ncols=1, in_addr=0, out_addr=0,
                                                 adc_bits=1)])
