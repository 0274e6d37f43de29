from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from conftest import jpeg_bytes, read_source
from pipeline.core.images import content_sha256, decode_image


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
    _, samples = read_source("imagefolder", tmp_path)
    assert samples[0].pixels.tolist() == samples[1].pixels.tolist()
    assert content_sha256(samples[0].pixels) == content_sha256(samples[1].pixels)


def test_modes_and_shapes_of_pipeline_arrays():
    from pipeline.core.images import array_mode, dataset_mode, shape_text

    assert dataset_mode({"L", "1", "I;16"}) == "L"
    assert dataset_mode({"L", "P"}) == "RGB" and dataset_mode({"L", "RGBA"}) == "RGB"
    assert array_mode(np.zeros((4, 6), np.uint8)) == "L"
    assert array_mode(np.zeros((4, 6, 3), np.uint8)) == "RGB"
    assert shape_text((24, 32)) == "32x24" and shape_text((24, 32, 3)) == "32x24x3"


def test_to_array_converts_to_the_dataset_mode():
    from pipeline.core.images import to_array

    gray = Image.fromarray(np.full((3, 5), 77, np.uint8))
    colour = to_array(gray, "RGB")
    assert colour.shape == (3, 5, 3) and colour.dtype == np.uint8 and (colour == 77).all()
    red = Image.fromarray(np.dstack([np.full((2, 2), 255, np.uint8), *[np.zeros((2, 2), np.uint8)] * 2]))
    assert to_array(red, "L").shape == (2, 2) and to_array(red, "L")[0, 0] == 76  # ITU-R 601 luma


@pytest.mark.parametrize("image_format", ["png", "webp"])
@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 3)])
def test_encode_image_is_lossless_and_deterministic(image_format, shape):
    import io

    from pipeline.core.images import encode_image

    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    data = encode_image(pixels, image_format)
    assert data == encode_image(pixels, image_format)
    decoded = np.asarray(Image.open(io.BytesIO(data)))
    assert Image.open(io.BytesIO(data)).format == image_format.upper()
    back = decoded if len(shape) == 3 or image_format == "png" else decoded[..., 0]  # WebP: 3 equal channels
    assert np.array_equal(back, pixels)


def test_header_modes_read_headers_and_skip_or_name_unreadable_files(tmp_path):
    from pipeline.core.errors import SourceError
    from pipeline.core.images import header_mode, header_modes

    Image.new("L", (4, 4)).save(tmp_path / "gray.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "colour.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    good = [tmp_path / "gray.png", tmp_path / "colour.png"]
    assert header_mode(good[0], "gray.png") == "L"
    assert header_mode(io.BytesIO((tmp_path / "colour.png").read_bytes()), "x") == "RGB"
    assert header_modes(good) == {"L", "RGB"}
    with pytest.raises(SourceError, match="junk.png: cannot read image"):
        header_modes([*good, tmp_path / "junk.png"])
    assert header_modes([*good, tmp_path / "junk.png"], skip_bad=True) == {"L", "RGB"}


@pytest.mark.parametrize("image_format", ["jpeg", "webp"])
@pytest.mark.parametrize("shape", [(32, 40), (32, 40, 3)])
def test_lossy_encoding_is_deterministic_close_and_smaller_at_lower_quality(image_format, shape):
    import io

    from pipeline.core.images import encode_image

    ramp = np.add.outer(np.arange(shape[0]), np.arange(shape[1])).astype(np.uint8) * 3
    pixels = ramp if len(shape) == 2 else np.dstack([ramp, ramp[::-1], 255 - ramp])
    high = encode_image(pixels, image_format, quality=95)
    assert high == encode_image(pixels, image_format, quality=95)
    assert Image.open(io.BytesIO(high)).format == {"jpeg": "JPEG", "webp": "WEBP"}[image_format]
    decoded = np.asarray(Image.open(io.BytesIO(high)).convert("L" if len(shape) == 2 else "RGB"))
    assert decoded.shape == pixels.shape
    assert np.abs(decoded.astype(int) - pixels).mean() < 4  # close, not equal
    assert len(encode_image(pixels, image_format, quality=20)) < len(high)


def test_jpeg_needs_a_quality_and_the_encoder_is_named():
    from pipeline.core.images import encode_image, encoder_versions

    with pytest.raises(ValueError, match="JPEG has no lossless mode"):
        encode_image(np.zeros((4, 4), np.uint8), "jpeg")
    versions = encoder_versions("jpeg")
    assert versions["opencv"] and "jpeg" in versions["codec"].lower()
