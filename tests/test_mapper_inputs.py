"""Bad input for every mapper command, through the real command line (``python -m mapper ...``).

Each case runs in a subprocess from a scratch folder outside the repository that holds pre-made bad inputs
(broken checkpoint folders, d2s folders with bad JSON or factors, files that are not UTF-8, a user's folder)
and checks the kit's contract for user errors: exit status 2, exactly one ``error:`` line on stderr naming the
problem, no traceback, nothing written or left behind (the folder listing, hidden files included, is
unchanged), the user's file untouched, and an answer within 10 seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 10
#: Cases that must build a transformers model to find the problem (import of its modelling code, ~5 s on an
#: idle machine, twice that on a shared one).
HEAVY = 30
KEEP = b"the user's data\n"

# Cheap arguments for each command (the output check comes first, so a bad --out costs nothing).
BUILD = ["build", "--model", "tiny-bert", "--hw", "fpga-tiny", "--no-weights", "--no-plots"]
D2S = ["d2s", "--model", "tiny-bert", "--nblocks", "4", "--no-progress"]
REPRODUCE = ["reproduce", "--models", "tiny-bert", "--nblocks", "4", "--hw", "fpga-tiny"]
RUN = ["run", "--model", "tiny-bert", "--text", "hello", "--no-progress"]


# ---- the scratch folder ---------------------------------------------------------------------------------------

def _save_checkpoint(folder: Path) -> None:
    import torch
    from transformers import BertConfig, BertModel
    cfg = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                     vocab_size=100, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(folder)


def _variant(src: Path, dst: Path, *, tensors=None, config=None, raw_config: bytes | None = None,
             weights: bytes | None = None, drop: tuple[str, ...] = ()) -> None:
    """Copy checkpoint or d2s folder ``src`` to ``dst`` and break it."""
    from safetensors.torch import load_file, save_file
    shutil.copytree(src, dst)
    for name in drop:
        (dst / name).unlink()
    st = next(dst.glob("*.safetensors"), None)
    if tensors is not None:
        t = load_file(str(st))
        tensors(t)
        save_file(t, str(st), metadata={"format": "pt"})
    if weights is not None:
        st.write_bytes(weights)
    js = dst / ("monarch.json" if (dst / "monarch.json").exists() else "config.json")
    if config is not None:
        meta = json.loads(js.read_text())
        config(meta)
        js.write_text(json.dumps(meta))
    if raw_config is not None:
        js.write_bytes(raw_config)


def _set(key, value):
    return lambda d: d.__setitem__(key, value)


def _del(key):
    return lambda d: d.pop(key)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A scratch folder with every bad input the cases name (relative paths)."""
    import torch

    from mapper.cli_d2s import run_d2s
    w = tmp_path_factory.mktemp("inputs")
    ck = w / "ck"
    _save_checkpoint(ck)
    q = "encoder.layer.0.attention.self.query.weight"

    def nan(t):
        t[q][0, 0] = float("nan")

    _variant(ck, w / "ck_missing", tensors=lambda t: t.pop(q))
    _variant(ck, w / "ck_unrelated", tensors=lambda t: (t.clear(), t.update(foo=torch.zeros(3))))
    _variant(ck, w / "ck_renamed", tensors=lambda t: t.update({f"x.{k}": t.pop(k) for k in list(t)
                                                               if "encoder" in k}))
    _variant(ck, w / "ck_shape", tensors=lambda t: t.update({q: torch.zeros(32, 16)}))
    _variant(ck, w / "ck_nan", tensors=nan)
    _variant(ck, w / "ck_truncated", weights=(ck / "model.safetensors").read_bytes()[:400])
    _variant(ck, w / "ck_garbage", weights=b"\x00" * 10)
    _variant(ck, w / "ck_noconfig", drop=("config.json",))
    _variant(ck, w / "ck_noweights", drop=("model.safetensors",))
    _variant(ck, w / "ck_badjson", raw_config=b'{"model_type": "bert", ')
    _variant(ck, w / "ck_latin1", raw_config='{"model_type": "bert", "name": "caf\u00e9"}'.encode("latin-1"))
    _variant(ck, w / "ck_list", raw_config=b"[1, 2]")
    _variant(ck, w / "ck_type", config=_set("model_type", "t5-gigantic"))
    _variant(ck, w / "ck_notype", config=_del("model_type"))
    _variant(ck, w / "ck_heads", config=_set("num_attention_heads", 3))       # 32 not divisible by 3
    _variant(ck, w / "ck_layers", config=_set("num_hidden_layers", 5000))     # refused before it is built
    (w / "empty").mkdir()

    d = w / "d2s"
    run_d2s("tiny-bert", 4, d, show_progress=False)
    r0 = "encoder.layer.0.attention.self.query.R"
    _variant(d, w / "d_nblocks_str", config=_set("nblocks", "four"))
    _variant(d, w / "d_nblocks_zero", config=_set("nblocks", 0))
    _variant(d, w / "d_nblocks_8", config=_set("nblocks", 8))
    _variant(d, w / "d_seq_len", config=_set("seq_len", "long"))
    _variant(d, w / "d_family", config=_set("family", "rnn"))
    _variant(d, w / "d_role", config=lambda m: m["matmuls"][1].update(role="query"))
    _variant(d, w / "d_empty", config=_set("matmuls", []))
    _variant(d, w / "d_matmuls_str", config=_set("matmuls", "all"))
    _variant(d, w / "d_many", config=lambda m: (m.update(nblocks=-1, family=3),
                                                m["matmuls"][2].update(out_features="x")))
    _variant(d, w / "d_hidden", config=lambda m: m["hf_config"].update(hidden_size="big"))
    _variant(d, w / "d_format", config=_del("format"))
    _variant(d, w / "d_version", config=_set("format_version", 99))
    _variant(d, w / "d_nosource", config=_del("source"))
    _variant(d, w / "d_unfactored", config=lambda m: m["matmuls"][1].update(factored=False))
    _variant(d, w / "d_badjson", raw_config=b"{")
    _variant(d, w / "d_latin1", raw_config=b'{"format": "caf\xe9"}')
    _variant(d, w / "d_nan", tensors=lambda t: t[r0].view(-1).__setitem__(0, float("nan")))
    _variant(d, w / "d_inf", tensors=lambda t: t[r0].view(-1).__setitem__(0, float("inf")))
    _variant(d, w / "d_int", tensors=lambda t: t.update({r0: t[r0].to(torch.int64)}))
    _variant(d, w / "d_drop", tensors=lambda t: t.pop(r0))
    _variant(d, w / "d_truncated", weights=(d / "monarch.safetensors").read_bytes()[:200])
    _variant(d, w / "d_source", config=_set("source", str(w / "no-such-model")))

    (w / "afile").write_bytes(KEEP)
    (w / "user").mkdir()
    (w / "user" / "keep.txt").write_bytes(KEEP)
    (w / "cfg").mkdir()
    (w / "cfg" / "hw.toml").write_bytes(KEEP)
    (w / "latin1.toml").write_bytes('name = "caf\u00e9"\n'.encode("latin-1"))
    # a chip of 2 tiles of 24 arrays: tiny-bert's linear placement (64 arrays of 32 x 32) does not fit
    (w / "small-chip.toml").write_text('base = "chip-tiny-4t"\nname = "small"\nn_arrays = 48\n')
    return w


def _listing(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        out += [str(rel / n) + "/" for n in dirnames] + [str(rel / n) for n in filenames]
    return sorted(out)


def _mapper(args, cwd: Path, timeout: float = TIMEOUT):
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "mapper", *args], cwd=cwd, env=env, capture_output=True,
                       timeout=timeout)
    return r, time.monotonic() - t0


def _check_user_error(work: Path, args, needle: str, timeout: float) -> None:
    before = _listing(work)
    r, seconds = _mapper(args, work, timeout)
    err = r.stderr.decode("utf-8", "replace")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert r.returncode == 2, f"exit {r.returncode}: {err[-2000:]}"
    assert "Traceback" not in err, err[-2000:]
    assert len(lines) == 1, err[-2000:]
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]
    assert _listing(work) == before, "files were written or left behind"
    assert (work / "user" / "keep.txt").read_bytes() == KEEP and (work / "afile").read_bytes() == KEEP
    assert seconds < timeout


# ---- the cases ------------------------------------------------------------------------------------------------

def case(args, needle, *, id, heavy=False):
    """One row of the table: the command line, a substring of the expected error line, and the time limit."""
    return pytest.param(args, needle, HEAVY if heavy else TIMEOUT, id=id)


CHECKPOINTS = [   # (folder, needle, heavy): every command that loads the weights refuses the same way
    ("ck_missing", "lacks 1 tensor the bert model needs: encoder.layer.0.attention.self.query.weight", True),
    ("ck_unrelated", "lacks 21 tensors", True),
    ("ck_renamed", "encoder.layer.0", True),
    ("ck_shape", "wrong shape: encoder.layer.0.attention.self.query.weight [32, 16]", True),
    ("ck_nan", "NaN", True),
    ("ck_heads", "cannot build", True),
    ("ck_layers", "lacks the tensors of 4999 of the 5000 transformer layers", False),
    ("ck_truncated", "truncated", False),
    ("ck_garbage", "not a safetensors file", False),
    ("ck_noconfig", "config.json", False),
    ("ck_noweights", "no *.safetensors", False),
    ("ck_badjson", "not valid JSON", False),
    ("ck_latin1", "not UTF-8", False),
    ("ck_list", "JSON object", False),
    ("ck_type", "unsupported model_type 't5-gigantic'", False),
    ("ck_notype", "no model_type", False),
    ("empty", "neither config.json", False),
]
CHECKPOINT_CASES = [case(["d2s", "--model", f, "--nblocks", "4", "--out", "o"], n, id=f"d2s-{f}", heavy=h)
                    for f, n, h in CHECKPOINTS]
CHECKPOINT_CASES += [
    case(["build", "--model", "ck_missing", "--hw", "fpga-tiny", "--no-plots", "--out", "o"],
         "encoder.layer.0.attention.self.query.weight", id="build-ck_missing", heavy=True),
    case(["run", "--model", "ck_nan", "--text", "x", "--no-progress"], "NaN", id="run-ck_nan", heavy=True),
    case(["build", "--model", "ck_truncated", "--no-weights", "--out", "o"], "truncated",
         id="build-noweights-ck_truncated"),
    case(["run", "--model", "ck_badjson", "--text", "x"], "not valid JSON", id="run-ck_badjson"),
]

D2S_FOLDERS = [
    ("d_nblocks_str", 'nblocks: must be a positive integer, not "four"'),
    ("d_nblocks_zero", "nblocks: must be a positive integer, not 0"),
    ("d_nblocks_8", "do not fit nblocks 8"),
    ("d_seq_len", "seq_len: must be a positive integer"),
    ("d_family", 'family: must be one of bert, gpt2, bart, opt, llama, not "rnn"'),
    ("d_role", 'role: must be one of'),
    ("d_empty", "has no matmuls"),
    ("d_matmuls_str", "matmuls: must be a list"),
    ("d_many", "3 problems"),
    ("d_hidden", "hf_config.hidden_size"),
    ("d_format", "not a cimkit-monarch file"),
    ("d_version", "format version 99"),
    ("d_nosource", "source: missing"),
    ("d_unfactored", "factored: false, but the matmul is mapped"),
    ("d_badjson", "not valid JSON"),
    ("d_latin1", "not UTF-8"),
]
D2S_CASES = [case(["build", "--model", f, "--no-plots", "--out", "o"], n, id=f"build-{f}")
             for f, n in D2S_FOLDERS]
D2S_CASES += [
    case(["run", "--model", "d_family", "--text", "x"], "family", id="run-d_family"),
    case(["run", "--model", "d_nblocks_str", "--text", "x"], "nblocks", id="run-d_nblocks_str"),
    case(["d2s", "--model", "d2s", "--nblocks", "4", "--out", "o"], "already a d2s output folder",
         id="d2s-of-d2s"),
    case(["reproduce", "--models", "tiny-bert,d_role", "--out", "o"], "role", id="reproduce-d_role",
         heavy=True),
]
FACTOR_CASES = [   # the factors themselves: named, in build and run alike
    case(["build", "--model", "d_nan", "--hw", "fpga-tiny", "--no-plots", "--out", "o"],
         "encoder.layer.0.attention.self.query.R: 1 NaN", id="build-d_nan"),
    case(["run", "--model", "d_nan", "--text", "x", "--no-progress"],
         "encoder.layer.0.attention.self.query.R: 1 NaN", id="run-d_nan"),
    case(["run", "--model", "d_inf", "--text", "x", "--no-progress"], "infinite", id="run-d_inf"),
    case(["build", "--model", "d_int", "--hw", "fpga-tiny", "--no-plots", "--out", "o"],
         "not floating point", id="build-d_int"),
    case(["build", "--model", "d_drop", "--hw", "fpga-tiny", "--no-plots", "--out", "o"],
         "query.R: missing", id="build-d_drop"),
    case(["build", "--model", "d_truncated", "--hw", "fpga-tiny", "--no-plots", "--out", "o"],
         "corrupt", id="build-d_truncated"),
    case(["run", "--model", "d_source", "--text", "x", "--no-progress"], "no-such-model",
         id="run-d_source"),
    case(["build", "--model", "d2s", "--nblocks", "8", "--no-weights", "--out", "o"], "nblocks 4",
         id="build-d2s-other-nblocks"),
]

MODEL_CASES = [
    case(["build", "--model", "no-such-model", "--out", "o"], "unknown model 'no-such-model'",
         id="build-unknown"),
    case(["build", "--model", "afile", "--out", "o"], "is a file", id="build-model-is-file"),
    case(["build", "--model", "./missing/folder", "--out", "o"], "does not exist", id="build-no-folder"),
    case(["run", "--model", "gpt2", "--text", "x"], "shape-only", id="run-shape-only"),
    case(["run", "--model", "tiny-bart", "--text", "x"], "families", id="run-bart"),
    case(["d2s", "--model", "bert-large", "--nblocks", "4", "--out", "o"], "shape-only",
         id="d2s-shape-only"),
    case(["d2s", "--model", "tiny-bert", "--nblocks", "23", "--out", "o"], "last block empty",
         id="d2s-nblocks-misfit", heavy=True),
    case(["reproduce", "--models", "tiny-bert,nope", "--out", "o"], "unknown model 'nope'",
         id="reproduce-unknown"),
    case(["reproduce", "--models", ",", "--out", "o"], "no model names", id="reproduce-no-models"),
    case(["reproduce", "--models", "tiny-bert", "--nblocks", "100", "--out", "o"], "nblocks 100",
         id="reproduce-nblocks", heavy=True),
    case([*BUILD, "--hw", "no-such-hw", "--out", "o"], "unknown hardware configuration",
         id="build-unknown-hw"),
    case([*BUILD, "--hw", "latin1.toml", "--out", "o"], "UTF-8", id="build-hw-not-utf8"),
    case([*BUILD, "--hw", "user", "--out", "o"], "folder", id="build-hw-is-folder"),
    case(["build", "--model", "tiny-bert", "--hw", "fpga-tiny", "--arrays", "100000", "--out", "o"],
         "exceeds", id="build-arrays-beyond-hw", heavy=True),
]

OPTION_CASES = [
    case([], "required: COMMAND", id="no-command"),
    case(["frobnicate"], "invalid choice: 'frobnicate'", id="unknown-command"),
    case(["build"], "required: --model", id="build-no-model"),
    case([*BUILD, "--bogus"], "unrecognized arguments: --bogus", id="build-unknown-option"),
    case([*BUILD, "--nblocks", "-3"], "--nblocks: must be a positive integer", id="build-nblocks-neg"),
    case([*BUILD, "--nblocks", "0"], "--nblocks", id="build-nblocks-zero"),
    case([*BUILD, "--nblocks", "four"], "--nblocks: must be an integer", id="build-nblocks-text"),
    case([*BUILD, "--arrays", "0"], "--arrays", id="build-arrays-zero"),
    case([*BUILD, "--arrays", "10000000000"], "--arrays: must be an integer in 1..",
         id="build-arrays-huge"),
    case([*BUILD, "--adcs", "-1"], "--adcs", id="build-adcs-neg"),
    case([*BUILD, "--strategy", "best"], "--strategy: invalid choice: 'best'", id="build-strategy"),
    case([*BUILD, "--cost", "cheap"], "--cost", id="build-cost"),
    case([*BUILD, "--model", b"caf\xe9"], "--model: is not valid UTF-8", id="build-model-not-utf8"),
    case([*BUILD, "--budget", "bogus"], "--budget: invalid choice: 'bogus'", id="build-budget"),
    case([*BUILD, "--reference", "best"], "--reference: invalid choice: 'best'", id="build-reference"),
    case([*BUILD, "--row-steps", "0"], "--row-steps: must be a positive integer", id="build-row-steps-zero"),
    case([*BUILD, "--strategy", "dense", "--row-steps", "3", "--out", "o"], "row steps must divide the rows of "
         "every block (8): one of 1, 2, 4, 8, not 3", id="build-row-steps-not-divisor"),
    case([*BUILD, "--prefill-tokens", "0"], "--prefill-tokens: must be an integer in 1..",
         id="build-prefill-tokens-zero"),
    case([*BUILD, "--decode-tokens", "-1"], "--decode-tokens: must be an integer in 0..",
         id="build-decode-tokens-neg"),
    case([*BUILD, "--chip", "chip-tiny-4t", "--out", "o"], "--hw fpga-tiny and --chip chip-tiny-4t name "
         "different configurations", id="build-hw-and-chip"),
    case(["build", "--model", "tiny-bert", "--chip", "small-chip.toml", "--strategy", "linear", "--no-weights",
          "--no-plots", "--out", "o"], "linear needs 64 arrays but the chip small has 48 (2 tiles of 24); use a "
         "bigger chip", id="build-chip-too-small"),
    case([*D2S, "--out", "o", "--seed", "-1"], "--seed", id="d2s-seed-neg"),
    case([*D2S, "--out", "o", "--seed", str(2**64)], "--seed", id="d2s-seed-huge"),
    case([*D2S, "--out", "o", "--steps", "-1"], "--steps", id="d2s-steps-neg"),
    case([*D2S, "--out", "o", "--sentences", "0"], "--sentences", id="d2s-sentences-zero"),
    case([*D2S, "--out", "o", "--threads", "0"], "--threads", id="d2s-threads-zero"),
    case(["d2s", "--model", "tiny-bert", "--out", "o", "--nblocks"], "--nblocks: expected one argument",
         id="d2s-nblocks-no-value"),
    case([*D2S, "--out", "o", "--nblocks", "-4"], "--nblocks", id="d2s-nblocks-neg"),
    case([*REPRODUCE, "--out", "o", "--nblocks", "0"], "--nblocks", id="reproduce-nblocks-zero"),
    case([*RUN, "--strategy", "fastest"], "--strategy: invalid choice: 'fastest'", id="run-strategy"),
    case([*RUN, "--text", b"\xff\xfe broken"], "--text: is not valid UTF-8", id="run-text-not-utf8"),
    case(["run", "--model", "tiny-bert", "--text", "   "], "--text: must be a non-empty",
         id="run-text-blank"),
    case([*RUN, "--adc-bits", "0"], "--adc-bits", id="run-adc-bits-zero"),
    case([*RUN, "--adc-bits", "many"], "--adc-bits", id="run-adc-bits-text"),
    case([*RUN, "--gen-tokens", "-1"], "--gen-tokens", id="run-gen-tokens-neg"),
    case([*RUN, "--nblocks", "0"], "--nblocks", id="run-nblocks-zero"),
    case([*RUN, "--adc-rule", "magic"], "--adc-rule", id="run-adc-rule"),
    case([*RUN, "--noise", "prog=abc"], "noise", id="run-noise"),
]

# Output paths: every command refuses them before any work, and writes nothing anywhere.
BAD_OUTS = [
    ("afile/sub", "is not a folder"),
    ("/proc/kit-out", "cannot write in /proc"),
    (".", "refusing to replace the current folder"),
    ("..", "refusing to replace the current folder"),
    ("afile", "exists and is not a folder"),
    ("user", "was not written by the kit"),
    ("", "--out: must not be empty"),
    (b"o\xff", "--out: is not valid UTF-8"),
]
COMMANDS = {"build": BUILD, "d2s": D2S, "reproduce": REPRODUCE, "run": RUN}
OUT_CASES = [case([*argv, "--out", out], needle, id=f"{cmd}-out-{out!r}")
             for cmd, argv in COMMANDS.items() for out, needle in BAD_OUTS]
OUT_CASES += [
    case(["build", "--model", "d2s", "--no-weights", "--out", "d2s"], "holds the model",
         id="build-out-is-model"),
    case(["build", "--model", "d2s", "--no-weights", "--out", "d2s", "--force"], "holds the model",
         id="build-out-is-model-force"),
    case(["run", "--model", "tiny-bert", "--text", "x", "--hw", "cfg/hw.toml", "--out", "cfg",
                  "--force"], "holds the input file cfg/hw.toml", id="run-hw-inside-out"),
    case(["d2s", "--model", "ck", "--nblocks", "4", "--out", "ck", "--force"], "holds the model ck",
         id="d2s-out-is-model-force"),
]


@pytest.mark.parametrize("args,needle,timeout", CHECKPOINT_CASES + D2S_CASES + FACTOR_CASES + MODEL_CASES + OPTION_CASES
                         + OUT_CASES)
def test_user_error(work, args, needle, timeout):
    _check_user_error(work, args, needle, timeout)


def test_enough_cases():
    n = len(CHECKPOINT_CASES + D2S_CASES + FACTOR_CASES + MODEL_CASES + OPTION_CASES + OUT_CASES)
    assert n >= 60


# ---- what must work -------------------------------------------------------------------------------------------

def test_build_reruns_into_its_own_folder(tmp_path):
    """The default output folder (build-<model>-<strategy>) is kit-marked, so running again replaces it."""
    from cimisa.fsutil import MARKER
    args = ["build", "--model", "tiny-bert", "--hw", "fpga-tiny", "--no-weights", "--no-plots"]
    for _ in range(2):
        r, _ = _mapper(args, tmp_path, timeout=120)
        assert r.returncode == 0, r.stderr.decode()
    out = tmp_path / "build-tiny-bert-auto"
    assert _listing(tmp_path) == sorted(["build-tiny-bert-auto/", f"build-tiny-bert-auto/{MARKER}",
                                         "build-tiny-bert-auto/mapping.json", "build-tiny-bert-auto/report.json"])
    assert json.loads((out / "report.json").read_text())["model"] == "tiny-bert"


def test_force_replaces_a_user_folder(tmp_path):
    from cimisa.fsutil import MARKER
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "keep.txt").write_bytes(KEEP)
    r, _ = _mapper([*BUILD, "--out", "user", "--force"], tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    assert sorted(p.name for p in (tmp_path / "user").iterdir()) == [MARKER, "mapping.json", "report.json"]
    assert _listing(tmp_path) == ["user/", f"user/{MARKER}", "user/mapping.json", "user/report.json"]


def test_help_mentions_force():
    for cmd in COMMANDS:
        r, _ = _mapper([cmd, "--help"], ROOT, timeout=60)
        assert r.returncode == 0
        assert b"--force" in r.stdout and b"replace an existing output folder the kit did not write" in \
            b" ".join(r.stdout.split())
