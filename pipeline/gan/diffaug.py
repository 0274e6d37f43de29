"""DiffAugment (Zhao et al. 2020): differentiable augmentation of real and fake batches.

Unlike the reference code, every random number comes from an injected ``torch.Generator``,
so training is reproducible and resumable. A batch's numbers are drawn in one call
(:func:`draw`) and :func:`augment` is a pure function of the batch and those numbers, so
``torch.compile`` can trace it together with the discriminator. Colour jitter is used only
for RGB, and cutout only from 16x16 up: at 8x8 a cutout square removes most of the digit
and training fails.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

MIN_CUTOUT_RESOLUTION = 16
# Columns of draw(): brightness, saturation, contrast, translation y/x, cutout centre y/x.
_COLUMNS = 7
_BRIGHTNESS, _SATURATION, _CONTRAST, _SHIFT_Y, _SHIFT_X, _CUT_Y, _CUT_X = range(_COLUMNS)


def default_policy(channels: int, resolution: int) -> tuple[str, ...]:
    """The augmentations that help at this resolution and colour depth."""
    policy = ["translation"]
    if channels == 3:
        policy.insert(0, "color")
    if resolution >= MIN_CUTOUT_RESOLUTION:
        policy.append("cutout")
    return tuple(policy)


def draw(n: int, generator: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
    """Every random number :func:`augment` needs for ``n`` images: uniform in [0, 1), (n, 7)."""
    return torch.rand(n, _COLUMNS, generator=generator, device=device)


def augment(x: torch.Tensor, policy: tuple[str, ...], r: torch.Tensor) -> torch.Tensor:
    """Apply ``policy`` (any of 'color', 'translation', 'cutout') to a batch in [-1, 1],
    with the random numbers ``r`` from :func:`draw`."""
    for name in policy:
        x = _OPS[name](x, r)
    return x


def _column(x: torch.Tensor, r: torch.Tensor, k: int) -> torch.Tensor:
    return r[:, k].view(-1, 1, 1, 1).to(x.dtype)


def _integers(r: torch.Tensor, k: int, span: int) -> torch.Tensor:
    """Uniform integers in [0, span) from column ``k``, shaped (n, 1, 1)."""
    return (r[:, k] * span).long().clamp_(max=span - 1).view(-1, 1, 1)


def _color(x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    x = x + (_column(x, r, _BRIGHTNESS) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_column(x, r, _SATURATION) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_column(x, r, _CONTRAST) + 0.5) + mean


def _translation(x: torch.Tensor, r: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift by up to ``ratio`` of the side each way, filling with zeros."""
    n, _, h, w = x.shape
    sy, sx = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    # Row i of the output reads row i + shift of the image padded by one zero row on each
    # side (index i + shift + 1), shift in [-sy, sy]; out-of-range reads hit the padding.
    rows = torch.arange(1 - sy, h + 1 - sy, device=x.device)[None, :, None] + _integers(
        r, _SHIFT_Y, 2 * sy + 1
    )
    cols = torch.arange(1 - sx, w + 1 - sx, device=x.device)[None, None, :] + _integers(
        r, _SHIFT_X, 2 * sx + 1
    )
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded[batch, rows.clamp_(0, h + 1), cols.clamp_(0, w + 1)].permute(0, 3, 1, 2)  # channels_last


def _cutout(x: torch.Tensor, r: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero a ch x cw square centred at a uniform position (clipped at the borders)."""
    _, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    # Centre c in [0, h + 1 - ch % 2); the square covers rows c - ch // 2 to c - ch // 2 + ch - 1.
    rows = torch.arange(ch // 2, h + ch // 2, device=x.device)[None, :, None] - _integers(
        r, _CUT_Y, h + 1 - ch % 2
    )
    cols = torch.arange(cw // 2, w + cw // 2, device=x.device)[None, None, :] - _integers(
        r, _CUT_X, w + 1 - cw % 2
    )
    inside = (rows >= 0) & (rows < ch) & (cols >= 0) & (cols < cw)
    return x.masked_fill(inside[:, None], 0)


_OPS = {"color": _color, "translation": _translation, "cutout": _cutout}


class AugmentedDiscriminator(nn.Module):
    """D's scores for DiffAugment-ed images: one unit, so ``torch.compile`` puts the
    augmentation's kernels in the discriminator's graph (and CUDA graph)."""

    def __init__(self, discriminator: nn.Module, policy: tuple[str, ...]):
        super().__init__()
        self.D = discriminator
        self.policy = policy

    def forward(
        self, x: torch.Tensor, r: torch.Tensor, y: torch.Tensor, apply: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``apply`` (booleans, one per image; None: all): which images are augmented."""
        augmented = augment(x, self.policy, r)
        if apply is not None:
            augmented = torch.where(apply.view(-1, 1, 1, 1), augmented, x)
        return self.D(augmented.contiguous(memory_format=torch.channels_last), y)
