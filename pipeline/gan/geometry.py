"""How images of any size meet the GAN's square resolution (``synthesis.train.fit``).

The networks work at a square side R (:func:`pipeline.gan.models.train_resolution`). A
training image of H x W becomes R x R, and a sample of R x R becomes H x W, by one of
three policies, applied the same way both ways so that a sample has the geometry of the
data it imitates:

- ``stretch``: scale each side on its own (H x W -> R x R -> H x W). Nothing is cut or
  padded; shapes are squeezed while the GAN learns and restored in its samples.
- ``pad``: scale the longer side to R and centre the image on black (letterbox); samples
  lose the bars (the letterbox's inside is cut out) and are scaled to H x W. Aspect
  ratio is kept both ways; the bars cost the GAN part of its resolution.
- ``crop``: the GAN learns the centre square of each image (the shorter side); samples
  are scaled to cover H x W and the centre cut out, so they show that central square,
  scaled up by longer / shorter side. For subjects in the middle of the frame.

Scaling is bilinear with antialiasing; pixels are in [-1, 1], so black is -1.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch.nn import functional as F

Fit = Literal["stretch", "crop", "pad"]


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def _letterbox(height: int, width: int, resolution: int) -> tuple[int, int, int, int]:
    """(top, left, inner height, inner width) of an H x W image letterboxed in R x R."""
    scale = resolution / max(height, width)
    inner_h, inner_w = max(1, round(height * scale)), max(1, round(width * scale))
    return (resolution - inner_h) // 2, (resolution - inner_w) // 2, inner_h, inner_w


def to_square(x: torch.Tensor, resolution: int, fit: Fit) -> torch.Tensor:
    """Images (N, C, H, W) in [-1, 1] -> (N, C, R, R) by the ``fit`` policy."""
    height, width = x.shape[2:]
    if fit == "crop" and height != width:
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        x = x[:, :, top : top + side, left : left + side]
    elif fit == "pad" and height != width:
        top, left, inner_h, inner_w = _letterbox(height, width, resolution)
        x = _resize(x, (inner_h, inner_w))
        padding = [left, resolution - inner_w - left, top, resolution - inner_h - top]
        return F.pad(x, padding, value=-1.0)
    return _resize(x, (resolution, resolution))


def from_square(x: torch.Tensor, size: tuple[int, int], fit: Fit) -> torch.Tensor:
    """Samples (N, C, R, R) -> (N, C, H, W) for ``size`` (H, W), inverting :func:`to_square`:
    ``pad`` cuts out the letterbox's inside (no bar) and scales it to H x W; ``crop``
    scales the square to the longer side and cuts out the centre."""
    height, width = size
    if fit == "stretch" or height == width:
        return _resize(x, size)
    if fit == "pad":
        top, left, inner_h, inner_w = _letterbox(height, width, x.shape[2])
        return _resize(x[:, :, top : top + inner_h, left : left + inner_w], size).contiguous()
    side = max(height, width)
    x = _resize(x, (side, side))
    top, left = (side - height) // 2, (side - width) // 2
    return x[:, :, top : top + height, left : left + width].contiguous()


def images_to_tensor(images: np.ndarray, resolution: int, fit: Fit = "stretch") -> torch.Tensor:
    """uint8 (N, H, W[, C]) -> float (N, C, R, R) in [-1, 1], fitted to the GAN resolution
    (see :mod:`pipeline.gan.geometry`), a chunk at a time (photos in float are large)."""
    array = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    parts = [
        to_square(
            torch.from_numpy(np.ascontiguousarray(array[i : i + 256])).float().div_(127.5).sub_(1.0),
            resolution,
            fit,
        )
        for i in range(0, len(array), 256)
    ]
    return torch.cat(parts) if parts else torch.empty(0, array.shape[1], resolution, resolution)
