"""pipeline.gan.diffaug: DiffAugment's policies, seeding, translation and cutout."""

import torch

from pipeline.gan.diffaug import augment, default_policy, draw


def test_diffaug_is_seeded_and_policy_fits_resolution():
    assert "cutout" not in default_policy(1, 8) and "color" not in default_policy(1, 32)
    assert default_policy(3, 32) == ("color", "translation", "cutout")
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    policy = default_policy(3, 16)
    a, b, c = (augment(x, policy, draw(len(x), torch.Generator().manual_seed(s))) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == x.shape


def test_diffaug_translation_shifts_and_cutout_zeroes_a_square():
    n, side = 400, 16
    x = torch.arange(side * side, dtype=torch.float32).add_(1).view(1, 1, side, side).expand(n, 1, -1, -1)
    r = draw(n, torch.Generator().manual_seed(0))
    moved = augment(x, ("translation",), r)
    shifts = set()
    for image, out in zip(x[:, 0], moved[:, 0], strict=True):
        shifts.add(_shift(image, out))  # a whole-image shift with zero fill, or it fails
    assert shifts == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}  # 16 * 0.125 = 2

    cut = augment(torch.ones(n, 1, side, side), ("cutout",), r)[:, 0]
    for out in cut:
        rows, cols = (out == 0).any(1).nonzero()[:, 0], (out == 0).any(0).nonzero()[:, 0]
        assert int((out == 0).sum()) == len(rows) * len(cols)  # one rectangle
        assert 4 <= len(rows) <= 8 and 4 <= len(cols) <= 8  # the 8x8 square, clipped at most by half
    centres = {int((out == 0).any(1).nonzero()[:, 0].float().mean()) for out in cut}
    assert min(centres) <= 2 and max(centres) >= 13


def _shift(image, out):
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            if torch.equal(out, _shifted(image, dy, dx)):
                return dy, dx
    raise AssertionError("not a translation")


def _shifted(image, dy, dx):
    """out[i, j] = image[i + dy, j + dx], zero outside."""
    side = image.shape[0]
    padded = torch.nn.functional.pad(image, [2, 2, 2, 2])
    return padded[2 + dy : 2 + dy + side, 2 + dx : 2 + dx + side]
