"""pipeline.config.root: the whole tree, its name, and the settings that decide the content."""

import pytest
from pydantic import ValidationError

from pipeline.config import Config, EvaluateConfig, OutputConfig, RunnerConfig, SourceConfig


def test_dataset_name_from_the_name_or_the_source(tmp_path):
    assert Config(name="pets").dataset_name() == "pets"
    assert Config().dataset_name() == "digits"
    archive = tmp_path / "My Pets.tar.gz"
    archive.write_bytes(b"")
    assert Config(source=SourceConfig(kind="imagefolder", path=archive)).dataset_name() == "My-Pets"


def test_names_are_safe_folder_names():
    with pytest.raises(ValidationError, match="must be 1-100 characters"):
        Config(name="../up")


def test_output_must_not_lie_inside_a_folder_source(tmp_path):
    with pytest.raises(ValidationError, match="is inside source.path"):
        Config(
            source=SourceConfig(kind="imagefolder", path=tmp_path),
            output=OutputConfig(root=tmp_path / "out"),
        )


def test_gan_synthesis_refuses_a_large_resize():
    with pytest.raises(ValidationError, match="GAN synthesis supports images up to 64x64"):
        Config.model_validate({"synthesis": {"enabled": True}, "source": {"resize": [128, 128]}})


def test_content_dict_leaves_out_where_and_how_a_run_writes():
    base = Config().content_dict()
    for key in ("name", "runner", "evaluate", "synthesis"):
        assert key not in base
    assert set(base["output"]) == {"format", "shard_size", "image_format", "png_compress_level"}
    assert "tune" not in base["augment"]
    elsewhere = Config(
        name="other",
        runner=RunnerConfig(workers=2),
        output=OutputConfig(root="/elsewhere", lock_timeout=5),
        evaluate=EvaluateConfig(seeds=9),
    )
    assert elsewhere.content_dict() == base
    assert Config(seed=1).content_dict() != base


def test_content_dict_of_a_synthesis_run_names_the_devices_used():
    content = Config.model_validate(
        {"synthesis": {"enabled": True, "device": "cpu", "train": {"device": "cpu"}}}
    ).content_dict()
    assert content["synthesis"]["device"] == content["synthesis"]["train"]["device"] == "cpu"
    assert "checkpoint" not in content["synthesis"] and content["synthesis"]["cpu_threads"] >= 1
    assert "metric" not in content["synthesis"]["gate"]  # the default metric: ids made before it stay
