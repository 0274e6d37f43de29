"""pipeline.config.load: YAML files, --set overrides, and errors that name the file and key."""

import pytest
import yaml
from pydantic import ValidationError

from pipeline.config import Config, EvaluateConfig, GateConfig, read_config, validate_section
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
