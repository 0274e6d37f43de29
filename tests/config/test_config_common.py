"""pipeline.config.common: the strict base, metric names, archive stems, paths, sizes."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.config.common import Strict, archive_stem, is_inside, metric_name, parse_size


class _Section(Strict):
    value: int = 1


def test_sections_refuse_unknown_keys_and_changes():
    with pytest.raises(ValidationError, match="extra"):
        _Section(other=2)
    section = _Section()
    with pytest.raises(ValidationError, match="frozen"):
        section.value = 3


def test_metric_name_reads_as_words():
    assert metric_name("accuracy") == "accuracy"
    assert metric_name("balanced_accuracy") == "balanced accuracy"


@pytest.mark.parametrize(
    "name, stem",
    [
        ("pets.tar.gz", "pets"),
        ("PETS.ZIP", "PETS"),
        ("data.tgz", "data"),
        ("photos", "photos"),
        ("a.png", "a.png"),
    ],
)
def test_archive_stem_drops_only_archive_suffixes(name, stem):
    assert archive_stem(name) == stem


def test_is_inside(tmp_path: Path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert is_inside(tmp_path / "a" / "b", tmp_path / "a")
    assert is_inside(tmp_path / "a", tmp_path / "a")
    assert not is_inside(tmp_path, tmp_path / "a")
    assert is_inside(tmp_path / "a" / ".." / "a" / "b", tmp_path / "a")  # resolved first


@pytest.mark.parametrize(
    "text, size", [("64MB", 64 * 10**6), ("512KiB", 512 * 1024), (" 1.5 gb ", 1_500_000_000)]
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["64", "MB", "64 parsecs", "0B"])
def test_parse_size_refuses_what_is_not_a_size(text):
    with pytest.raises(ValueError, match="size .* must"):
        parse_size(text)


def test_sizes():
    assert parse_size("512KiB") == 512 * 1024
    with pytest.raises(ValueError):
        parse_size("12 parsecs")


def test_gan_sides_are_a_small_map_grown_by_doublings():
    from pipeline.config import gan_layout, gan_side_ok

    assert [gan_layout(s) for s in (8, 28, 96, 256, 100)] == [(4, 1), (7, 2), (6, 4), (4, 6), (25, 2)]
    assert [s for s in range(1, 300) if gan_side_ok(s)][:6] == [8, 10, 12, 14, 16, 20]
    assert gan_side_ok(224) and gan_side_ok(256)
    assert not any(gan_side_ok(s) for s in (7, 9, 100, 288, 320, 512))  # odd base, or above 256
