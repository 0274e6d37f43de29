"""A custom albumentations transform for tests/test_bad_input.py (allowed by config)."""

import albumentations as A
import numpy as np


class Invert(A.ImageOnlyTransform):
    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        return 255 - img


class NotATransform:
    pass


class Blank(A.ImageOnlyTransform):
    """Makes the image constant (with probability p): a degenerate augmentation."""

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        return np.zeros_like(img)
