"""pipeline.config.synthesis: counts of synthetic rows, the gate, and GAN training settings."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.config.synthesis import FilterConfig, GanTrainConfig, GateConfig, SynthesisConfig


def test_count_for_by_per_class_or_ratio():
    assert SynthesisConfig().count_for(7) == 7  # ratio 1 by default
    assert SynthesisConfig(ratio=0.5).count_for(7) == 4
    assert SynthesisConfig(per_class=20).count_for(7) == 20


def test_target_per_class_fills_each_class_up_to_it():
    syn = SynthesisConfig(target_per_class=50, gate=GateConfig(enabled=False))
    assert [syn.count_for(n) for n in (5, 49, 50, 80)] == [45, 1, 0, 0]
    assert syn.count_for(0) == 0  # a class with no real images: the GAN knows nothing of it
    assert syn.most_published(5) == 45
    # With the gate, the ratios are shares of the fill: 0.5 x 45, not 0.5 x 5.
    gated = SynthesisConfig(target_per_class=50, gate=GateConfig(ratios=[0.25, 0.5]))
    assert gated.ratio_basis(5) == 45 and gated.most_published(5) == 23
    assert SynthesisConfig(ratio=2.0).ratio_basis(5) == 5


def test_most_published_is_capped_by_the_gate_ratios():
    syn = SynthesisConfig(per_class=20, gate=GateConfig(ratios=[0.5, 1.5]))
    assert syn.most_published(10) == 15
    assert SynthesisConfig(per_class=20, gate=GateConfig(enabled=False)).most_published(10) == 20


def test_synthesis_checks(tmp_path: Path):
    with pytest.raises(
        ValidationError, match="set one of per_class, ratio and target_per_class, not per_class and ratio"
    ):
        SynthesisConfig(per_class=1, ratio=1.0)
    with pytest.raises(ValidationError, match="not ratio and target_per_class"):
        SynthesisConfig(ratio=1.0, target_per_class=5)
    with pytest.raises(ValidationError, match="weight"):
        SynthesisConfig(weight=0.0)
    with pytest.raises(ValidationError, match="synthesis.checkpoint does not exist"):
        SynthesisConfig(checkpoint=tmp_path / "g.pt")
    with pytest.raises(ValidationError, match="features must be 'classifier' or 'module:function'"):
        SynthesisConfig(features="inception")
    assert SynthesisConfig(features="mod:fn").features == "mod:fn"


def test_gate_ratios_must_be_positive():
    with pytest.raises(ValidationError, match="non-empty list of positive numbers"):
        GateConfig(ratios=[])
    with pytest.raises(ValidationError, match="non-empty list of positive numbers"):
        GateConfig(ratios=[1.0, -1.0])


def test_training_and_filter_defaults_and_limits():
    train = GanTrainConfig()
    assert (train.steps, train.batch_size, train.betas, train.device) == (2000, 64, (0.0, 0.9), "auto")
    with pytest.raises(ValidationError, match="batch_size"):
        GanTrainConfig(batch_size=1)
    with pytest.raises(ValidationError, match="device"):
        GanTrainConfig(device="tpu")
    assert FilterConfig().max_oversample == 10.0
    with pytest.raises(ValidationError, match="min_confidence"):
        FilterConfig(min_confidence=1.5)


def test_bad_feature_extractor_is_a_config_error(tiny_config):
    import pytest

    from pipeline.core.errors import ConfigError

    with pytest.raises(ConfigError, match="module:function"):
        tiny_config("synthesis.features=inception")
