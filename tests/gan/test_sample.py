"""pipeline.gan.sample: latents, generation and the candidate filter."""

import numpy as np
import pytest

from conftest import tiny_gan_trainer
from pipeline.gan.sample import drs_keep, generate, latent, select


def test_sampling_is_reproducible_per_seed():
    t = tiny_gan_trainer()
    t.recompute_ema_batchnorm(batches=2)
    labels, seeds = np.array([0, 1, 2]), np.array([5, 6, 7])
    a, scores = generate(t.G_ema, t.D, labels, seeds, out_size=(8, 8))
    b, _ = generate(t.G_ema, None, labels[1:], seeds[1:], out_size=(8, 8))
    assert a.dtype == np.uint8 and a.shape == (3, 8, 8) and np.isfinite(scores).all()
    assert np.array_equal(a[1:], b)
    assert latent(3, 64, truncation=0.5).abs().max() <= 0.5


def test_select_filters_and_counts():
    labels = np.array([0, 0, 0, 1, 1])
    confidence = np.array([0.9, 0.1, 0.8, 0.7, 0.95])
    d_score = np.array([1.0, 2.0, -5.0, 0.0, 0.0])
    kept = select(labels, confidence, d_score, {0: 2, 1: 1}, min_confidence=0.5, reject_d_fraction=0.0)
    assert kept.tolist() == [0, 2, 3]
    kept = select(labels, confidence, d_score, {0: 2, 1: 2}, min_confidence=0.5, reject_d_fraction=0.4)
    assert 2 not in kept.tolist()
    # fill_short: a short class takes its most confident rejected candidates, and no more
    kept = select(labels, confidence, d_score, {0: 3, 1: 1}, min_confidence=0.85, reject_d_fraction=0.0)
    assert kept.tolist() == [0, 4]
    kept = select(
        labels, confidence, d_score, {0: 2, 1: 1}, min_confidence=0.85, reject_d_fraction=0.0, fill=True
    )
    assert kept.tolist() == [0, 2, 4]
    # label-consistent: candidates whose top class is another are dropped first
    consistent = np.array([False, True, True, True, True])
    kept = select(
        labels,
        confidence,
        d_score,
        {0: 2, 1: 1},
        min_confidence=0.0,
        reject_d_fraction=0.0,
        consistent=consistent,
    )
    assert kept.tolist() == [1, 2, 3]
    # ...and filling a short class never brings one back
    kept = select(
        labels,
        confidence,
        d_score,
        {0: 3, 1: 1},
        min_confidence=0.85,
        reject_d_fraction=0.0,
        fill=True,
        consistent=consistent,
    )
    assert kept.tolist() == [1, 2, 4]


def test_drs_keeps_in_proportion_to_the_discriminators_estimate_reproducibly():
    rng = np.random.default_rng(0)
    scores, seeds = rng.normal(0, 2, 4000), np.arange(4000) * 7 + 3
    keep = drs_keep(scores, seeds, 0.9)
    assert np.array_equal(keep, drs_keep(scores, seeds, 0.9))  # the draws follow the latent seeds
    assert not np.array_equal(keep, drs_keep(scores, seeds + 1, 0.9))
    order = np.argsort(scores)
    half = drs_keep(scores, seeds, 0.5)  # at γ the median: D's most real-like decile is kept
    assert half[order[-400:]].mean() > 0.9 and half[order[:400]].mean() < 0.05  # its least rarely
    assert keep[order[-400:]].mean() > 0.5 > 0.01 > keep[order[:400]].mean()
    assert drs_keep(scores, seeds, 0.5).mean() > keep.mean() > drs_keep(scores, seeds, 0.99).mean()
    assert drs_keep(np.zeros(0), np.zeros(0), 0.9).shape == (0,)
    assert drs_keep(np.array([3.0]), np.array([1]), 0.9).dtype == bool  # one candidate: a coin flip


def test_select_with_drs_judges_each_class_against_its_own_best_score():
    # class 1's scores sit far below class 0's: judged per class, it keeps as many
    labels = np.repeat([0, 1], 500)
    rng = np.random.default_rng(1)
    d_score = np.concatenate([rng.normal(10, 1, 500), rng.normal(-10, 1, 500)])
    seeds, confidence = np.arange(1000), np.ones(1000)
    kept = select(
        labels,
        confidence,
        d_score,
        {0: 500, 1: 500},
        min_confidence=0.0,
        reject_d_fraction=0.0,
        drs=0.8,
        seeds=seeds,
    )
    per_class = np.bincount(labels[kept], minlength=2)
    assert 0 < per_class[0] < 500 and 0 < per_class[1] < 500
    assert abs(int(per_class[0]) - int(per_class[1])) < 60
    assert d_score[kept[labels[kept] == 1]].mean() > d_score[500:].mean()  # the better ones stay
    with pytest.raises(ValueError, match="latent seeds"):
        select(labels, confidence, d_score, {0: 1}, min_confidence=0.0, reject_d_fraction=0.0, drs=0.8)
