"""Custom albumentations transforms for the tests (allowed by config)."""

import time

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


class Slow(A.ImageOnlyTransform):
    """Takes ``seconds`` per image: keeps a run busy long enough to be interrupted."""

    def __init__(self, seconds: float = 0.002, p: float = 1.0):
        super().__init__(p=p)
        self.seconds = seconds

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        time.sleep(self.seconds)
        return img
