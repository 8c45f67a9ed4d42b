"""The one implementation of the text metrics (mapper.evaluate.metrics), on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from mapper.evaluate.metrics import (
    compare_embeddings,
    cosine,
    decoder_metrics,
    encoder_metrics,
    mean_pool,
    pairwise_spearman,
    relative_error,
    spearman,
)


def test_mean_pool_ignores_padding_and_empty_rows_pool_to_zero():
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]],
                      [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]],
                      [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [0, 0, 0]])
    assert mean_pool(h, mask).tolist() == [[2.0, 3.0], [7.0, 8.0], [0.0, 0.0]]


def test_cosine_by_hand():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0]])
    b = torch.tensor([[0.0, 2.0], [2.0, 2.0], [4.0, 3.0]])
    got = cosine(a, b)
    assert got.dtype == torch.float64
    assert got.tolist() == pytest.approx([0.0, 1.0, 24.0 / 25.0])


def test_spearman_by_hand():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks (0, 1, 2, 3) vs (1, 0, 2, 3): rho = 1 - 6 * 2 / (4 * 15) = 0.8
    assert spearman([1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 3.0, 4.0]) == pytest.approx(0.8)
    assert spearman(torch.tensor([0.1, 0.5, 0.2]), torch.tensor([1.0, 9.0, 3.0])) == pytest.approx(1.0)
    assert math.isnan(spearman([1.0], [2.0]))          # one pair: no ranking
    assert spearman([1, 1, 1], [1, 2, 3]) == pytest.approx(1.0)   # ties: distinct ranks in sort order
    assert spearman([1, 2, 3], [1, 2, 3]) != spearman([1, 2, 3], [3, 2, 1])     # the check can fail


def test_pairwise_spearman_and_encoder_metrics():
    ref = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    # pairwise cosines of ref: (0,1) 0.8, (0,2) 0.0, (1,2) 0.6 -> ranks 2, 0, 1; scaled rows keep them
    assert pairwise_spearman(ref, 3 * ref) == pytest.approx(1.0)
    swapped = torch.tensor([[0.0, 1.0], [0.8, 0.6], [1.0, 0.0]])   # pairwise 0.6, 0.0, 0.8 -> ranks 1, 0, 2
    assert pairwise_spearman(ref, swapped) == pytest.approx(0.5)
    m = encoder_metrics(ref, swapped)
    assert m["n"] == 3 and m["cosine_mean"] == pytest.approx((0.0 + 1.0 + 0.0) / 3)
    assert m["cosine_min"] == pytest.approx(0.0) and m["cosine_median"] == pytest.approx(0.0)
    assert m["pair_spearman"] == pytest.approx(0.5)
    assert "pair_spearman" not in encoder_metrics(ref[:2], ref[:2])
    # an even count: the median is the mean of the two middle values (numpy), not torch's lower one
    assert encoder_metrics(ref[:2], swapped[:2])["cosine_median"] == pytest.approx(0.5)
    assert compare_embeddings(ref, swapped) == pytest.approx({"cosine": 1.0 / 3, "spearman": 0.5})


def test_relative_error_by_hand():
    ref = torch.tensor([[3.0, 4.0]])
    assert relative_error(ref, torch.tensor([[3.0, 4.0]])) == 0.0
    assert relative_error(ref, torch.tensor([[0.0, 4.0]])) == pytest.approx(3.0 / 5.0)
    assert relative_error(torch.zeros(1, 2), torch.tensor([[3.0, 4.0]])) == pytest.approx(5.0)


def test_decoder_metrics_by_hand():
    ids = torch.tensor([[0, 1, 1]])
    dense = torch.log(torch.tensor([[[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]]]))
    same = decoder_metrics(dense, dense, ids)
    assert same["top1_agreement"] == 1.0 and same["ppl_change"] == pytest.approx(0.0)
    # perplexity of tokens 1, 1 under (0.5, 0.75): exp(-(ln 0.5 + ln 0.75) / 2)
    assert same["ppl_dense"] == pytest.approx(math.exp(-(math.log(0.5) + math.log(0.75)) / 2))
    flipped = decoder_metrics(dense, -dense, ids)
    assert flipped["top1_agreement"] == pytest.approx(1 / 3)   # argmax ties (position 0) agree; the others flip
    assert math.isnan(decoder_metrics(dense[:, :1], dense[:, :1], ids[:, :1])["ppl"])
