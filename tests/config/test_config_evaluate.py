"""pipeline.config.evaluate: the evaluation settings, their messages, and their place in Config."""

import json

import pytest
from pydantic import ValidationError

from pipeline.config import Config, EvaluateConfig, read_config, validate_section
from pipeline.config.evaluate import report_stem
from pipeline.core.errors import ConfigError


def test_defaults():
    settings = EvaluateConfig()
    assert (settings.seeds, settings.epochs, settings.real_per_class, settings.seed, settings.device) == (
        3,
        30,
        None,
        0,
        "auto",
    )
    assert settings.grid == 2  # the stronger head, chosen on validation images (bench/README.md)
    assert Config().evaluate == settings


@pytest.mark.parametrize(
    "values, message",
    [
        ({"seeds": 0}, "evaluation needs seeds >= 1 and epochs >= 1, got 0, 30"),
        ({"epochs": 0}, "evaluation needs seeds >= 1 and epochs >= 1, got 3, 0"),
        ({"real_per_class": 0}, "real_per_class must be at least 1, got 0"),
        ({"device": "tpu"}, "device must be auto, cpu, cuda or mps, got 'tpu'"),
    ],
)
def test_bad_values_keep_the_messages_expand_evaluate_gives(values, message):
    with pytest.raises(ValidationError, match=message):
        EvaluateConfig(**values)
    with pytest.raises(ConfigError) as caught:
        validate_section(EvaluateConfig, values)
    assert str(caught.value) == message


def test_stem_names_the_low_data_protocol():
    assert EvaluateConfig().stem == report_stem(None) == "evaluation"
    assert EvaluateConfig(real_per_class=5).stem == report_stem(5) == "evaluation-k5"


def test_the_evaluate_section_loads_from_yaml_and_never_enters_the_content(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("evaluate: {seeds: 5, device: cpu}\n")
    config = read_config(path)
    assert (config.evaluate.seeds, config.evaluate.device) == (5, "cpu")
    assert "evaluate" not in config.content_dict()
    assert json.dumps(config.content_dict(), sort_keys=True) == json.dumps(
        Config().content_dict(), sort_keys=True
    )
    path.write_text("evaluate: {epochs: 0}\n")
    with pytest.raises(ConfigError, match=r"(?s)c.yaml.*evaluate: evaluation needs seeds >= 1"):
        read_config(path)
    with pytest.raises(ConfigError, match="evaluate.device: device must be"):
        read_config(None, ["evaluate.device=tpu"])
    with pytest.raises(ConfigError, match="evaluate.grid"):
        read_config(None, ["evaluate.grid=0"])
