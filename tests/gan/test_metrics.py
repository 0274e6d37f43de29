"""pipeline.gan.metrics: FD, KID, precision and recall on known features."""

import numpy as np
import pytest

from pipeline.gan import metrics as gm


def test_metrics_behave():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 4))
    same = rng.normal(size=(300, 4))
    shifted = same + 3.0
    assert gm.frechet_distance(real, real) < 1e-6
    assert gm.frechet_distance(real, same) < 0.3 < gm.frechet_distance(real, shifted)
    assert gm.frechet_distance(real, shifted) == pytest.approx(36.0, rel=0.15)
    kid_same = gm.kernel_inception_distance(real, same, rng=rng, subset_size=100)
    kid_far = gm.kernel_inception_distance(real, shifted, rng=rng, subset_size=100)
    assert abs(kid_same) < 0.05 < kid_far
    precision, recall = gm.precision_recall(real, same)
    assert precision > 0.8 and recall > 0.8
    assert gm.precision_recall(real, shifted + 10)[0] == 0.0
    per_class = gm.per_class_frechet(real, np.arange(300) % 2, same, np.arange(300) % 2, 3)
    assert per_class[1] is not None and per_class[2] is None
