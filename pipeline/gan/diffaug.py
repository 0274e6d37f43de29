"""DiffAugment (Zhao et al. 2020): differentiable augmentation of real and fake batches.

Unlike the reference code, every random draw comes from an injected ``torch.Generator``,
so training is reproducible and resumable. Colour jitter is used only for RGB, and cutout
only from 16x16 up: at 8x8 a cutout square removes most of the digit and training fails.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

MIN_CUTOUT_RESOLUTION = 16


def default_policy(channels: int, resolution: int) -> tuple[str, ...]:
    """The augmentations that help at this resolution and colour depth."""
    policy = ["translation"]
    if channels == 3:
        policy.insert(0, "color")
    if resolution >= MIN_CUTOUT_RESOLUTION:
        policy.append("cutout")
    return tuple(policy)


def diff_augment(x: torch.Tensor, policy: tuple[str, ...], generator: torch.Generator) -> torch.Tensor:
    """Apply ``policy`` (any of 'color', 'translation', 'cutout') to a batch in [-1, 1]."""
    for name in policy:
        x = _OPS[name](x, generator)
    return x


def _rand(x: torch.Tensor, generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=generator, device=x.device, dtype=torch.float32).to(x.dtype)


def _color(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    x = x + (_rand(x, g, n, 1, 1, 1) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand(x, g, n, 1, 1, 1) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(x, g, n, 1, 1, 1) + 0.5) + mean


def _translation(x: torch.Tensor, g: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    sy, sx = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    ty = torch.randint(-sy, sy + 1, (n, 1, 1), generator=g, device=x.device)
    tx = torch.randint(-sx, sx + 1, (n, 1, 1), generator=g, device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    gy = torch.clamp(gy[None] + ty + 1, 0, h + 1)
    gx = torch.clamp(gx[None] + tx + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, gy, gx].permute(0, 3, 1, 2).contiguous()


def _cutout(x: torch.Tensor, g: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), generator=g, device=x.device)
    ox = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), generator=g, device=x.device)
    gy, gx = torch.meshgrid(
        torch.arange(ch, device=x.device), torch.arange(cw, device=x.device), indexing="ij"
    )
    gy = torch.clamp(gy[None] + oy - ch // 2, 0, h - 1)
    gx = torch.clamp(gx[None] + ox - cw // 2, 0, w - 1)
    mask = torch.ones(n, h, w, dtype=x.dtype, device=x.device)
    mask[torch.arange(n, device=x.device)[:, None, None], gy, gx] = 0
    return x * mask[:, None]


_OPS = {"color": _color, "translation": _translation, "cutout": _cutout}
