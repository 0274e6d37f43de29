"""pipeline.gan.losses: the hinge and minimax (DCGAN's BCE) losses."""

import math

import torch
from torch.nn import functional as F

from pipeline.gan.losses import (
    LOSSES,
    discriminator_hinge,
    discriminator_minimax,
    generator_hinge,
    generator_minimax,
)


def test_hinge_losses():
    assert discriminator_hinge(torch.tensor([2.0]), torch.tensor([-2.0])) == 0
    assert discriminator_hinge(torch.tensor([0.0]), torch.tensor([0.0])) == 2
    assert generator_hinge(torch.tensor([1.0, 3.0])) == -2


def test_minimax_losses_are_dcgans_binary_cross_entropy():
    real, fake = torch.tensor([1.5, -0.5, 3.0]), torch.tensor([-2.0, 0.25, 1.0])
    bce = F.binary_cross_entropy_with_logits
    expected_d = bce(real, torch.ones(3)) + bce(fake, torch.zeros(3))
    assert torch.allclose(discriminator_minimax(real, fake), expected_d)
    # The non-saturating generator loss: G wants D to call its samples real.
    assert torch.allclose(generator_minimax(fake), bce(fake, torch.ones(3)))
    assert math.isclose(
        float(discriminator_minimax(torch.zeros(1), torch.zeros(1))), 2 * math.log(2), rel_tol=1e-6
    )
    # Its gradient does not vanish where D is sure the sample is fake (log(1 - D) would).
    sure_fake = torch.tensor([-20.0], requires_grad=True)
    generator_minimax(sure_fake).backward()
    assert sure_fake.grad.abs().item() > 0.99
    assert LOSSES["minimax"] == (discriminator_minimax, generator_minimax)
    assert LOSSES["hinge"] == (discriminator_hinge, generator_hinge)


def test_lecam_penalises_scores_beyond_the_other_sides_average():
    from pipeline.gan.losses import lecam_regularizer

    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-1.0, 1.0])
    # real scores above the fake average (0.0): 2.0 -> 4; fake scores below the real average (1.0): -1.0 -> 4
    value = lecam_regularizer(real, fake, torch.tensor(1.0), torch.tensor(0.0))
    assert torch.isclose(value, torch.tensor((4.0 + 0.25) / 2 + (4.0 + 0.0) / 2))
    assert lecam_regularizer(real, fake, torch.tensor(-5.0), torch.tensor(5.0)) == 0  # within the averages
