"""pipeline.evaluate.stats: intervals paired over classifier seeds and test images."""

import numpy as np
import pytest
from scipy import stats

from pipeline.evaluate.stats import interval_text, paired_interval, spread


def test_one_seed_is_a_paired_t_interval_over_the_images():
    rng = np.random.default_rng(0)
    d = rng.choice([-1.0, 0.0, 0.0, 1.0, 1.0], size=300)
    interval = paired_interval(d[None])
    expected = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert interval["low"] == pytest.approx(expected.low) and interval["high"] == pytest.approx(expected.high)
    assert interval["df"] == pytest.approx(299) and interval["seeds"] == 1 and interval["images"] == 300


def test_seeds_and_images_both_add_to_the_error():
    d = np.array([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, -1.0], [1.0, 1.0, 1.0, 0.0]])
    interval = paired_interval(d, 0.9)
    v_seed = d.mean(axis=1).var(ddof=1) / 3
    v_image = d.mean(axis=0).var(ddof=1) / 4
    df = (v_seed + v_image) ** 2 / (v_seed**2 / 2 + v_image**2 / 3)
    half = stats.t.ppf(0.95, df) * np.sqrt(v_seed + v_image)
    assert interval["se"] == pytest.approx(np.sqrt(v_seed + v_image)) and interval["df"] == pytest.approx(df)
    assert (interval["low"], interval["high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert interval["per_seed"] == pytest.approx(d.mean(axis=1).tolist())
    assert interval["confidence"] == 0.9


def test_identical_arms_give_a_zero_width_interval_at_zero():
    interval = paired_interval(np.zeros((3, 50)))
    assert (interval["gain"], interval["low"], interval["high"], interval["se"]) == (0.0, 0.0, 0.0, 0.0)


def test_the_interval_covers_a_null_effect_at_its_level_when_seeds_differ():
    # No real gain, but each seed's classifier is better or worse everywhere (a seed effect
    # the per-image spread cannot see) and images differ: 95 % intervals cover 0 about 95 %
    # of the time; the per-image interval alone covers far less often.
    rng = np.random.default_rng(1)
    covered = per_image_covered = 0
    trials = 400
    for _ in range(trials):
        seed_effect = rng.normal(0, 0.03, size=(3, 1))
        image_effect = rng.normal(0, 0.2, size=(1, 400))
        d = seed_effect + image_effect + rng.normal(0, 0.3, size=(3, 400))
        interval = paired_interval(d)
        covered += interval["low"] <= 0 <= interval["high"]
        alone = paired_interval(d.mean(axis=0)[None])
        per_image_covered += alone["low"] <= 0 <= alone["high"]
    assert 0.91 <= covered / trials <= 0.99
    assert per_image_covered / trials < 0.85


def test_spread_is_the_sample_standard_deviation():
    assert spread([0.8, 0.9, 1.0]) == pytest.approx(np.std([0.8, 0.9, 1.0], ddof=1))
    assert spread([0.5]) == 0.0
    assert interval_text({"gain": 0.0123, "low": 0.004, "high": 0.0206}) == "+0.0123 [+0.0040, +0.0206]"
