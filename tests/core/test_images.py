from __future__ import annotations
import io
import json
import re
import struct
import zlib
from pathlib import Path
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from conftest import make_imagefolder, png_bytes, random_image
from pipeline.build import build, load_config
from pipeline.core.errors import ConfigError, SourceError
from pipeline.core.images import decode_image
from pipeline.ingest.stage import ingest
from pipeline.ingest.store import EXCLUDED
from pipeline.version.manifest import read_manifest
import pickle
from dataclasses import replace
from conftest import idx_bytes, make_cifar, make_imagefolder, make_mnist, make_parquet
from pipeline.config import SourceConfig
from pipeline.core.errors import SourceError
from pipeline.core.images import content_sha256
from pipeline.sources import open_source

def test_exotic_modes_are_normalised(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    cmyk = jpeg_bytes(Image.fromarray(rgb).convert("CMYK"))
    wide = Image.fromarray((np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16))
    one_bit = Image.fromarray(np.eye(8, dtype=bool))
    rgba = Image.fromarray(np.dstack([rgb, np.full((8, 8), 0, np.uint8)]), "RGBA")
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    palette.info["transparency"] = 0
    cases = {"cmyk.jpg": cmyk, "wide.png": wide, "bit.png": one_bit, "rgba.png": rgba, "p.png": palette}
    for name, image in cases.items():
        path = tmp_path / name
        path.write_bytes(image) if isinstance(image, bytes) else image.save(path)
    assert decode_image(tmp_path / "cmyk.jpg", "RGB", "x").shape == (8, 8, 3)
    assert decode_image(tmp_path / "wide.png", "L", "x")[0, 1] == 1000 >> 8
    assert set(np.unique(decode_image(tmp_path / "bit.png", "L", "x"))) == {0, 255}
    assert not decode_image(tmp_path / "rgba.png", "RGB", "x").any()  # transparent: on black
    assert decode_image(tmp_path / "p.png", "RGB", "x").shape == (8, 8, 3)

def test_exif_orientation_is_applied(tmp_path):
    image = Image.fromarray(np.tile(np.arange(8, dtype=np.uint8) * 30, (4, 1)))  # 8 wide, 4 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=100)
    assert decode_image(tmp_path / "rotated.jpg", "L", "x").shape == (8, 4)

def test_resize_fits_crop_pad_and_stretch():
    from pipeline.core.images import resize_to

    wide = np.zeros((10, 40), np.uint8)
    wide[:, 10:30] = 200  # a bright centre band, half the width
    crop, pad, stretch = (resize_to(wide, (20, 20), fit) for fit in ("crop", "pad", "stretch"))
    assert crop.shape == pad.shape == stretch.shape == (20, 20)
    assert crop.min() > 150  # the centre only: the band fills it
    assert pad[:5].max() == 0 and pad[-5:].max() == 0 and pad[10, 10] > 150  # black above and below
    assert stretch[:, 0].max() < 50 and stretch[:, 10].min() > 150  # the whole width, squeezed
    assert resize_to(wide, (10, 40), "crop") is wide

def test_content_hash_ignores_encoding(tmp_path):
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8)
    folder = tmp_path / "k"
    folder.mkdir()
    Image.fromarray(pixels).save(folder / "a.png")
    Image.fromarray(pixels).save(folder / "b.bmp")
    _, samples = read("imagefolder", tmp_path)
    assert samples[0].pixels.tolist() == samples[1].pixels.tolist()
    assert content_sha256(samples[0].pixels) == content_sha256(samples[1].pixels)
