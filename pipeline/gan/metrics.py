"""Sample-quality metrics on feature vectors (pure numpy).

Features come from the reference classifier trained on the real training split (no
downloaded Inception weights), or from any extractor a user plugs in: every function here
takes plain ``(N, D)`` arrays.
"""

from __future__ import annotations

import numpy as np


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    Uses tr(sqrt(S1 S2)) = sum(sqrt(eig(sqrt(S1) S2 sqrt(S1)))), which stays real and
    stable for the near-singular covariances of small samples.
    """
    mu1, mu2 = real.mean(axis=0), fake.mean(axis=0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    root1 = _sqrt_psd(np.atleast_2d(s1))
    middle = root1 @ np.atleast_2d(s2) @ root1
    eig = np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)
    value = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * np.sqrt(eig).sum())
    return max(value, 0.0)


def kernel_inception_distance(
    real: np.ndarray, fake: np.ndarray, *, subsets: int = 10, subset_size: int = 200, rng: np.random.Generator
) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel, averaged over random subsets (KID)."""
    m = min(subset_size, len(real), len(fake))
    dim = real.shape[1]
    estimates = []
    for _ in range(subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        kxx = (x @ x.T / dim + 1) ** 3
        kyy = (y @ y.T / dim + 1) ** 3
        kxy = (x @ y.T / dim + 1) ** 3
        off = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        estimates.append(off - 2.0 * kxy.mean())
    return float(np.mean(estimates))


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds.

    Precision: share of fake samples inside the real manifold; recall: share of real
    samples inside the fake manifold.
    """
    return _coverage(real, fake, k), _coverage(fake, real, k)


def per_class_frechet(
    real: np.ndarray, real_labels: np.ndarray, fake: np.ndarray, fake_labels: np.ndarray, num_classes: int
) -> list[float | None]:
    """Fréchet distance per class (None where either side has fewer than 2 samples)."""
    values: list[float | None] = []
    for c in range(num_classes):
        r, f = real[real_labels == c], fake[fake_labels == c]
        values.append(frechet_distance(r, f) if len(r) > 1 and len(f) > 1 else None)
    return values


def _coverage(manifold: np.ndarray, queries: np.ndarray, k: int) -> float:
    k = min(k, len(manifold) - 1)
    inner = _pairwise(manifold, manifold)
    radii = np.sort(inner, axis=1)[:, k]  # column 0 is the point itself
    distances = _pairwise(queries, manifold)
    return float((distances <= radii[None, :]).any(axis=1).mean())


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.clip(squared, 0.0, None))


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
