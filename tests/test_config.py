import re
from pathlib import Path

import pytest

from pipeline.build import load_config
from pipeline.config import AUTO_SHARD_ROWS, AUTO_SHARDS, Config, parse_size
from pipeline.core.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_embedded_digits():
    config = load_config(None)
    assert config.source.kind == "digits"
    assert config.dataset_name() == "digits"
    assert config.output.format == "parquet"
    assert not config.augment.enabled


def test_repo_configs_load(tmp_path):
    root = Path(__file__).resolve().parents[1] / "config"
    config = load_config(root / "digits.yaml")
    assert config.augment.enabled and config.augment.transforms
    # the examples are valid once their source path exists
    for name in ("imagefolder.example.yaml", "cifar10.example.yaml"):
        example = load_config(root / name, [f"source.path={tmp_path}"])
        assert example.augment.enabled


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, "augment:\n  copies_per_imag: 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "augment.copies_per_imag: unknown key" in str(info.value)


def test_wrong_type_names_key(tmp_path):
    with pytest.raises(ConfigError, match="output.shard_size"):
        load_config(write(tmp_path, "output:\n  shard_size: [1, 2]\n"))
    with pytest.raises(ConfigError, match="split.test_fraction"):
        load_config(write(tmp_path, "split:\n  test_fraction: 1.5\n"))


def test_missing_source_path_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match=f"source.path does not exist: {missing}"):
        load_config(None, ["source.kind=imagefolder", f"source.path={missing}"])
    with pytest.raises(ConfigError, match="source.path is required"):
        load_config(None, ["source.kind=cifar10"])


def test_unknown_source_kind():
    with pytest.raises(ConfigError, match="source.kind"):
        load_config(None, ["source.kind=tiff-stack"])


def test_overrides_are_typed_by_schema():
    config = load_config(None, ["seed=7", "augment.copies_per_image=1.5", "output.shard_size=64MB"])
    assert config.seed == 7 and config.augment.copies_per_image == 1.5
    assert config.output.shard_limit(total_rows=10) == ("bytes", 64 * 10**6)
    with pytest.raises(ConfigError, match="seed"):
        load_config(None, ["seed=abc"])
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        load_config(None, ["seed"])
    with pytest.raises(ConfigError, match="nonsense: unknown key"):
        load_config(None, ["nonsense.key=1"])


def test_auto_shard_size_depends_on_rows_only():
    output = load_config(None, []).output
    assert output.shard_size == "auto"
    low, high = AUTO_SHARD_ROWS
    assert output.shard_limit(total_rows=10) == ("rows", low)
    assert output.shard_limit(total_rows=AUTO_SHARDS * 3000) == ("rows", 3000)
    assert output.shard_limit(total_rows=10**9) == ("rows", high)
    with pytest.raises(ConfigError, match="shard_size"):
        load_config(None, ["output.shard_size=automatic"])


def test_copies_and_target_are_exclusive():
    with pytest.raises(ConfigError, match="either copies_per_image or target_per_class"):
        load_config(None, ["augment.copies_per_image=1", "augment.target_per_class=10"])


@pytest.mark.parametrize(
    "recipe, message",
    [
        ("[{NoSuchTransform: {}}]", "'NoSuchTransform' is not an albumentations transform"),
        ("[{Affine: {rotat: 3}}]", r"unknown parameter\(s\) \['rotat'\]"),
        ("[{Affine: {p: 7}}]", "invalid parameters"),
        ("[{Affine: {}, Blur: {}}]", "one key"),
        ("[{OneOf: {transforms: [{Nope: {}}]}}]", r"transforms\[0\].OneOf.transforms\[0\].Nope"),
        ("[{Compose: {}}]", None),
    ],
)
def test_transform_recipes_are_validated(recipe, message):
    if message is None:
        load_config(None, [f"augment.transforms={recipe}"])
        return
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"augment.transforms={recipe}"])


def test_sizes():
    assert parse_size("512KiB") == 512 * 1024
    with pytest.raises(ValueError):
        parse_size("12 parsecs")


def test_round_trip_through_yaml(tmp_path):
    import yaml

    config = load_config(
        None, ["seed=3", "augment.target_per_class=50", "augment.transforms=[{HorizontalFlip: {p: 0.5}}]"]
    )
    path = write(tmp_path, yaml.safe_dump(config.model_dump(mode="json")))
    assert load_config(path) == config
    assert isinstance(Config.model_validate(config.model_dump()), Config)


def test_empty_and_non_mapping_files(tmp_path):
    assert load_config(write(tmp_path, "")) == Config()
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(write(tmp_path, "a: [\n"))
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.yaml")


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


@pytest.mark.parametrize(
    "override, message",
    [
        ("augment.copies_per_image=-1", "augment.copies_per_image"),
        ("augment.target_per_class=-5", "augment.target_per_class"),
        ("split.test_fraction=1.5", "split.test_fraction"),
        ("split.test_fraction=0", "split.test_fraction"),
        ("synthesis.ratio=-0.5", "synthesis.ratio"),
        ("synthesis.train.steps=0", "synthesis.train.steps"),
        ("output.png_compress_level=12", "output.png_compress_level"),
        ("output.image_format=jpeg", "output.image_format"),
        ("source.on_bad_image=ignore", "source.on_bad_image"),
        ("source.duplicates=merge", "source.duplicates"),
        ("runner.workers=0", "runner.workers"),
        ('augment.transforms=[{"NoSuchTransform": {}}]', "'NoSuchTransform' is not an albumentations"),
        ('augment.transforms=[{"os.system": {}}]', "'os.system' is not an albumentations"),
        ("seed=[1, 2]", "seed"),
    ],
)
def test_impossible_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, [override])


def test_config_file_that_is_not_text(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ConfigError, match="c.yaml"):
        load_config(path)


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
