"""pipeline.gan.sample: latents, generation and the candidate filter."""

import numpy as np

from conftest import tiny_gan_trainer
from pipeline.gan.sample import generate, latent, select


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
