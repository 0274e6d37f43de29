from __future__ import annotations

import pytest
import torch

from pipeline.gan.geometry import from_square, to_square


def _smooth(height: int, width: int) -> torch.Tensor:
    """A smooth RGB image in [-1, 1], (1, 3, H, W): resampling changes it little."""
    y = torch.linspace(-1, 1, height)[:, None].expand(height, width)
    x = torch.linspace(-1, 1, width)[None, :].expand(height, width)
    return torch.stack([x, y, (x * y)]).unsqueeze(0) * 0.9


@pytest.mark.parametrize("fit", ["stretch", "crop", "pad"])
@pytest.mark.parametrize("size", [(20, 40), (40, 20), (24, 24)])
def test_shapes_both_ways(fit, size):
    image = _smooth(*size)
    square = to_square(image, 16, fit)
    assert square.shape == (1, 3, 16, 16)
    assert from_square(square, size, fit).shape == (1, 3, *size)


def test_pad_letterboxes_on_black_and_its_samples_lose_the_bars():
    white = torch.ones(1, 1, 20, 40)
    square = to_square(white, 16, "pad")
    assert (square[:, :, :4] == -1).all() and (square[:, :, 12:] == -1).all()  # the bars
    assert torch.allclose(square[:, :, 4:12], torch.ones(1, 1, 8, 16))
    back = from_square(square, (20, 40), "pad")
    assert torch.allclose(back, torch.ones(1, 1, 20, 40))  # no bar left in the sample
    # A smooth image survives the round trip (the aspect ratio is kept both ways).
    image = _smooth(40, 80)
    assert (from_square(to_square(image, 32, "pad"), (40, 80), "pad") - image).abs().mean() < 0.05


def test_crop_learns_the_centre_square_and_samples_cover_the_size():
    image = -torch.ones(1, 1, 20, 60)
    image[:, :, :, 20:40] = 1.0  # the centre square is white, the sides black
    assert torch.allclose(to_square(image, 16, "crop"), torch.ones(1, 1, 16, 16))
    assert torch.allclose(from_square(torch.ones(1, 1, 16, 16), (20, 60), "crop"), torch.ones(1, 1, 20, 60))


def test_stretch_scales_each_side_on_its_own():
    image = _smooth(20, 40)
    assert (from_square(to_square(image, 32, "stretch"), (20, 40), "stretch") - image).abs().mean() < 0.05
    assert torch.equal(to_square(_smooth(16, 16), 16, "crop"), _smooth(16, 16))  # square: unchanged
