"""Sampling from a trained generator: per-row latent seeds, optional truncation, scores.

Each synthetic image is reproducible from (checkpoint, label, latent seed): the latent is
drawn from a CPU generator seeded with that seed alone.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.core.progress import report
from pipeline.gan.geometry import Fit, from_square
from pipeline.gan.models import Discriminator, Generator


def latent(seed: int, z_dim: int, truncation: float | None) -> torch.Tensor:
    """The latent of one sample; with truncation, entries beyond |t| are redrawn."""
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(z_dim, generator=g)
    if truncation is not None:
        for _ in range(100):
            outside = z.abs() > truncation
            if not outside.any():
                break
            z[outside] = torch.randn(int(outside.sum()), generator=g)
        z = z.clamp(-truncation, truncation)
    return z


@torch.no_grad()
def generate(
    generator_net: Generator,
    discriminator: Discriminator | None,
    labels: np.ndarray,
    seeds: np.ndarray,
    *,
    out_size: tuple[int, int],
    fit: Fit = "stretch",
    truncation: float | None = None,
    batch_size: int = 256,
    progress: str | None = None,
    progress_offset: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate one image per (label, seed) at ``out_size`` (the data's size, reached from the
    generator's square by the ``fit`` policy), reporting each batch as stage ``progress``
    (``progress_offset`` images counted before this call).

    Returns:
        uint8 images at the dataset's size, (N, H, W) or (N, H, W, 3), and the
        discriminator's score per image (NaN without a discriminator).
    """
    device = next(generator_net.parameters()).device
    generator_net.eval()
    images, scores = [], []
    for start in range(0, len(labels), batch_size):
        y = torch.as_tensor(labels[start : start + batch_size], dtype=torch.long, device=device)
        z = torch.stack(
            [latent(s, generator_net.z_dim, truncation) for s in seeds[start : start + batch_size]]
        ).to(device)
        x = generator_net(z, y).float()
        if discriminator is not None:
            discriminator.eval()
            scores.append(discriminator(x, y).float().cpu().numpy())
        else:
            scores.append(np.full(len(y), np.nan))
        x = from_square(x, out_size, fit)
        pixels = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
        images.append(pixels[:, 0] if pixels.shape[1] == 1 else pixels.transpose(0, 2, 3, 1))
        if progress:
            done = progress_offset + min(start + batch_size, len(labels))
            report(progress, done, progress_offset + len(labels))
    return np.concatenate(images), np.concatenate(scores)


# The ε of discriminator rejection sampling's F (Azadi et al. 2019), and the stream
# of its uniform draws (one per candidate, seeded by the candidate's latent seed).
DRS_EPSILON = 1e-6
_DRS_STREAM = 0x445253


def drs_keep(d_scores: np.ndarray, seeds: np.ndarray, quantile: float) -> np.ndarray:
    """Discriminator rejection sampling (Azadi et al. 2019) over one class's candidates.

    D's score is taken as its logit (exact for the minimax loss, a heuristic for hinge).
    With D* the class's highest score, each candidate x has
    F(x) = D(x) - D* - log(1 - exp(D(x) - D* - ε)) - γ, γ the ``quantile`` of F over the
    candidates, and is kept with probability sigmoid(F(x)): a candidate D finds more
    real-like than most is nearly always kept, the others in proportion to their estimated
    density ratio. The uniform draw of candidate k is seeded by its latent seed, so the
    choice is reproducible.

    Returns:
        A boolean mask over the candidates.
    """
    if len(d_scores) == 0:
        return np.zeros(0, dtype=bool)
    delta = np.asarray(d_scores, dtype=np.float64)
    delta = delta - delta.max()
    f = delta - np.log(-np.expm1(delta - DRS_EPSILON))
    f = f - np.quantile(f, quantile)
    accept = 0.5 * (1.0 + np.tanh(0.5 * f))  # sigmoid, without overflow
    uniforms = np.asarray([np.random.default_rng([int(s), _DRS_STREAM]).random() for s in seeds])
    return uniforms < accept


def select(
    labels: np.ndarray,
    confidences: np.ndarray,
    d_scores: np.ndarray,
    wanted: dict[int, int],
    *,
    min_confidence: float,
    reject_d_fraction: float,
    fill: bool = False,
    consistent: np.ndarray | None = None,
    drs: float | None = None,
    seeds: np.ndarray | None = None,
) -> np.ndarray:
    """Indices of kept candidates: per class, drop those not ``consistent`` (when given:
    the reference classifier's top class is another), low confidence, those discriminator
    rejection sampling rejects (``drs``: its γ quantile, with the candidates' latent
    ``seeds``; see :func:`drs_keep`) and the lowest D scores, then keep the first
    ``wanted[c]`` in candidate order. With ``fill``, a class left short is topped up with
    its most confident remaining candidates."""
    if drs is not None and seeds is None:
        raise ValueError("discriminator rejection sampling needs the candidates' latent seeds")
    keep: list[int] = []
    for c, count in wanted.items():
        candidates = np.flatnonzero(labels == c)
        members = candidates[confidences[candidates] >= min_confidence]
        if consistent is not None:
            members = members[consistent[members]]
        if drs is not None:  # D* and γ over all of the class's candidates, as the paper's burn-in
            accepted = drs_keep(d_scores[candidates], seeds[candidates], drs)
            members = np.intersect1d(members, candidates[accepted])
        if reject_d_fraction > 0 and len(members):
            cut = np.quantile(d_scores[members], reject_d_fraction)
            members = members[d_scores[members] >= cut]
        members = members[:count]
        if fill and len(members) < count:
            rest = np.setdiff1d(candidates, members)
            if consistent is not None:  # filling never brings back a sample of another class
                rest = rest[consistent[rest]]
            rest = rest[np.argsort(-confidences[rest], kind="stable")]
            members = np.concatenate([members, rest[: count - len(members)]])
        keep.extend(members.tolist())
    return np.asarray(sorted(keep), dtype=np.int64)


@torch.no_grad()
def recompute_batchnorm(
    generator_net: Generator, num_classes: int, z_dim: int, batch_size: int, batches: int, g: torch.Generator
) -> None:
    """Cumulative BatchNorm statistics of ``generator_net`` over ``batches`` random batches."""
    norms = [m for m in generator_net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    device = next(generator_net.parameters()).device
    generator_net.train()
    for _ in range(batches):
        z = torch.randn(batch_size, z_dim, generator=g, device=device)
        y = torch.randint(0, num_classes, (batch_size,), generator=g, device=device)
        generator_net(z, y)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    generator_net.eval()
