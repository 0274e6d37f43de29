"""GAN losses (pure functions of discriminator scores, the logits D gives).

``hinge`` (Lim and Ye 2017; SAGAN, BigGAN): D minimises E[relu(1 - D(x))] + E[relu(1 +
D(G(z)))], G minimises -E[D(G(z))]. ``minimax`` (Goodfellow et al. 2014, as DCGAN implements
it): D minimises the binary cross-entropy of real against generated, -log sigmoid(D(x)) -
log(1 - sigmoid(D(G(z)))); G minimises the non-saturating -log sigmoid(D(G(z))) rather than
log(1 - sigmoid(D(G(z)))), whose gradient vanishes while D wins.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F


def discriminator_hinge(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]."""
    return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()


def generator_hinge(fake_scores: torch.Tensor) -> torch.Tensor:
    """-E[D(G(z))]."""
    return -fake_scores.mean()


def discriminator_minimax(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits, real labelled 1 and generated 0:
    E[softplus(-D(x))] + E[softplus(D(G(z)))]."""
    return F.softplus(-real_scores).mean() + F.softplus(fake_scores).mean()


def generator_minimax(fake_scores: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss: -E[log sigmoid(D(G(z)))] = E[softplus(-D(G(z)))]."""
    return F.softplus(-fake_scores).mean()


def lecam_regularizer(
    real_scores: torch.Tensor, fake_scores: torch.Tensor, ema_real: torch.Tensor, ema_fake: torch.Tensor
) -> torch.Tensor:
    """LeCam regularisation (Tseng et al. 2021), in the authors' form: E[relu(D(x) - a_F)^2] +
    E[relu(a_R - D(G(z)))^2], with a_R and a_F moving averages of D's mean scores on real
    and generated images. It keeps D from drifting far from what it gave the other side,
    which helps most when D can memorise a small training set."""
    return F.relu(real_scores - ema_fake).pow(2).mean() + F.relu(ema_real - fake_scores).pow(2).mean()


Loss = Callable[..., torch.Tensor]
LOSSES: dict[str, tuple[Loss, Loss]] = {
    "hinge": (discriminator_hinge, generator_hinge),
    "minimax": (discriminator_minimax, generator_minimax),
}
