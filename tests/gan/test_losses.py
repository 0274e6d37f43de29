"""pipeline.gan.losses: the hinge losses."""

import torch

from pipeline.gan.losses import discriminator_hinge, generator_hinge


def test_hinge_losses():
    assert discriminator_hinge(torch.tensor([2.0]), torch.tensor([-2.0])) == 0
    assert discriminator_hinge(torch.tensor([0.0]), torch.tensor([0.0])) == 2
    assert generator_hinge(torch.tensor([1.0, 3.0])) == -2
