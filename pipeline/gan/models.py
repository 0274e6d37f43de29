"""Class-conditional ResNet GAN (SNGAN/BigGAN family) for 8x8 to 256x256 images.

Generator: class-conditional BatchNorm in every residual up-block. Discriminator: spectral
norm everywhere and a projection head (Miyato & Koyama 2018), no auxiliary classifier.
Both work at a square resolution :func:`train_resolution` picks from the data: the data's
own where it is b * 2^k (28x28 grows 7 -> 14 -> 28), else a power of two the sampler
resizes back from.

Spectral norm is our own (:class:`SNConv2d`, :class:`SNLinear`, :class:`SNEmbedding`): the
forward is a pure function of the weight and the power-iteration vectors, and the trainer
advances the power iteration once per step (:meth:`Discriminator.power_iteration`). Torch's
``spectral_norm`` updates its vectors in place inside the forward, which ``torch.compile``
cannot trace, and runs one iteration per forward (three per training step).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.config import GAN_MAX_SIDE, GAN_MIN_SIDE, gan_layout, gan_side_ok
from pipeline.core.errors import ConfigError
from pipeline.gan.distributed import SyncedBatchNorm2d

MIN_RESOLUTION, MAX_RESOLUTION = GAN_MIN_SIDE, GAN_MAX_SIDE
layout = gan_layout


def train_resolution(height: int, width: int, requested: int | None = None) -> int:
    """The side the networks work at: ``requested`` (``synthesis.train.resolution``, checked
    when the config loads) when given; else the image's own for a square image whose side
    is b * 2^k with b in 4..7 and k >= 1 (8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, ...,
    256), so 28x28 data trains without resampling; otherwise the smallest power of two >=
    the larger side (the data is fitted to it and the samples back, see
    :mod:`pipeline.gan.geometry`). Within 8..256.

    Raises:
        ConfigError: no resolution is requested and the images need one above 256 (the fix
            is in the config).
    """
    if requested is not None:
        return requested
    side = max(height, width)
    if height == width and gan_side_ok(side):
        return side
    resolution = power_of_two_resolution(side)
    if resolution > MAX_RESOLUTION:
        raise ConfigError(
            f"synthesis.enabled: the GAN trains at up to {MAX_RESOLUTION}x{MAX_RESOLUTION}, and these "
            f"images are {width}x{height}: set synthesis.train.resolution (e.g. 128; samples are "
            f"resized to {width}x{height}) or source.resize to at most {MAX_RESOLUTION} a side, "
            "or turn synthesis off"
        )
    return resolution


def power_of_two_resolution(side: int) -> int:
    """The smallest power of two >= ``side``, at least 8 (the only rule before native sizes)."""
    return max(MIN_RESOLUTION, 1 << math.ceil(math.log2(side)))


class _SpectralNorm:
    """Mixin: the layer uses ``weight / sigma``, sigma = u^T W v (Miyato et al. 2018).

    ``u`` and ``v`` are buffers (checkpointed, so resume is exact); gradients flow through W
    only, as in the paper. The power iteration also keeps ``u v^T`` in the weight's shape and
    memory format, so a forward computes sigma as one elementwise product and sum (two
    kernels, and float32 under autocast) instead of five.
    """

    weight: torch.Tensor

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)  # the layer's own constructor, next in the MRO
        self._init_spectral_norm()

    def _init_spectral_norm(self, iterations: int = 15) -> None:
        rows = self.weight.shape[0]
        self.register_buffer("sn_u", F.normalize(torch.randn(rows), dim=0, eps=1e-12))
        self.register_buffer("sn_v", torch.zeros(self.weight[0].numel()))
        self.register_buffer("sn_uv", torch.zeros_like(self.weight), persistent=False)
        for _ in range(iterations):
            self.power_iteration()

    @torch.no_grad()
    def power_iteration(self) -> None:
        matrix = self.weight.detach().flatten(1).float()
        _normalize_into(self.sn_v, torch.mv(matrix.t(), self.sn_u))
        _normalize_into(self.sn_u, torch.mv(matrix, self.sn_v))
        self._update_uv()

    @torch.no_grad()
    def _update_uv(self) -> None:
        self.sn_uv.copy_(torch.outer(self.sn_u, self.sn_v).view(self.sn_uv.shape))

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)  # type: ignore[misc]
        self._update_uv()  # not saved: it follows from the loaded u and v

    def normalized_weight(self) -> torch.Tensor:
        sigma = (self.weight.float() * self.sn_uv).sum()
        return self.weight / sigma


def _normalize_into(out: torch.Tensor, x: torch.Tensor, eps: float = 1e-12) -> None:
    """``out = F.normalize(x, dim=0, eps=eps)`` without the extra copy (three kernels)."""
    torch.div(x, torch.linalg.vector_norm(x).clamp_min_(eps), out=out)


class SNConv2d(_SpectralNorm, nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.normalized_weight(), self.bias)


class SNLinear(_SpectralNorm, nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.normalized_weight(), self.bias)


class SNEmbedding(_SpectralNorm, nn.Embedding):
    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return F.embedding(y, self.normalized_weight())


class ConditionalBatchNorm(nn.Module):
    """BatchNorm without its own affine; per-class gain and bias instead."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.norm = SyncedBatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias(y)[:, :, None, None], self.norm(x), self.gain(y)[:, :, None, None])


class GeneratorBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, num_classes: int):
        super().__init__()
        self.bn1 = ConditionalBatchNorm(in_ch, num_classes)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.bn2 = ConditionalBatchNorm(out_ch, num_classes)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, y)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))
        # A 1x1 convolution commutes with nearest upsampling: convolve the small map.
        return h + F.interpolate(self.skip(x), scale_factor=2, mode="nearest")


class Generator(nn.Module):
    """z (and class) -> image in [-1, 1] at ``resolution``."""

    def __init__(self, *, num_classes: int, channels: int, resolution: int, z_dim: int = 64, width: int = 64):
        super().__init__()
        self.z_dim = z_dim
        self.num_classes = num_classes
        self._base, blocks = layout(resolution)
        widths = [width * min(4, 2 ** (blocks - i)) for i in range(blocks + 1)]
        self.linear = nn.Linear(z_dim, self._base * self._base * widths[0])
        self.blocks = nn.ModuleList(
            GeneratorBlock(widths[i], widths[i + 1], num_classes) for i in range(blocks)
        )
        self.out_bn = SyncedBatchNorm2d(widths[-1])
        self.out_conv = nn.Conv2d(widths[-1], channels, 3, padding=1)
        self._first = widths[0]

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.linear(z).view(z.shape[0], self._first, self._base, self._base)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.out_conv(F.relu(self.out_bn(h))))


class DiscriminatorBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, downsample: bool, first: bool):
        super().__init__()
        self.conv1 = SNConv2d(in_ch, out_ch, 3, padding=1)
        self.conv2 = SNConv2d(out_ch, out_ch, 3, padding=1)
        self.skip = SNConv2d(in_ch, out_ch, 1)
        self.downsample = downsample
        self.first = first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h))) + self.skip(x)
        return F.avg_pool2d(h, 2) if self.downsample else h  # pooling is linear: pool the sum once


class Discriminator(nn.Module):
    """Image (and class) -> realness score, with a projection head for the class."""

    def __init__(self, *, num_classes: int, channels: int, resolution: int, width: int = 64):
        super().__init__()
        downs = layout(resolution)[1]
        widths = [channels] + [width * min(4, 2**i) for i in range(downs + 1)]
        self.blocks = nn.Sequential(
            *(
                DiscriminatorBlock(widths[i], widths[i + 1], downsample=i < downs, first=i == 0)
                for i in range(downs + 1)
            )
        )
        self.linear = SNLinear(widths[-1], 1)
        self.embed = SNEmbedding(num_classes, widths[-1])

    @torch.no_grad()
    def power_iteration(self) -> None:
        """One power-iteration step for every spectral-normalized layer (once per D update)."""
        for module in self.modules():
            if isinstance(module, _SpectralNorm):
                module.power_iteration()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))
        return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(dim=1)
