"""pipeline.config.source: where images come from, and the test split."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.build import load_config
from pipeline.config.common import MAX_RESIZE
from pipeline.config.source import SourceConfig, SplitConfig
from pipeline.core.errors import ConfigError


def test_digits_takes_no_path_and_other_kinds_need_one(tmp_path: Path):
    assert SourceConfig().kind == "digits"
    with pytest.raises(ValidationError, match="not used with kind 'digits'"):
        SourceConfig(path=tmp_path)
    with pytest.raises(ValidationError, match="source.path is required for source kind 'imagefolder'"):
        SourceConfig(kind="imagefolder")
    with pytest.raises(ValidationError, match="source.path does not exist"):
        SourceConfig(kind="imagefolder", path=tmp_path / "missing")
    assert SourceConfig(kind="imagefolder", path=tmp_path).path == tmp_path


def test_columns_are_for_parquet_only(tmp_path: Path):
    with pytest.raises(ValidationError, match="source.label_column is used only with source kind 'parquet'"):
        SourceConfig(kind="imagefolder", path=tmp_path, label_column="y")
    assert SourceConfig(kind="parquet", path=tmp_path, image_column="img").image_column == "img"


def test_resize_sides_and_resizing():
    assert SourceConfig().resizing is None
    assert SourceConfig(resize=(32, 48), resize_mode="pad").resizing == ((32, 48), "pad")
    with pytest.raises(ValidationError, match=f"sides must be 1 to {MAX_RESIZE} pixels, got \\[0, 8\\]"):
        SourceConfig(resize=(0, 8))


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_test_fraction_lies_strictly_between_0_and_1(fraction):
    assert SplitConfig().test_fraction == 0.2
    with pytest.raises(ValidationError, match="test_fraction"):
        SplitConfig(test_fraction=fraction)


def test_missing_source_path_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match=f"source.path does not exist: {missing}"):
        load_config(None, ["source.kind=imagefolder", f"source.path={missing}"])
    with pytest.raises(ConfigError, match="source.path is required"):
        load_config(None, ["source.kind=cifar10"])


def test_unknown_source_kind():
    with pytest.raises(ConfigError, match="source.kind"):
        load_config(None, ["source.kind=tiff-stack"])
