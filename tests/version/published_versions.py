"""Published versions the tests of pipeline.version read: built once per session, since
building is the slow part (digits at its default settings less tuning and synthesis, and a
tiny image folder with augment.tune, and with GAN synthesis and mixing).

Each test module's ``published`` fixture returns :func:`published_versions`. (Not a fixture in
a conftest.py: its module name would shadow tests/conftest.py for the tests that import
helpers from it.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_GAN, TINY_TUNE
from pipeline.build import build, load_config

RECIPE = [{"Affine": {"rotate": [-20, 20], "p": 1.0}}, {"RandomBrightnessContrast": {"p": 0.5}}]

MIXED_GAN = [*TINY_GAN, "augment.mix.method=mixup"]


_BUILT: dict[str, Path] = {}  # built once for every test module of the session


def published_versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"digits", "tuned", "synthesis"}: the version folder each build published."""
    if not _BUILT:
        _BUILT.update(_build_all(tmp_path_factory.mktemp("published")))
    return dict(_BUILT)


def _build_all(root: Path) -> dict[str, Path]:
    folder = _image_folder(root / "source", {"cat": 6, "dog": 6})
    tiny = [
        "source.kind=imagefolder",
        f"source.path={folder}",
        f"output.root={root / 'out'}",
        "augment.copies_per_image=2",
        f"augment.transforms={json.dumps(RECIPE)}",
        "output.shard_size=7",
        "split.test_fraction=0.34",
        "runner.workers=1",
    ]
    digits = ["augment.tune.enabled=false", "synthesis.enabled=false", f"output.root={root / 'out'}"]
    return {
        "digits": build(load_config("config/digits.yaml", digits))[0],
        "tuned": build(load_config(None, [*tiny, *TINY_TUNE, "name=tuned"]))[0],
        "synthesis": build(load_config(None, [*tiny, *MIXED_GAN, "name=synthesis"]))[0],
    }


def _image_folder(root: Path, per_class: dict[str, int]) -> Path:
    """``root/<class>/img_k.png``: random 8x8 RGB images."""
    rng = np.random.default_rng(0)
    for name, count in per_class.items():
        (root / name).mkdir(parents=True)
        for k in range(count):
            pixels = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"img_{k:03d}.png")
    return root
