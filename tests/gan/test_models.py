"""pipeline.gan.models: shapes, training resolutions, spectral norm."""

import pytest
import torch

from pipeline.core.errors import ConfigError
from pipeline.gan.models import (
    ConditionalBatchNorm,
    Discriminator,
    DiscriminatorBlock,
    Generator,
    GeneratorBlock,
    SNConv2d,
    SNEmbedding,
    SNLinear,
    layout,
    power_of_two_resolution,
    train_resolution,
)


@pytest.mark.parametrize(
    "resolution, channels", [(8, 1), (12, 1), (16, 3), (28, 1), (32, 3), (96, 3), (128, 3), (256, 1)]
)
def test_model_shapes(resolution, channels):
    g = Generator(num_classes=3, channels=channels, resolution=resolution, z_dim=8, width=8)
    d = Discriminator(num_classes=3, channels=channels, resolution=resolution, width=8)
    y = torch.tensor([0, 2])
    x = g(torch.randn(2, 8), y)
    assert x.shape == (2, channels, resolution, resolution) and x.abs().max() <= 1
    assert d(x, y).shape == (2,)


def test_train_resolution():
    # Square sides of the form b * 2^k (b in 4..7) train as they are; others go to a power of two.
    assert [train_resolution(s, s) for s in (8, 12, 28, 32, 48, 64, 96, 224, 256)] == [
        8, 12, 28, 32, 48, 64, 96, 224, 256,
    ]  # fmt: skip
    assert [train_resolution(s, s) for s in (5, 9, 18, 27, 36, 100, 200)] == [8, 16, 32, 32, 64, 128, 256]
    assert train_resolution(28, 24) == 32 and train_resolution(80, 96) == 128
    assert train_resolution(256, 384, requested=128) == 128  # a set resolution wins
    assert [layout(r) for r in (8, 28, 32, 48, 256)] == [(4, 1), (7, 2), (4, 3), (6, 3), (4, 6)]
    with pytest.raises(
        ConfigError,
        match=r"up to 256x256, and these images are 384x256: set synthesis.train.resolution",
    ):
        train_resolution(256, 384)


@pytest.mark.parametrize(
    "make",
    [
        lambda: SNConv2d(3, 16, 3, padding=1),
        lambda: SNLinear(32, 1),
        lambda: SNLinear(32, 8),
        lambda: SNEmbedding(10, 32),
    ],
    ids=["conv", "linear-1", "linear", "embedding"],
)
def test_spectral_norm_divides_by_the_largest_singular_value(make):
    # Seeded: power iteration converges at the rate of the top two singular values' ratio,
    # which an unseeded random matrix can make arbitrarily slow.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layer = make()
    for _ in range(300):
        layer.power_iteration()
    matrix = layer.weight.detach().flatten(1)
    normalized = layer.normalized_weight().detach().flatten(1)
    assert torch.linalg.matrix_norm(normalized, 2) == pytest.approx(1.0, rel=1e-3)
    assert torch.allclose(normalized * torch.linalg.matrix_norm(matrix, 2), matrix, rtol=1e-3, atol=1e-6)


def test_power_of_two_resolution_is_at_least_8():
    assert [power_of_two_resolution(s) for s in (1, 5, 8, 9, 16, 28, 33)] == [8, 8, 8, 16, 16, 32, 64]


def test_conditional_batch_norm_starts_as_plain_batch_norm_then_scales_per_class():
    torch.manual_seed(0)
    norm = ConditionalBatchNorm(2, num_classes=3)
    x, y = torch.randn(4, 2, 3, 3), torch.tensor([0, 1, 2, 1])
    plain = torch.nn.functional.batch_norm(x, None, None, training=True)
    assert torch.allclose(norm(x, y), plain, atol=1e-5)  # gain 1, bias 0 for every class
    with torch.no_grad():
        norm.gain.weight[1] = 2.0
        norm.bias.weight[2] = 0.5
    out = norm(x, y)
    assert torch.allclose(out[[1, 3]], 2 * plain[[1, 3]], atol=1e-5)
    assert torch.allclose(out[2], plain[2] + 0.5, atol=1e-5) and torch.allclose(out[0], plain[0], atol=1e-5)


def test_generator_block_doubles_the_map_and_discriminator_block_halves_it_when_asked():
    up = GeneratorBlock(8, 4, num_classes=3)
    assert up(torch.randn(2, 8, 4, 4), torch.tensor([0, 2])).shape == (2, 4, 8, 8)
    down = DiscriminatorBlock(3, 8, downsample=True, first=True)
    same = DiscriminatorBlock(8, 8, downsample=False, first=False)
    x = torch.randn(2, 3, 8, 8)
    assert down(x).shape == (2, 8, 4, 4) and same(down(x)).shape == (2, 8, 4, 4)
