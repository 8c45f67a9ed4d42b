"""mapper.d2s: Monarch layout, optimal projection, MonarchLinear, model replacement, output folder, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cimisa.errors import ModelError, ShapeError
from cimisa.fsutil import MARKER
from compiler.geometry import monarch_shape
from mapper.d2s import (
    MonarchLinear,
    build_monarch_model,
    load_monarch_dir,
    monarch_forward,
    monarch_to_dense,
    project,
    project_model,
    project_reference,
    relative_error,
    replace_with_monarch,
)
from mapper.d2s.calibrate import CalibConfig, calibrate, fit_monarch
from mapper.d2s.fit import objective as _objective
from mapper.d2s.monarch import _monarch_to_dense_via_forward
from mapper.evaluate.metrics import compare_embeddings
from mapper.evaluate.textdata import all_sentences, calibration_sentences, heldout_sentences
from mapper.models import get_weight, load_hf_model, load_model_spec

REPO = Path(__file__).resolve().parents[1]

# (out, in, nblocks): square k = sqrt(n), k < sqrt(n) (rank > 1), k > sqrt(n) (rank-0 slices), both
# rectangular orientations, and nblocks that divide neither dimension.
SHAPES = [(64, 64, 8), (64, 64, 4), (64, 64, 2), (64, 64, 16), (64, 64, 1), (48, 80, 4), (80, 48, 4),
          (100, 37, 5), (37, 100, 6), (12, 10, 3), (96, 32, 8), (32, 96, 8)]


def _random_factors(out_f, in_f, k, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    shp = monarch_shape(out_f, in_f, k)
    return torch.randn(shp.r_shape, generator=g, dtype=dtype), torch.randn(shp.l_shape, generator=g, dtype=dtype)


def _fly_reference(x, R, L, out_f):
    """fly's blockdiag_butterfly_multiply, written with explicit index loops (the convention's definition)."""
    k, q, p = R.shape
    l, s, r = L.shape
    xp = torch.nn.functional.pad(x, (0, k * p - x.shape[-1]))
    out1 = torch.zeros(k * q, dtype=x.dtype)
    for i in range(k):
        for j in range(q):
            out1[i * q + j] = sum(R[i, j, m] * xp[i * p + m] for m in range(p))
    y = torch.zeros(l * s, dtype=x.dtype)
    for a in range(l):
        for t in range(s):
            y[t * l + a] = sum(L[a, t, c] * out1[c * l + a] for c in range(r))
    return y[:out_f]


def test_shapes_follow_fly():
    shp = monarch_shape(4096, 1024, 32)
    assert (shp.in_blk, shp.out_blk) == (32, 128)
    assert shp.r_shape == (32, 32, 32) and shp.l_shape == (32, 128, 32)  # in_ext < out_ext
    shp = monarch_shape(1024, 4096, 32)
    assert shp.r_shape == (32, 32, 128) and shp.l_shape == (32, 32, 32)
    shp = monarch_shape(10, 12, 3)
    assert (shp.in_ext, shp.out_ext) == (12, 12)
    assert monarch_shape(1024, 1024, 32).params == 2 * 1024 * 32


@pytest.mark.parametrize("bad", [0, -1, 65, 23])
def test_unusable_nblocks(bad):
    with pytest.raises(ShapeError):
        monarch_shape(64, 64, bad)


@pytest.mark.parametrize("out_f,in_f,k", [(12, 10, 3), (10, 12, 3), (9, 8, 2), (16, 16, 4)])
def test_forward_matches_index_definition(out_f, in_f, k):
    R, L = _random_factors(out_f, in_f, k)
    x = torch.randn(in_f, dtype=torch.float64)
    assert torch.allclose(monarch_forward(x, R, L, out_f), _fly_reference(x, R, L, out_f), atol=1e-10)


@pytest.mark.parametrize("out_f,in_f,k", SHAPES)
def test_dense_equals_forward_of_identity(out_f, in_f, k):
    R, L = _random_factors(out_f, in_f, k)
    assert torch.allclose(monarch_to_dense(R, L, out_f, in_f), _monarch_to_dense_via_forward(R, L, out_f, in_f),
                          atol=1e-12)


@pytest.mark.parametrize("out_f,in_f,k", SHAPES)
def test_exact_monarch_recovered(out_f, in_f, k):
    R, L = _random_factors(out_f, in_f, k, dtype=torch.float32)
    M = monarch_to_dense(R, L, out_f, in_f)
    R2, L2 = project(M, k)
    assert relative_error(M, R2, L2) <= 1e-5
    R3, L3 = project_reference(M, k)
    assert relative_error(M, R3, L3) <= 1e-5


@pytest.mark.parametrize("out_f,in_f,k", SHAPES)
def test_batched_equals_reference(out_f, in_f, k):
    W = torch.randn(out_f, in_f, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    Rb, Lb = project(W, k)
    Rr, Lr = project_reference(W, k)
    assert Rb.shape == Rr.shape and Lb.shape == Lr.shape
    Mb, Mr = monarch_to_dense(Rb, Lb, out_f, in_f), monarch_to_dense(Rr, Lr, out_f, in_f)
    assert torch.allclose(Mb, Mr, atol=1e-8)


def test_batched_float32_large_matches_reference():
    W = torch.randn(256, 192, generator=torch.Generator().manual_seed(2))
    assert abs(relative_error(W, *project(W, 16)) - relative_error(W, *project_reference(W, 16))) < 1e-5


@pytest.mark.parametrize("out_f,in_f,k", [(16, 16, 4), (16, 16, 2), (12, 20, 4), (20, 12, 4), (13, 11, 3)])
def test_no_perturbation_lowers_error(out_f, in_f, k):
    g = torch.Generator().manual_seed(3)
    W = torch.randn(out_f, in_f, dtype=torch.float64, generator=g)
    R, L = project(W, k)
    base = float((W - monarch_to_dense(R, L, out_f, in_f)).norm())
    for trial in range(30):
        scale = [1e-1, 1e-2, 1e-4][trial % 3]
        dR = torch.randn(R.shape, dtype=torch.float64, generator=g) * scale
        dL = torch.randn(L.shape, dtype=torch.float64, generator=g) * scale
        for R2, L2 in ((R + dR, L), (R, L + dL), (R + dR, L + dL)):
            err = float((W - monarch_to_dense(R2, L2, out_f, in_f)).norm())
            assert err >= base - 1e-9 * max(base, 1.0)


def test_project_rejects_bad_input():
    with pytest.raises(ShapeError):
        project(torch.randn(8), 2)
    with pytest.raises(ShapeError):
        project(torch.full((8, 8), float("nan")), 2)
    with pytest.raises(ShapeError):
        project(torch.randn(8, 8), 9)


def test_monarch_linear_equals_dense_product():
    R, L = _random_factors(48, 80, 4, dtype=torch.float32)
    bias = torch.randn(48)
    layer = MonarchLinear(R, L, 48, 80, bias)
    x = torch.randn(2, 3, 80)
    W = monarch_to_dense(R, L, 48, 80)
    assert torch.allclose(layer(x), x @ W.t() + bias, atol=1e-5)
    layer.dense_kernel = True
    assert torch.allclose(layer(x), x @ W.t() + bias, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(layer(x), x @ W.t() + bias, atol=1e-5)
    assert layer(torch.randn(80)).shape == (48,)
    with pytest.raises(ShapeError):
        MonarchLinear(R, L, 48, 80, torch.randn(47))


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-gpt2", "tiny-bart", "tiny-llama"])
def test_hf_forward_after_replacement(name):
    spec = load_model_spec(name)
    dense = load_hf_model(name)
    factors = project_model(spec, dense, 4, show_progress=False)
    model = replace_with_monarch(load_hf_model(name), spec, factors)
    assert sum(isinstance(m, MonarchLinear) for m in model.modules()) == len(spec.mapped())
    ids = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).last_hidden_state
        ref = dense(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).last_hidden_state
    assert out.shape == ref.shape and torch.isfinite(out).all()
    # nblocks 1 is the dense matrix itself (rank-full slices): outputs match the dense model
    exact = replace_with_monarch(load_hf_model(name), spec, project_model(spec, dense, 1, show_progress=False))
    with torch.no_grad():
        out1 = exact(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).last_hidden_state
    assert torch.allclose(out1, ref, atol=1e-4)
    # every replaced matmul computes exactly the product of its factors
    m = spec.mapped()[0]
    assert torch.allclose(get_weight(model, m), monarch_to_dense(*factors[m.name][:2], *m.shape), atol=1e-6)


def test_output_folder_roundtrip(tmp_path):
    from mapper.cli_d2s import run_d2s
    out = tmp_path / "tg"
    report = run_d2s("tiny-gpt2", 4, out, show_progress=False)
    assert {p.name for p in out.iterdir()} == {"monarch.json", "monarch.safetensors", "report.json", MARKER}
    meta = json.loads((out / "monarch.json").read_text())
    assert meta["nblocks"] == 4 and meta["family"] == "gpt2" and meta["source"] == "tiny-gpt2"
    assert meta["calibrated"] is False
    qkv = next(e for e in meta["matmuls"] if e["name"] == "h.0.attn.c_attn")
    assert qkv["transposed"] and qkv["R_shape"] == [4, 16, 16] and qkv["L_shape"] == [4, 48, 16]
    assert len(report["layers"]) == 8 and report["totals"]["compression"] > 1
    spec, factors = load_monarch_dir(out)
    assert spec.has_weights and spec.source == str(out.resolve()) and set(factors) == {
        m.name for m in spec.mapped()}
    assert load_model_spec(str(out)).matmuls == spec.matmuls
    model = build_monarch_model(out)
    assert sum(isinstance(m, MonarchLinear) for m in model.modules()) == 8
    ids = torch.randint(0, 256, (1, 8))
    with torch.no_grad():
        model(input_ids=ids)
    assert isinstance(load_hf_model(str(out)).h[0].attn.c_attn, MonarchLinear)


def test_include_embeddings(tmp_path):
    from mapper.cli_d2s import run_d2s
    run_d2s("tiny-llama", 4, tmp_path / "tl", include_embeddings=True, show_progress=False)
    spec, factors = load_monarch_dir(tmp_path / "tl")
    assert "embed_tokens" in factors and "lm_head" in factors
    model = build_monarch_model(tmp_path / "tl")
    with torch.no_grad():
        model(input_ids=torch.randint(0, 256, (1, 6)))


def test_corrupt_output_folder(tmp_path):
    from mapper.cli_d2s import run_d2s
    out = tmp_path / "tb"
    run_d2s("tiny-bert", 2, out, show_progress=False)
    st = out / "monarch.safetensors"
    data = st.read_bytes()
    st.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="corrupt"):
        load_monarch_dir(out)
    (out / "monarch.json").write_text("{")
    with pytest.raises(ModelError, match="corrupt"):
        load_model_spec(str(out))


@pytest.fixture(scope="module")
def tiny_d2s(tmp_path_factory):
    from mapper.cli_d2s import run_d2s
    out = tmp_path_factory.mktemp("d2s") / "tb"
    run_d2s("tiny-bert", 4, out, show_progress=False)
    return out


def _edited(src, dst, meta_edit=None, tensor_edit=None):
    import shutil

    from safetensors.torch import load_file, save_file
    shutil.copytree(src, dst)
    if meta_edit is not None:
        meta = json.loads((dst / "monarch.json").read_text())
        meta_edit(meta)
        (dst / "monarch.json").write_text(json.dumps(meta))
    if tensor_edit is not None:
        t = load_file(str(dst / "monarch.safetensors"))
        tensor_edit(t)
        save_file(t, str(dst / "monarch.safetensors"))
    return dst


@pytest.mark.parametrize("edit,patterns", [
    (lambda m: m.update(nblocks="4"), ['nblocks: must be a positive integer, not "4"']),
    (lambda m: m.update(seq_len=True), ["seq_len: must be a positive integer, not true"]),
    (lambda m: m.update(family="mamba"), ['family: must be one of bert, gpt2, bart, opt, llama, not "mamba"']),
    (lambda m: m["matmuls"][3].update(role="queries"), [r"matmuls\[3\] \(encoder.layer.0.attention.self.value\)"
                                                        r"\.role: must be one of"]),
    (lambda m: m.update(matmuls=[]), ["the folder has no matmuls"]),
    (lambda m: (m.update(nblocks=2.5, calibrated="no"), m["matmuls"][1].pop("in_features"),
                m["hf_config"].update(num_attention_heads=-2)),
     [r"\(4 problems\)", "nblocks: must be a positive integer, not 2.5", "calibrated: must be true or false",
      "hf_config.num_attention_heads", r"in_features: missing"]),
    (lambda m: m.update(nblocks=2), ["24 factor shapes do not fit nblocks 2"]),
])
def test_monarch_json_every_problem_listed(tiny_d2s, tmp_path, edit, patterns):
    bad = _edited(tiny_d2s, tmp_path / "bad", meta_edit=edit)
    for load in (load_model_spec, load_monarch_dir):
        with pytest.raises(ModelError) as err:
            load(str(bad))
        for pattern in patterns:
            assert __import__("re").search(pattern, str(err.value)), (pattern, str(err.value))


@pytest.mark.parametrize("value,pattern", [(float("nan"), "1 NaN or infinite value"),
                                           (float("-inf"), "1 NaN or infinite value")])
def test_non_finite_factor_named(tiny_d2s, tmp_path, value, pattern):
    name = "encoder.layer.1.intermediate.dense.L"
    bad = _edited(tiny_d2s, tmp_path / "bad", tensor_edit=lambda t: t[name].view(-1).__setitem__(5, value))
    load_model_spec(str(bad))          # the description is fine; the factors are not
    with pytest.raises(ModelError, match=f"{name}: {pattern}"):
        load_monarch_dir(bad)


def test_source_model_must_still_match(tiny_d2s, tmp_path):
    bad = _edited(tiny_d2s, tmp_path / "bad", meta_edit=lambda m: m.update(source="tiny-gpt2", family="bert"))
    with pytest.raises(ModelError, match="is a gpt2 model"):
        build_monarch_model(bad)


def _run_cli(*args, cwd=REPO):
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "mapper", "d2s", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_writes_folder(tmp_path):
    r = _run_cli("--model", "tiny-bert", "--nblocks", "4", "--out", str(tmp_path / "o"), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "total" in r.stdout and (tmp_path / "o" / "monarch.json").is_file()


@pytest.mark.parametrize("args,pattern", [
    (["--model", "no-such-model", "--nblocks", "4"], "unknown model"),
    (["--model", "tiny-bert", "--nblocks", "100"], "nblocks 100"),
    (["--model", "/nonexistent/folder", "--nblocks", "4"], "does not exist"),
])
def test_cli_user_errors(tmp_path, args, pattern):
    r = _run_cli(*args, "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and pattern in lines[0], r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args,pattern", [
    (["--model", "bert-large", "--nblocks", "4"], "shape-only"),
    (["--model", "tiny-bert", "--nblocks", "0"], "nblocks"),
    (["--model", "tiny-bert", "--nblocks", "23"], "last block empty"),
    (["--model", "tiny-bert", "--nblocks", "4", "--steps", "-1"], "--steps"),
])
def test_cli_user_errors_in_process(tmp_path, capsys, args, pattern):
    from mapper.cli import main
    assert main(["d2s", *args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and pattern in err[0]
    assert not (tmp_path / "o").exists()


def test_cli_corrupt_checkpoint(tmp_path, capsys):
    from mapper.cli import main
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "config.json").write_text('{"model_type": "bert", "hidden_size": ')
    (ck / "model.safetensors").write_bytes(b"\x00" * 10)
    assert main(["d2s", "--model", str(ck), "--nblocks", "4", "--out", str(tmp_path / "o")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    model = load_hf_model("tiny-bert")
    model.save_pretrained(ck)
    st = next(ck.glob("*.safetensors"))
    st.write_bytes(st.read_bytes()[:64])
    r = _run_cli("--model", str(ck), "--nblocks", "4", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "cannot load weights" in r.stderr
    assert not (tmp_path / "o").exists()


def test_textdata_disjoint_and_deterministic():
    cal, held = calibration_sentences(), heldout_sentences(None)
    assert len(held) >= 200 and len(cal) >= 1000
    assert not set(cal) & set(held)
    assert set(cal) | set(held) == set(all_sentences())
    assert len(heldout_sentences(256)) == 256 and len(set(heldout_sentences(256))) == 256
    assert all(s[0].isupper() and s.endswith(".") for s in held)
    assert cal == sorted(cal)


def test_fit_monarch_decreases_objective_and_is_stationary():
    g = torch.Generator().manual_seed(4)
    out_f, in_f, k, n = 24, 20, 4, 400
    X = torch.randn(n, in_f, generator=g, dtype=torch.float64) @ torch.randn(in_f, in_f, generator=g,
                                                                            dtype=torch.float64)
    W = torch.randn(out_f, in_f, generator=g, dtype=torch.float64)
    Xa = torch.cat([X, torch.ones(n, 1, dtype=torch.float64)], 1)
    C, Y = Xa.t() @ Xa, (X @ W.t() + 1.0).t() @ Xa
    R, L = project(W, k)
    b = torch.zeros(out_f, dtype=torch.float64)
    before = _objective(R, L, b, C, Y)
    R2, L2, b2 = fit_monarch(R, L, b, C, Y, sweeps=60, ridge=1e-9)
    after = _objective(R2, L2, b2, C, Y)
    assert after < before
    # stationary: no small perturbation improves it
    for _ in range(10):
        dR = 1e-3 * torch.randn(R2.shape, generator=g, dtype=torch.float64)
        dL = 1e-3 * torch.randn(L2.shape, generator=g, dtype=torch.float64)
        assert _objective(R2 + dR, L2 + dL, b2, C, Y) >= after - 1e-6 * abs(after)
    R3, L3, b3 = fit_monarch(R, L, None, C, Y, sweeps=5)
    assert b3 is None


def test_calibration_improves_tiny_model():
    spec = load_model_spec("tiny-bert")
    dense = load_hf_model("tiny-bert")
    # make the tiny model less trivial: larger weights give visible projection error
    with torch.no_grad():
        for p in dense.parameters():
            if p.dim() == 2:
                p.mul_(10)
    factors = project_model(spec, dense, 4, show_progress=False)
    from mapper.d2s.calibrate import default_heldout_batches, embed, monarch_model_from_factors
    held = default_heldout_batches(spec, n=32)
    de = embed(dense, held)
    before = compare_embeddings(de, embed(monarch_model_from_factors(dense, spec, factors), held))
    cfg = CalibConfig(sentences=48, sweeps=3, steps=4, batch=16)
    new, record = calibrate(spec, dense, factors, cfg, show_progress=False)
    after = compare_embeddings(de, embed(monarch_model_from_factors(dense, spec, new), held))
    assert after["cosine"] > before["cosine"]
    assert record["distill"]["steps"] == 4 and set(new) == set(factors)
