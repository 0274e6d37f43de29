"""pipeline.config.load: YAML files, --set overrides, and errors that name the file and key."""

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from pipeline.build import load_config
from pipeline.config import (
    Config,
    EvaluateConfig,
    GateConfig,
    read_config,
    validate_section,
)
from pipeline.config.load import apply_override, format_validation_error
from pipeline.core.errors import ConfigError


def write(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_read_config_applies_the_file_then_the_overrides(tmp_path):
    path = write(tmp_path, "seed: 3\naugment: {copies_per_image: 2}\n")
    config = read_config(path, ["augment.copies_per_image=4", "synthesis.gate.ratios=[0.5]"])
    assert (config.seed, config.augment.copies_per_image, config.synthesis.gate.ratios) == (3, 4, [0.5])
    assert read_config(None) == Config()
    assert read_config(write(tmp_path, "")) == Config()


def test_a_config_round_trips_through_yaml(tmp_path):
    config = read_config(None, ["seed=7", "augment.copies_per_image=1.5", "augment.mix.method=cutmix"])
    again = read_config(write(tmp_path, yaml.safe_dump(config.model_dump(mode="json"))))
    assert again == config and again.content_dict() == config.content_dict()


@pytest.mark.parametrize(
    "text, message",
    [
        ("augment: {copys: 2}\n", r"config.yaml:\n  augment.copys: unknown key"),
        ("source: {kind: zip}\n", r"source.kind: Input should be .*, got 'zip'"),
        ("seed: [1\n", "invalid YAML"),
        ("- 1\n", "the top level must be a mapping, got list"),
    ],
)
def test_errors_name_the_file_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        read_config(write(tmp_path, text))


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        read_config(tmp_path / "missing.yaml")
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        read_config(path)


def test_apply_override():
    raw = {"augment": {"copies_per_image": 1}}
    apply_override(raw, "augment.tune.enabled=true")
    apply_override(raw, "name=")
    assert raw == {"augment": {"copies_per_image": 1, "tune": {"enabled": True}}, "name": None}
    for bad, message in [
        ("novalue", "expected dotted.key=value"),
        ("a..b=1", "expected"),
        ("x=[1", "not valid YAML"),
    ]:
        with pytest.raises(ConfigError, match=message):
            apply_override({}, bad)
    with pytest.raises(ConfigError, match="'seed' is not a section"):
        apply_override({"seed": 1}, "seed.x=2")


def test_format_validation_error_lists_every_problem():
    with pytest.raises(ValidationError) as caught:
        Config.model_validate({"seed": -1, "extra": 1})
    text = format_validation_error("c.yaml", caught.value)
    assert text.splitlines()[0] == "invalid config c.yaml:"
    assert "  extra: unknown key" in text and "  seed: Input should be greater than or equal to 0" in text


def test_validate_section_gives_the_section_or_one_config_error():
    assert validate_section(EvaluateConfig, {"seeds": 1}) == EvaluateConfig(seeds=1)
    with pytest.raises(ConfigError, match="^seeds: Input should be a valid integer"):
        validate_section(GateConfig, {"seeds": "many"})
    with pytest.raises(
        ConfigError, match=r"ratios must be a non-empty list .*, got \[\]; seeds: Input should be greater"
    ):
        validate_section(GateConfig, {"ratios": [], "seeds": 0})


def test_defaults_are_the_embedded_digits():
    config = load_config(None)
    assert config.source.kind == "digits"
    assert config.dataset_name() == "digits"
    assert config.output.format == "parquet"
    assert not config.augment.enabled


def test_repo_configs_load(tmp_path):
    root = Path(__file__).resolve().parents[2] / "config"
    config = load_config(root / "digits.yaml")
    assert config.augment.enabled and config.augment.transforms
    # the examples are valid once their source path exists
    for name in ("imagefolder.example.yaml", "cifar10.example.yaml", "seed.yaml"):
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
        ("output.image_format=gif", "output.image_format"),
        ("output.quality=101", "output.quality"),
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
