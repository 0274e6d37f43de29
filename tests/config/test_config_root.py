"""pipeline.config.root: the whole tree, its name, and the settings that decide the content."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.build import load_config
from pipeline.config import (
    Config,
    EvaluateConfig,
    OutputConfig,
    RunnerConfig,
    SourceConfig,
)
from pipeline.core.errors import ConfigError


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


def test_gan_synthesis_refuses_a_large_resize_unless_it_trains_at_a_set_resolution():
    with pytest.raises(ValidationError, match="the GAN trains at up to 256x256, and source.resize"):
        Config.model_validate({"synthesis": {"enabled": True}, "source": {"resize": [384, 512]}})
    Config.model_validate({"synthesis": {"enabled": True}, "source": {"resize": [256, 256]}})
    Config.model_validate(
        {"synthesis": {"enabled": True, "train": {"resolution": 128}}, "source": {"resize": [384, 512]}}
    )


@pytest.mark.parametrize("side", [7, 9, 100, 288, 512])
def test_a_gan_resolution_the_networks_cannot_grow_to_is_refused(side):
    with pytest.raises(ValidationError, match=f"synthesis.train.resolution {side} is not a side"):
        Config.model_validate({"synthesis": {"train": {"resolution": side}}})


def test_lossy_output_enters_the_content_with_its_quality_and_encoder():
    import cv2

    png = Config().content_dict()["output"]
    assert "quality" not in png and "encoder" not in png
    jpeg = Config(output=OutputConfig(image_format="jpeg")).content_dict()["output"]
    assert jpeg["quality"] == 95 and jpeg["encoder"]["opencv"] == cv2.__version__
    # The default quality and the same number written out make the same version.
    assert Config(output=OutputConfig(image_format="jpeg", quality=95)).content_dict()["output"] == jpeg
    assert Config(output=OutputConfig(image_format="jpeg", quality=90)).content_dict()["output"] != jpeg
    lossless = Config(output=OutputConfig(image_format="webp")).content_dict()["output"]
    assert "encoder" not in lossless and "quality" not in lossless
    lossy = Config(output=OutputConfig(image_format="webp", quality=80)).content_dict()["output"]
    assert lossy["quality"] == 80 and "WEBP" not in lossy["encoder"]["codec"]
    with pytest.raises(ValidationError, match="output.quality 90 applies to lossy formats"):
        OutputConfig(quality=90)


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


def test_runner_and_lock_settings_do_not_change_the_content():
    base = load_config(None, [])
    other = load_config(
        None, ["runner.workers=3", "runner.kind=dask", "output.lock_timeout=9", "output.root=/elsewhere"]
    )
    assert base.content_dict() == other.content_dict()
    with pytest.raises(ConfigError, match="runner.address is only used with runner.kind 'dask'"):
        load_config(None, ["runner.address=tcp://127.0.0.1:8786"])


def test_a_chosen_metric_enters_the_content_and_the_default_is_left_out():
    stages = ["augment.tune.enabled=true", "synthesis.enabled=true", "synthesis.device=cpu"]
    stages.append("synthesis.train.device=cpu")
    default = load_config(None, stages).content_dict()
    assert "metric" not in default["augment"]["tune"] and "metric" not in default["synthesis"]["gate"]
    for key in ("augment.tune.metric", "synthesis.gate.metric"):
        assert load_config(None, [*stages, f"{key}=accuracy"]).content_dict() == default
        assert load_config(None, [*stages, f"{key}=balanced_accuracy"]).content_dict() != default
        with pytest.raises(ConfigError, match=key):
            load_config(None, [*stages, f"{key}=f1"])


def test_the_synthesis_devices_enter_the_content_as_the_device_picked(monkeypatch):
    """Float results differ between device types: 'auto' on a GPU host is other content
    than on a CPU, and 'auto' where there is no GPU is the same content as 'cpu'; on the
    CPU they differ between thread counts too."""
    import torch

    synthesis = ["synthesis.enabled=true"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    on_cpu = load_config(None, synthesis).content_dict()
    assert (on_cpu["synthesis"]["device"], on_cpu["synthesis"]["train"]["device"]) == ("cpu", "cpu")
    explicit = ["synthesis.device=cpu", "synthesis.train.device=cpu"]
    assert load_config(None, [*synthesis, *explicit]).content_dict() == on_cpu
    for key in ("synthesis.device", "synthesis.train.device"):
        with pytest.raises(ConfigError, match=f"{key}: cuda is not available on this machine"):
            load_config(None, [*synthesis, f"{key}=cuda"]).content_dict()
    # CPU results also depend on torch's thread count (it splits sums by thread)
    threads = torch.get_num_threads()
    assert on_cpu["synthesis"]["cpu_threads"] == threads
    torch.set_num_threads(threads + 1)
    try:
        assert load_config(None, synthesis).content_dict() != on_cpu
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    on_gpu = load_config(None, synthesis).content_dict()
    assert (on_gpu["synthesis"]["device"], on_gpu["synthesis"]["train"]["device"]) == ("cuda", "cuda")
    assert "cpu_threads" not in on_gpu["synthesis"]
    assert load_config(None, [*synthesis, *explicit]).content_dict() == on_cpu


@pytest.mark.parametrize("kind", ["imagefolder", "parquet"])
def test_an_output_root_inside_a_folder_source_is_refused(tmp_path, monkeypatch, kind):
    """Folder sources are read recursively: versions published inside one would be read
    back as source images by the next run."""
    source = tmp_path / "data"
    source.mkdir()
    monkeypatch.chdir(source)
    for root, inside in (("output", True), (str(source), True), ("../versions", False)):
        overrides = [f"source.kind={kind}", "source.path=.", f"output.root={root}"]
        if inside:
            with pytest.raises(ConfigError, match="output.root '.*' is inside source.path '.'"):
                load_config(None, overrides)
        else:
            assert load_config(None, overrides).output.root == Path(root)
    assert load_config(None, ["output.root=output"]).output.root == Path("output")  # digits


def test_synthesis_keys_added_later_enter_the_content_only_away_from_their_default():
    stages = ["synthesis.enabled=true", "synthesis.device=cpu", "synthesis.train.device=cpu"]
    default = load_config(None, stages).content_dict()["synthesis"]
    assert "weight" not in default and "target_per_class" not in default
    assert "per_class" not in default["gate"] and "loss" not in default["train"]
    assert "drs" not in default["filter"] and "classifier_grid" not in default["gate"]
    for key, value in [
        ("synthesis.weight", "0.5"),
        ("synthesis.gate.per_class", "true"),
        ("synthesis.train.loss", "minimax"),
        ("synthesis.filter.drs", "0.95"),
        ("synthesis.gate.classifier_grid", "2"),
    ]:
        assert load_config(None, [*stages, f"{key}={value}"]).content_dict()["synthesis"] != default
    filled = load_config(None, [*stages, "synthesis.target_per_class=40"]).content_dict()["synthesis"]
    assert filled["target_per_class"] == 40


def test_drs_takes_a_quantile_strictly_between_0_and_1():
    for value in ("0", "1", "1.5"):
        with pytest.raises(ConfigError, match="synthesis.filter.drs"):
            load_config(None, [f"synthesis.filter.drs={value}"])
    assert load_config(None, ["synthesis.filter.drs=0.8"]).synthesis.filter.drs == 0.8
