"""pipeline.gan.gate: the utility gate's decision from per-image correctness."""

import numpy as np
import pytest
import torch

from conftest import TINY_GAN
from pipeline.build import load_config
from pipeline.config import Config
from pipeline.core.errors import ConfigError
from pipeline.core.progress import GATE, reporting
from pipeline.evaluate.classifier import metric_weights, score
from pipeline.gan import gate
from pipeline.gan.gate import gate_decision, synthesis_device, take_ratio
from pipeline.ingest.store import RealData


def _answers(right: int, fixed: int = 0, broken: int = 0, n: int = 200) -> np.ndarray:
    """Correctness on n validation images: the baseline's first ``right`` correct, then
    ``fixed`` of its mistakes made right and ``broken`` of its hits made wrong."""
    correct = np.arange(n) < right
    correct[right : right + fixed] = True
    correct[:broken] = False
    return correct


def test_gate_declines_a_gain_of_one_validation_image():
    # 11 images fixed, 10 broken: +0.5 points on 200 images, as in the Fashion-MNIST bench.
    correct = {"0": np.stack([_answers(170)] * 2), "0.5": np.stack([_answers(170, 11, 10)] * 2)}
    decision = gate_decision(correct, min_gain=0.0)
    assert decision["chosen_ratio"] == 0.0
    half = decision["accuracy"]["0.5"]
    assert half["gain"] == pytest.approx(0.005) and half["runs"] == pytest.approx([0.855, 0.855])
    assert half["interval"]["low"] < 0 < half["interval"]["high"]
    assert "ratio 0.5" in decision["reason"] and "95.0%" in decision["reason"]


def test_a_tie_never_opens_the_gate():
    # The digits case: 0.97 - 0.9625 is 0.00750000000000006 in floating point, and the old
    # rule compared it with a threshold of 0.0075. Identical answers are a tie whatever the
    # rounding; so is a gain exactly at min_gain.
    same = np.stack([_answers(193), _answers(192)])
    assert gate_decision({"0": same, "1": same.copy()}, min_gain=0.0)["chosen_ratio"] == 0.0
    better = np.stack([_answers(193, 100), _answers(192, 100)])
    exact = gate_decision({"0": same, "1": better}, min_gain=0.0)["accuracy"]["1"]["interval"]["low"]
    assert gate_decision({"0": same, "1": better}, min_gain=exact)["chosen_ratio"] == 0.0


def test_gate_takes_the_best_ratio_whose_interval_clears_min_gain():
    correct = {
        "0": np.stack([_answers(140)] * 3),
        "0.5": np.stack([_answers(140, 20, 0)] * 3),  # +10 points: 20 images fixed, none broken
        "1": np.stack([_answers(140, 60, 46)] * 3),  # +7 points, but 106 images changed
    }
    decision = gate_decision(correct, min_gain=0.0)
    assert decision["chosen_ratio"] == 0.5 and "+0.1000" in decision["reason"]
    # Two ratios tried: each interval is at 97.5 % (Bonferroni), so it is wider than at 95 %.
    wide = decision["accuracy"]["0.5"]["interval"]
    alone = gate_decision({"0": correct["0"], "0.5": correct["0.5"]}, 0.0)["accuracy"]["0.5"]["interval"]
    assert wide["confidence"] == pytest.approx(0.975) and wide["low"] < alone["low"]
    # A min_gain above every interval declines both.
    assert gate_decision(correct, min_gain=0.09)["chosen_ratio"] == 0.0


def test_gate_sees_the_noise_between_seeds():
    # Seed 0 gains 20 images, seed 1 loses 20, seed 2 gains 22: +3.7 points on average, but
    # the seeds disagree, so the interval spans zero and the gate stays shut.
    correct = {
        "0": np.stack([_answers(150)] * 3),
        "1": np.stack([_answers(150, 20, 0), _answers(150, 0, 20), _answers(150, 22, 0)]),
    }
    decision = gate_decision(correct, min_gain=0.0)
    entry = decision["accuracy"]["1"]
    assert entry["runs"] == pytest.approx([0.85, 0.65, 0.86]) and entry["gain"] == pytest.approx(0.11 / 3)
    assert entry["std"] == pytest.approx(np.std([0.85, 0.65, 0.86], ddof=1))
    assert entry["interval"]["per_seed"] == pytest.approx([0.1, -0.1, 0.11])
    assert decision["chosen_ratio"] == 0.0 and entry["interval"]["low"] < 0


def test_the_gate_can_weigh_every_class_alike():
    # 180 validation images of class 0, 20 of class 1. Ratio 1 fixes 10 of class 1 and
    # breaks 6 of class 0: +2 points of accuracy, +23.3 of balanced accuracy.
    labels = np.r_[np.zeros(180, int), np.ones(20, int)]
    base = np.r_[np.ones(180, bool), np.zeros(20, bool)]
    better = base.copy()
    better[:6], better[180:190] = False, True
    correct = {"0": base[None], "1": better[None]}
    plain = gate_decision(correct, min_gain=0.05)
    assert plain["chosen_ratio"] == 0.0 and plain["accuracy"]["1"]["gain"] == pytest.approx(0.02)
    weights = metric_weights(labels, "balanced_accuracy")
    balanced = gate_decision(correct, 0.05, weights=weights, metric="balanced accuracy")
    entry = balanced["accuracy"]["1"]
    assert entry["gain"] == pytest.approx((10 / 20 - 6 / 180) / 2)
    assert balanced["accuracy"]["0"]["mean"] == pytest.approx(0.5)  # class 0 all right, class 1 none
    assert balanced["chosen_ratio"] == 1.0 and "balanced accuracy by +0.2333" in balanced["reason"]
    declined = gate_decision(correct, 0.3, weights=weights, metric="balanced accuracy")
    assert declined["reason"].startswith("no ratio beat real in validation balanced accuracy by more than")
    assert metric_weights(labels, "accuracy") is None
    assert score(better, weights) == pytest.approx((174 / 180 + 10 / 20) / 2)


def test_take_ratio_keeps_the_first_rows_of_each_class_in_proportion_to_its_real_count():
    rows = {"labels": np.array([0, 0, 0, 1, 1, 1]), "seeds": np.arange(10, 16)}
    real = RealData(np.zeros((6, 2, 2), np.uint8), np.array([0, 0, 1, 1, 1, 1]), list("abcdef"))
    half = take_ratio(rows, 0.5, real)  # class 0: 0.5 x 2 real = 1 row; class 1: 0.5 x 4 = 2 rows
    assert half["labels"].tolist() == [0, 1, 1] and half["seeds"].tolist() == [10, 13, 14]
    assert take_ratio(rows, 0.0, real)["labels"].tolist() == []
    assert take_ratio(rows, 10.0, real)["seeds"].tolist() == rows["seeds"].tolist()  # no more than made


def test_synthesis_device_is_the_configured_device_on_this_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for name in ("auto", "cpu"):
        config = Config.model_validate({"synthesis": {"device": name}})
        assert synthesis_device(config) == torch.device("cpu")
    with pytest.raises(ConfigError, match="synthesis.device: mps is not available on this machine"):
        synthesis_device(Config.model_validate({"synthesis": {"device": "mps"}}))


def test_utility_gate_trains_per_seed_and_ratio_and_decides_with_gate_decision(monkeypatch):
    config = load_config(None, TINY_GAN)  # one seed, one epoch, ratio 0.5
    rng = np.random.default_rng(0)
    fit = RealData(
        rng.integers(0, 256, (24, 8, 8), np.uint8), np.arange(24) % 3, [f"f{k}" for k in range(24)]
    )
    validation = RealData(rng.integers(0, 256, (9, 8, 8), np.uint8), np.arange(9) % 3, list("abcdefghi"))
    rows = {"images": rng.integers(0, 256, (12, 8, 8), np.uint8), "labels": np.arange(12) % 3}
    decided = []

    def recorded(correct, *args):
        decided.append((correct, args))
        return gate_decision(correct, *args)

    monkeypatch.setattr("pipeline.gan.gate.gate_decision", recorded)
    trained, train = [], gate.train_classifier
    monkeypatch.setattr(
        gate, "train_classifier", lambda *a, spec, **k: trained.append(spec) or train(*a, spec=spec, **k)
    )
    events = []
    with reporting(lambda *event: events.append(event)):
        result = gate.utility_gate(config, fit, validation, rows, ["a", "b", "c"])
    [(correct, (min_gain, confidence, baseline, weights, metric))] = decided
    assert {k: v.shape for k, v in correct.items()} == {"0": (1, 9), "0.5": (1, 9)}  # seeds x images
    assert baseline == "real" and weights is None and metric == "accuracy"  # no augmentation
    assert (min_gain, confidence) == (config.synthesis.gate.min_gain, config.synthesis.gate.confidence)
    assert result["validation_rows"] == 9 and result["seeds"] == 1 and result["metric"] == "accuracy"
    assert set(result["accuracy"]) == {"0", "0.5"} and result["chosen_ratio"] in {0.0, 0.5}
    assert events[-1] == (GATE, 2, 2)  # 1 seed x (baseline + 1 ratio) trainings
    # Equal compute: both arms train the steps one epoch of the larger (24 + 6 rows) takes.
    assert result["steps"] == 1 and len(trained) == 2 and {spec.steps for spec in trained} == {1}
    assert {spec.grid for spec in trained} == {1}
    stronger = load_config(None, [*TINY_GAN, "synthesis.gate.classifier_grid=2"])
    gate.utility_gate(stronger, fit, validation, rows, ["a", "b", "c"])
    assert {spec.grid for spec in trained[2:]} == {2}  # synthesis.gate.classifier_grid reaches the arms


def test_the_per_class_gate_keeps_rows_only_for_the_classes_they_help():
    from pipeline.gan.gate import per_class_decision

    # 3 classes x 100 validation images, 3 seeds. Ratio 1 fixes 40 of class 0's 60 mistakes
    # and changes nothing elsewhere; ratio 0.5 fixes 2 of class 1's (within the noise).
    labels = np.repeat([0, 1, 2], 100)
    base = np.stack([np.concatenate([_answers(40, n=100), _answers(70, n=100), _answers(80, n=100)])] * 3)
    one, half = base.copy(), base.copy()
    one[:, 40:80] = True
    half[:, 170:172] = True
    decision = per_class_decision({"0": base, "0.5": half, "1": one}, labels, 0.0, 0.95, ["a", "b", "c"])
    assert decision["chosen_ratios"] == {"a": 1.0, "b": 0.0, "c": 0.0}
    assert (
        decision["per_class"]["a"]["gain"] == pytest.approx(0.4)
        and decision["per_class"]["a"]["images"] == 100
    )
    assert decision["per_class"]["b"]["gain"] == pytest.approx(0.02)  # the best, though it did not qualify
    # Bonferroni over 3 classes x 2 ratios: each interval is at 1 - 0.05 / 6.
    assert "99.17% over 3 classes x 2 ratios" in decision["reason"] and "a (ratio 1)" in decision["reason"]
    nothing = per_class_decision({"0": base, "1": base.copy()}, labels, 0.0, 0.95, ["a", "b", "c"])
    assert set(nothing["chosen_ratios"].values()) == {0.0} and "no class gained" in nothing["reason"]


def test_take_ratio_takes_each_classs_own_ratio():
    rows = {"labels": np.array([0, 0, 0, 1, 1, 1]), "seeds": np.arange(10, 16)}
    real = RealData(np.zeros((6, 2, 2), np.uint8), np.array([0, 0, 1, 1, 1, 1]), list("abcdef"))
    mixed = take_ratio(rows, {0: 1.0, 1: 0.25}, real)  # class 0: 2 rows; class 1: 0.25 x 4 = 1 row
    assert mixed["seeds"].tolist() == [10, 11, 13]
    assert take_ratio(rows, {1: 0.5}, real)["seeds"].tolist() == [13, 14]  # class 0 not named: none


def test_the_gate_weighs_synthetic_rows_by_synthesis_weight(monkeypatch):
    config = load_config(None, [*TINY_GAN, "synthesis.weight=0.25"])
    rng = np.random.default_rng(0)
    fit = RealData(
        rng.integers(0, 256, (24, 8, 8), np.uint8), np.arange(24) % 3, [f"f{k}" for k in range(24)]
    )
    validation = RealData(rng.integers(0, 256, (9, 8, 8), np.uint8), np.arange(9) % 3, list("abcdefghi"))
    rows = {"images": rng.integers(0, 256, (12, 8, 8), np.uint8), "labels": np.arange(12) % 3}
    seen, train = [], gate.train_classifier
    monkeypatch.setattr(
        gate, "train_classifier", lambda *a, weights=None, **k: seen.append(weights) or train(*a, **k)
    )
    gate.utility_gate(config, fit, validation, rows, ["a", "b", "c"])
    base, arm = seen  # the baseline has no synthetic rows: unweighted
    assert base is None and arm.tolist() == [1.0] * 24 + [0.25] * 12  # ratio 0.5 of 8 real a class: 4 each


def test_the_per_class_gate_publishes_each_classs_rows_in_a_build(tiny_config, monkeypatch):
    from pipeline.build import build
    from pipeline.version.manifest import load_manifest

    chosen = {"cat": 0.5, "dog": 0.0, "eel": 0.5}

    def decide(correct, labels, min_gain, confidence, class_names):
        assert sorted(correct) == ["0", "0.5"] and len(labels) == correct["0"].shape[1]
        return {"per_class": {}, "chosen_ratios": chosen, "reason": "per class: decided by the test"}

    monkeypatch.setattr(gate, "per_class_decision", decide)
    version, _ = build(tiny_config(*TINY_GAN, "synthesis.gate.per_class=true", "synthesis.per_class=8"))
    report = load_manifest(version).synthesis
    assert report.gate.chosen_ratios == chosen and report.gate.reason.startswith("per class: decided")
    assert "all classes together" in report.gate.reason
    by_class = report.per_class
    assert by_class["dog"] == 0 and by_class["cat"] > 0 and by_class["eel"] > 0


def test_with_target_per_class_a_ratio_is_a_share_of_each_classs_fill():
    from pipeline.config import SynthesisConfig

    rows = {"labels": np.repeat([0, 1], 10), "seeds": np.arange(20)}
    real = RealData(np.zeros((6, 2, 2), np.uint8), np.array([0, 0, 0, 0, 0, 1]), list("abcdef"))
    fill = SynthesisConfig(target_per_class=9)  # class 0: 5 real, fill 4; class 1: 1 real, fill 8
    taken = take_ratio(rows, 0.5, real, fill)
    assert np.bincount(taken["labels"]).tolist() == [2, 4]
    unfilled = take_ratio(rows, 0.5, real)["labels"]  # of the real counts: round(2.5), round(0.5)
    assert np.bincount(unfilled).tolist() == [3, 1]
