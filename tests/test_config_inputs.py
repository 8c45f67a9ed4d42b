"""Bad configurations and stream files through the real command lines, run from a folder outside the repository.

Each case writes its input files into an empty temporary folder, runs one command there (``cwd=tmp_path``) and
checks the kit's contract for bad input: the exit status, exactly one non-empty line on stderr starting with
``error: `` that names the problem, no traceback, no file left besides the inputs, and done within 10 s.
"""

import json
import struct
import subprocess
import sys
import zlib

import pytest

from cimisa.config import BUILTIN
from cimisa.isa import Command, Isa
from cimisa.stream import _HEAD, MAGIC, dumps_jsonl, pack_stream

MICRO = BUILTIN["fpga-micro"]
CMDS = [Command.write_w(0, 0, 0, [3]), Command.load_in(0, [-5]),
        Command.mvm(array=0, row0=0, nrows=1, col0=0, ncols=1, in_addr=0, out_addr=0, adc_bits=8),
        Command.read(0, 1), Command.halt()]
WORDS = Isa.of(MICRO).encode(CMDS)
GOOD_BIN = pack_stream(MICRO, WORDS, commands=len(CMDS))
GOOD_JSONL = dumps_jsonl(MICRO, CMDS)
ERR_CMDS = CMDS[:2] + [Command.read(31, 2), Command.halt()]     # READ past the output buffer: BAD_OUT_ADDR


def forge_bin(block, *, words=WORDS, ncmds=None, version=1, jlen=None) -> bytes:
    """A container whose configuration block is ``block`` (dict, or raw bytes), with correct checksums."""
    cfg_json = block if isinstance(block, bytes) else json.dumps(block).encode()
    nb = Isa.of(MICRO).word_bytes
    body = b"".join(w.to_bytes(nb, "little") for w in words)
    head = _HEAD.pack(MAGIC, version, Isa.of(MICRO).word_bits, bytes.fromhex(MICRO.arch_hash),
                      len(cfg_json) if jlen is None else jlen, len(words),
                      len(CMDS) if ncmds is None else ncmds, zlib.crc32(body))
    return head + struct.pack("<I", zlib.crc32(head + cfg_json)) + cfg_json + body


def micro(**changes) -> dict:
    d = MICRO.to_dict()
    cost = changes.pop("cost", {})
    d.update(changes)
    d["cost"].update(cost)
    return d


def jsonl_with(n: int | None = None, header=None, **changes) -> str:
    """The good JSONL dump with command line ``n`` (0-based command index) or the header changed."""
    lines = GOOD_JSONL.rstrip("\n").split("\n")
    if header is not None:
        h = json.loads(lines[0])
        h.update(header)
        lines[0] = json.dumps(h)
    if n is not None:
        obj = json.loads(lines[n + 1])
        obj.update(changes)
        lines[n + 1] = json.dumps(obj)
    return "\n".join(lines) + "\n"


TOML_BASE = 'base = "fpga-tiny"\nname = "bad"\n'
SW = ["-m", "sw_model", "run"]
CHECK = ["-m", "cimisa", "check-config"]
BUILD = ["-m", "mapper", "build", "--model", "tiny-bert", "--out", "X", "--no-plots", "--hw"]

# id: (files to write {name: text or bytes}, command line after `python`, exit status, substring of the error)
CASES = {
    # ---- configuration files (python -m cimisa check-config) ---------------------------------------------------
    "toml-weight-bits-1e6": ({"c.toml": TOML_BASE + "weight_bits = 1000000\n"}, CHECK + ["c.toml"], 2,
                             "weight_bits must be an integer in 2..16, not 1000000"),
    "toml-weight-bits-2**70": ({"c.toml": TOML_BASE + f"weight_bits = {2**70}\n"}, CHECK + ["c.toml"], 2,
                               "weight_bits must be an integer in 2..16, not ~2**70"),
    "toml-weight-bits-0": ({"c.toml": TOML_BASE + "weight_bits = 0\n"}, CHECK + ["c.toml"], 2,
                           "weight_bits must be an integer in 2..16, not 0"),
    "toml-rows-float": ({"c.toml": TOML_BASE + "rows = 32.0\n"}, CHECK + ["c.toml"], 2,
                        "rows must be an integer in 2..4096, not 32.0"),
    "toml-rows-bool": ({"c.toml": TOML_BASE + "rows = true\n"}, CHECK + ["c.toml"], 2,
                       "rows must be an integer in 2..4096, not true"),
    "toml-base-list": ({"c.toml": 'base = ["fpga-tiny"]\nname = "x"\n'}, CHECK + ["c.toml"], 2,
                       "base must be a string naming a built-in configuration"),
    "toml-digital-lanes-0": ({"c.toml": TOML_BASE + "[cost]\ndigital_lanes = 0\n"}, CHECK + ["c.toml"], 2,
                             "cost.digital_lanes must be an integer in 1..1048576, not 0"),
    "toml-ramp-fraction-2": ({"c.toml": TOML_BASE + "[cost]\nadc_ramp_fraction = 2\n"}, CHECK + ["c.toml"], 2,
                             "cost.adc_ramp_fraction must be a number in 0..1, not 2"),
    "toml-cost-inf": ({"c.toml": TOML_BASE + "[cost]\nt_adc_ns = inf\n"}, CHECK + ["c.toml"], 2,
                      "cost.t_adc_ns must be a finite number in 0..1e9, not inf"),
    "toml-huge-tile": ({"c.toml": TOML_BASE + "rows = 4096\ncols = 4096\nn_arrays = 1000000\n"},
                       CHECK + ["c.toml"], 2, "weight cells, more than the kit's limit of 2**36"),
    "toml-every-violation": ({"c.toml": TOML_BASE + "rows = 32.5\nweight_bits = 0\n[cost]\nt_adc_ns = -1\n"},
                             CHECK + ["c.toml"], 2, ("rows must be", "weight_bits must be", "cost.t_adc_ns")),
    "toml-chip-unknown-key": ({"c.toml": TOML_BASE + "[chip]\ntiers = 4\n[tech]\nnode = 7\n"}, CHECK + ["c.toml"],
                              2, ("unknown setting chip.tiers", "unknown setting tech.node")),
    "toml-chip-not-a-table": ({"c.toml": TOML_BASE + "chip = 4\n"}, CHECK + ["c.toml"], 2,
                              "chip must be a table, not 4"),
    "toml-chip-every-violation": (
        {"c.toml": 'base = "chip-tiny-4t"\nname = "bad"\n[chip]\narrays_per_tile = 7\nmvms_per_tile = 8\n'
                   'topology = "torus"\nhop_latency_ns = nan\n[tech]\nadc_model = "flash"\n'},
        CHECK + ["c.toml"], 2, ("chip.mvms_per_tile must be at most chip.arrays_per_tile (7), not 8",
                                "chip.arrays_per_tile must divide n_arrays (96), not 7",
                                "chip.topology must be one of ideal, mesh, ring, bus, not 'torus'",
                                "chip.hop_latency_ns must be a finite number in 0..1e12, not nan",
                                "tech.adc_model must be one of survey, walden, not 'flash'")),
    "json-chip-inf": ({"c.json": json.dumps({**micro(), "chip": {"link_bytes_per_ns": float("inf")}})},
                      CHECK + ["c.json"], 2, "chip.link_bytes_per_ns must be a finite number in 0..1e12, not inf"),
    "build-chip-not-dividing": ({"c.toml": TOML_BASE + "[chip]\narrays_per_tile = 7\n"}, BUILD + ["c.toml"], 2,
                                "chip.arrays_per_tile must divide n_arrays (96), not 7"),
    "toml-unparseable": ({"c.toml": "rows = [\n"}, CHECK + ["c.toml"], 2, "c.toml: not valid TOML"),
    "toml-not-utf8": ({"c.toml": 'name = "caf\xe9"\n'.encode("latin-1")}, CHECK + ["c.toml"], 2,
                      "not valid TOML: not UTF-8 text"),
    "json-digital-lanes-tiny": ({"c.json": json.dumps(micro(cost={"digital_lanes": 1e-320}))}, CHECK + ["c.json"],
                                2, "cost.digital_lanes must be an integer in 1..1048576, not 1e-320"),
    "json-nan": ({"c.json": json.dumps(micro(cost={"t_adc_ns": float("nan")}))}, CHECK + ["c.json"], 2,
                 "cost.t_adc_ns must be a finite number in 0..1e9, not nan"),
    "json-unparseable": ({"c.json": '{"name": '}, CHECK + ["c.json"], 2, "c.json: not valid JSON"),
    "config-is-a-folder": ({"cfg.toml/": None}, CHECK + ["cfg.toml"], 2, "it is a folder"),
    "config-missing": ({}, CHECK + ["nope.toml"], 2, "No such file or directory"),
    "config-device": ({}, CHECK + ["/dev/zero"], 2, "not a regular file"),
    "check-config-bad-option": ({}, CHECK + ["paper-256", "--bogus"], 2, "unrecognized arguments: --bogus"),
    # ---- the same configuration errors through the other command lines ----------------------------------------
    "build-weight-bits-1e6": ({"c.toml": TOML_BASE + "weight_bits = 1000000\n"}, BUILD + ["c.toml"], 2,
                              "weight_bits must be an integer in 2..16"),
    "build-huge-tile": ({"c.toml": TOML_BASE + "rows = 4096\ncols = 4096\nn_arrays = 1000000\n"},
                        BUILD + ["c.toml"], 2, "weight cells"),
    # ---- configuration block of a binary container (python -m sw_model run) -----------------------------------
    "bin-cfg-weight-bits-1e6": ({"s.bin": forge_bin(micro(weight_bits=10**6))}, SW + ["s.bin"], 2,
                                "bad configuration block: invalid hardware configuration 'fpga-micro': weight_bits"),
    "bin-cfg-huge-tile": ({"s.bin": forge_bin(micro(rows=4096, cols=4096, n_arrays=10**6))}, SW + ["s.bin"], 2,
                          "weight cells"),
    "bin-cfg-base-list": ({"s.bin": forge_bin({**micro(), "base": ["x"]})}, SW + ["s.bin"], 2,
                          "base must be a string"),
    "bin-cfg-nan": ({"s.bin": forge_bin(micro(cost={"t_adc_ns": float("nan")}))}, SW + ["s.bin"], 2,
                    "cost.t_adc_ns must be a finite number"),
    "bin-cfg-not-json": ({"s.bin": forge_bin(b"\xff{not json")}, SW + ["s.bin"], 2,
                         "bad configuration block: not UTF-8 JSON"),
    "bin-command-count": ({"s.bin": forge_bin(micro(), ncmds=9)}, SW + ["s.bin"], 2,
                          "header says 9 commands, the body holds 5"),
    "bin-config-length": ({"s.bin": forge_bin(micro(), jlen=2**31)}, SW + ["s.bin"], 2,
                          "configuration block length 2147483648 exceeds"),
    "bin-version": ({"s.bin": forge_bin(micro(), version=2)}, SW + ["s.bin"], 2, "unsupported format version 2"),
    "bin-truncated": ({"s.bin": GOOD_BIN[:-3]}, SW + ["s.bin"], 2, "body truncated"),
    "bin-bad-magic": ({"s.bin": b"NOTASTRM" + GOOD_BIN[8:]}, SW + ["s.bin"], 2, "bad magic"),
    # ---- JSONL dumps --------------------------------------------------------------------------------------------
    "jsonl-op-list": ({"s.jsonl": jsonl_with(0, op=["WRITE_W"])}, SW + ["s.jsonl"], 2,
                      "s.jsonl:2: command 0: unknown opcode a list"),
    "jsonl-op-number": ({"s.jsonl": jsonl_with(3, op=5)}, SW + ["s.jsonl"], 2,
                        "s.jsonl:5: command 3: unknown opcode 5"),
    "jsonl-data-null": ({"s.jsonl": jsonl_with(0, data=None)}, SW + ["s.jsonl"], 2,
                        ":2: command 0: WRITE_W data must be a list of integers, not null"),
    "jsonl-data-strings": ({"s.jsonl": jsonl_with(1, data=["-5"])}, SW + ["s.jsonl"], 2,
                           ":3: command 1: LOAD_IN data[0] must be an integer, not '-5'"),
    "jsonl-data-nan": ({"s.jsonl": jsonl_with(1, data=[float("nan")])}, SW + ["s.jsonl"], 2,
                       "LOAD_IN data[0] must be an integer, not nan"),
    "jsonl-data-nested": ({"s.jsonl": jsonl_with(1, data=[[-5]])}, SW + ["s.jsonl"], 2,
                          "LOAD_IN data[0] must be an integer, not a list of 1 item"),
    "jsonl-field-float": ({"s.jsonl": jsonl_with(3, addr=0.0)}, SW + ["s.jsonl"], 2,
                          "READ field addr must be an integer, not 0.0"),
    "jsonl-field-digits": ({"s.jsonl": jsonl_with(3, count="1")}, SW + ["s.jsonl"], 2,
                           "READ field count must be an integer, not '1'"),
    "jsonl-header-weight-bits": ({"s.jsonl": jsonl_with(header={"hw": micro(weight_bits=10**6)})},
                                 SW + ["s.jsonl"], 2, "s.jsonl:1: bad configuration"),
    "jsonl-header-not-object": ({"s.jsonl": '["cim-stream-jsonl"]\n'}, SW + ["s.jsonl"], 2,
                                "s.jsonl:1: not a CIM command stream dump"),
    "jsonl-not-utf8": ({"s.jsonl": GOOD_JSONL.encode().replace(b'"HALT"', b'"H\xc0LT"')}, SW + ["s.jsonl"], 2,
                       "s.jsonl:6: not UTF-8 text"),
    "jsonl-empty": ({"s.jsonl": ""}, SW + ["s.jsonl"], 2, "s.jsonl: empty file"),
    # ---- sw_model run: paths and options --------------------------------------------------------------------------
    "sw-missing-stream": ({}, SW + ["nope.bin"], 2, "cannot read command stream 'nope.bin': No such file"),
    "sw-stream-is-folder": ({"d.bin/": None}, SW + ["d.bin"], 2, "it is a folder"),
    "sw-unknown-format": ({"notes.txt": "hello\n"}, SW + ["notes.txt"], 2,
                          "not a command stream (expected a .bin container or a .jsonl dump)"),
    "sw-out-under-file": ({"s.bin": GOOD_BIN}, SW + ["s.bin", "--out", "s.bin/res.json"], 2, "s.bin is not a folder"),
    "sw-out-in-proc": ({"s.bin": GOOD_BIN}, SW + ["s.bin", "--out", "/proc/res.json"], 2, "cannot write in /proc"),
    "sw-out-exists": ({"s.bin": GOOD_BIN, "res.json": "mine\n"}, SW + ["s.bin", "--out", "res.json"], 2,
                      "res.json exists; choose another name or pass --force"),
    "sw-bad-option": ({"s.bin": GOOD_BIN}, SW + ["s.bin", "--bogus"], 2, "unrecognized arguments: --bogus"),
    # The stream ran and the machine stopped with an error: status 1 (like a failing test), not 2.
    "sw-machine-error": ({"e.bin": pack_stream(MICRO, Isa.of(MICRO).encode(ERR_CMDS), commands=len(ERR_CMDS))},
                         SW + ["e.bin"], 1, "error: command 2: BAD_OUT_ADDR"),
    # ---- docgen -----------------------------------------------------------------------------------------------------
    "docgen-out-is-folder": ({"d/": None}, ["-m", "cimisa.docgen", "--out", "d"], 2, "d is a folder"),
    "docgen-out-exists": ({"isa.md": "mine\n"}, ["-m", "cimisa.docgen", "--out", "isa.md"], 2,
                          "isa.md exists; choose another name or pass --force"),
}


def _write_inputs(tmp_path, files) -> set:
    for name, content in files.items():
        if name.endswith("/"):
            (tmp_path / name).mkdir()
        elif isinstance(content, bytes):
            (tmp_path / name).write_bytes(content)
        else:
            (tmp_path / name).write_text(content)
    return {p.relative_to(tmp_path) for p in tmp_path.rglob("*")}


def _snapshot(tmp_path) -> dict:
    return {p.relative_to(tmp_path): (p.read_bytes() if p.is_file() else None) for p in tmp_path.rglob("*")}


def _run(tmp_path, argv):
    return subprocess.run([sys.executable, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=10)


@pytest.mark.parametrize("files, argv, status, needle", CASES.values(), ids=CASES.keys())
def test_bad_input_gives_one_error_line(tmp_path, files, argv, status, needle):
    _write_inputs(tmp_path, files)
    before = _snapshot(tmp_path)
    r = _run(tmp_path, argv)
    assert r.returncode == status, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0][7:].strip(), r.stderr
    for part in (needle if isinstance(needle, tuple) else (needle,)):
        assert part in lines[0], (part, lines[0])
    assert _snapshot(tmp_path) == before          # nothing written, nothing changed


def test_sw_model_exit_status_and_out(tmp_path):
    """0 when the stream halts (``--out`` written), 1 when the machine stops with an error (``--out`` written
    too), 2 for unusable input; an existing ``--out`` is replaced only with ``--force``."""
    _write_inputs(tmp_path, {"s.bin": GOOD_BIN, "s.jsonl": GOOD_JSONL, "e.bin": pack_stream(
        MICRO, Isa.of(MICRO).encode(ERR_CMDS), commands=len(ERR_CMDS))})
    r = _run(tmp_path, SW + ["s.bin", "--out", "res.json"])
    assert r.returncode == 0 and r.stderr == "" and "state HALTED" in r.stdout
    assert json.loads((tmp_path / "res.json").read_text())["results"] == [-15]
    r = _run(tmp_path, SW + ["s.jsonl", "--out", "res.json"])
    assert r.returncode == 2 and "exists" in r.stderr
    r = _run(tmp_path, SW + ["e.bin", "--out", "res.json", "--force"])
    assert r.returncode == 1 and r.stderr == "error: command 2: BAD_OUT_ADDR\n"
    assert json.loads((tmp_path / "res.json").read_text())["error"] == "BAD_OUT_ADDR"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.bin", "res.json", "s.bin", "s.jsonl"]
    r = _run(tmp_path, SW + ["--help"])
    assert r.returncode == 0 and "exit status" in r.stdout and "stopped with an error" in r.stdout


def test_check_config_prints_a_summary(tmp_path):
    _write_inputs(tmp_path, {"c.toml": TOML_BASE + "adcs_per_array = 8\n"})
    r = _run(tmp_path, CHECK + ["c.toml"])
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith("bad: valid (r32c32x96_w4i8a9") and "stream words of 96 bits" in r.stdout
    assert "chip: 96 tiles of 1 array (tiers); network: ideal" in r.stdout
    assert "768 ADCs in all" in r.stdout      # 96 arrays of 8 ADCs each
    r = _run(tmp_path, CHECK + ["chip-tiny-4t"])
    assert r.returncode == 0 and "chip: 4 tiles of 24 arrays (tiers); network: mesh of 2 x 2" in r.stdout
    assert "ADC bank per tile: 4 (1 MVM at a time x 4 ADCs per array); 16 ADCs in all" in r.stdout
    r = _run(tmp_path, CHECK + ["fpga-micro", "--json"])
    assert r.returncode == 0 and json.loads(r.stdout) == MICRO.to_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]
