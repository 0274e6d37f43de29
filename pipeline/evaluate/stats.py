"""Paired comparisons of two arms (training sets) of the reference classifier.

Both arms are trained with the same seeds and tested on the same images, so what is
compared is ``D[s, i]``: arm minus baseline on image ``i`` for seed ``s`` (a correct
answer is 1, a wrong one 0; weighted for balanced accuracy). The mean gain has two sources
of noise, crossed: which classifier seeds were drawn and which images were tested. Treating
either as the only one understates the error (a seed that does better everywhere is not
seen in the per-image spread; the finite test set is not seen in the per-seed spread), so
the standard error adds both parts,

    se² = var(seed means) / S + var(image means) / N          (ddof=1 throughout)

and the interval uses Student's t with Welch-Satterthwaite degrees of freedom. With one seed
the seed part cannot be measured and is left out (the report says ``seeds: 1``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def paired_interval(differences: np.ndarray, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """The mean of ``differences`` (seeds x images, arm minus baseline) with a two-sided
    ``confidence`` interval over seeds and images (see the module).

    Returns:
        ``gain``, ``low``, ``high``, ``se``, ``df``, ``confidence``, ``seeds``, ``images``,
        and the per-seed gains ``per_seed`` (each seed's arm minus the same seed's baseline).
    """
    d = np.atleast_2d(np.asarray(differences, dtype=np.float64))
    seeds, images = d.shape
    seed_means, image_means = d.mean(axis=1), d.mean(axis=0)
    v_seed = seed_means.var(ddof=1) / seeds if seeds > 1 else 0.0
    v_image = image_means.var(ddof=1) / images if images > 1 else 0.0
    variance = v_seed + v_image
    parts = [(v, n - 1) for v, n in ((v_seed, seeds), (v_image, images)) if v > 0]
    df = variance**2 / sum(v**2 / dof for v, dof in parts) if parts else math.inf
    se = math.sqrt(variance)
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se if se > 0 else 0.0
    gain = float(d.mean())
    return {
        "gain": gain,
        "low": gain - half,
        "high": gain + half,
        "se": se,
        "df": float(df),
        "confidence": confidence,
        "seeds": seeds,
        "images": images,
        "per_seed": seed_means.tolist(),
    }


def spread(values: list[float] | np.ndarray) -> float:
    """Sample standard deviation (ddof=1) of per-seed scores; 0.0 for a single value."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def interval_text(interval: dict[str, Any]) -> str:
    """``+0.0123 [+0.0040, +0.0206]``: the gain and its interval, in the metric's units."""
    return f"{interval['gain']:+.4f} [{interval['low']:+.4f}, {interval['high']:+.4f}]"
