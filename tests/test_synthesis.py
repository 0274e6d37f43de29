"""Synthesis inside a build: tiny GAN at 8x8, gate on and off, lineage of synthetic rows."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from pipeline.build import build
from pipeline.config import Config, GanTrainConfig
from pipeline.core.seeds import derive_seed
from pipeline.evaluate import classifier
from pipeline.evaluate.classifier import metric_weights, score
from pipeline.gan import synthesis
from pipeline.gan.train import GanShape, GanTrainer
from pipeline.version.manifest import read_manifest
from pipeline.version.summary import run_markdown

TINY_GAN = [
    "synthesis.enabled=true",
    "synthesis.per_class=3",
    "synthesis.train.steps=4",
    "synthesis.train.eval_every=2",
    "synthesis.train.width=8",
    "synthesis.train.z_dim=8",
    "synthesis.train.batch_size=8",
    "synthesis.train.device=cpu",
    "synthesis.device=cpu",
    "synthesis.gate.seeds=1",
    "synthesis.gate.classifier_epochs=1",
    "synthesis.gate.ratios=[0.5]",
]


def train_rows(version):
    return [
        r for f in sorted((version / "data").glob("train-*.parquet")) for r in pq.read_table(f).to_pylist()
    ]


def test_a_trained_generator_does_not_depend_on_where_the_run_writes(tiny_config, tmp_path):
    """Same content settings, another output root and worker count: the same checkpoint
    bytes, so the same synthetic ids and shard bytes under the same version id."""
    runs = [
        build(tiny_config(*TINY_GAN, "synthesis.gate.enabled=false", *more))[0]
        for more in ([], [f"output.root={tmp_path / 'elsewhere'}", "runner.workers=2"])
    ]
    data = [
        {f["path"]: f["sha256"] for f in read_manifest(v)["files"] if f["path"].startswith(("data/", "gan/"))}
        for v in runs
    ]
    assert runs[0].name == runs[1].name and data[0] == data[1]
    assert any(path.startswith("gan/") for path in data[0])


def test_synthetic_rows_carry_lineage_without_gate(tiny_config):
    version, _ = build(tiny_config(*TINY_GAN, "synthesis.gate.enabled=false"))
    manifest = read_manifest(version)
    report = manifest["synthesis"]
    assert report["published"] == 9 and "gate" not in report
    # no filter: one round, every candidate kept
    assert report["candidates"] == report["wanted"] == report["kept_after_filter"] == 9
    assert set(report["metrics"]) >= {"fd", "kid", "precision", "recall", "per_class_fd", "cas_test"}
    synthetic = [r for r in train_rows(version) if r["origin"] == "synthetic"]
    assert len(synthetic) == 9
    listed = {f["path"] for f in manifest["files"]}
    assert {"gan/generator.pt", "samples.png", "gan/curves.png", "grid.png", "classes.png"} <= listed
    assert report["files"]["curves"] == "gan/curves.png"
    grid = Image.open(version / "grid.png")
    assert grid.size[0] > 3 * 4 * 8 and grid.size[1] > 3 * 8  # three origins of 4 tiles, three classes
    sha = report["checkpoint_sha256"]
    for row in synthetic:
        params = json.loads(row["params"])
        assert row["source_sha256"] == sha == params["checkpoint_sha256"]
        assert row["seed"] == params["latent_seed"] and 0.0 <= params["confidence"] <= 1.0
    assert manifest["splits"]["train"]["by_origin"]["synthetic"] == 9
    # where it ran, as the version id has it (TINY_GAN trains on the CPU)
    threads = torch.get_num_threads()
    assert report["devices"] == {"training": "cpu", "sampling_and_classifiers": "cpu", "cpu_threads": threads}


def test_gate_decision_is_recorded_and_followed(tiny_config):
    version, _ = build(tiny_config(*TINY_GAN))
    gate = read_manifest(version)["synthesis"]["gate"]
    assert set(gate["accuracy"]) == {"0", "0.5"} and gate["reason"]
    synthetic = [r for r in train_rows(version) if r["origin"] == "synthetic"]
    if gate["chosen_ratio"] == 0:
        assert synthetic == []
    else:
        assert synthetic
    test_ids = {
        r["source_id"]
        for f in (version / "data").glob("test-*.parquet")
        for r in pq.read_table(f).to_pylist()
    }
    assert gate["validation_rows"] > 0 and not test_ids & {r["source_id"] for r in train_rows(version)}


def test_user_feature_extractor_is_used(tiny_config):
    version, _ = build(
        tiny_config(
            *TINY_GAN, "synthesis.gate.enabled=false", "synthesis.features=conftest:mean_pixel_features"
        )
    )
    metrics = read_manifest(version)["synthesis"]["metrics"]
    assert metrics["features"] == "conftest:mean_pixel_features" and metrics["fd"] >= 0


def test_bad_feature_extractor_is_a_config_error(tiny_config):
    import pytest

    from pipeline.core.errors import ConfigError

    with pytest.raises(ConfigError, match="module:function"):
        tiny_config("synthesis.features=inception")


def test_sample_grid_shows_generated_images_even_when_gate_declines(tiny_config):
    import numpy as np
    from PIL import Image

    version, _ = build(tiny_config(*TINY_GAN, "synthesis.gate.min_gain=1.0"))  # gain > 1 is impossible
    manifest = read_manifest(version)
    assert manifest["synthesis"]["gate"]["chosen_ratio"] == 0.0
    assert manifest["splits"]["train"]["by_origin"].get("synthetic", 0) == 0
    grid = np.asarray(Image.open(version / "samples.png"))
    assert (grid[:, grid.shape[1] // 2 + 40 :] < 255).any()  # the synthetic half is not empty


def _every_third_confident(monkeypatch):
    """The reference classifier is sure of every third candidate it is shown, of no other."""
    seen = []

    def predict_proba(reference, images):
        start = sum(seen)
        seen.append(len(images))
        sure = (torch.arange(start, start + len(images)) % 3 == 0).float()
        return sure[:, None].expand(len(images), 4).clone()

    monkeypatch.setattr(synthesis, "predict_proba", predict_proba)
    return seen


@pytest.mark.parametrize(
    "max_oversample, filled, fill_short", [(10.0, True, False), (2.0, False, False), (2.0, True, True)]
)
def test_filtered_sampling_draws_rounds_until_each_class_is_full(
    monkeypatch, max_oversample, filled, fill_short
):
    seen = _every_third_confident(monkeypatch)
    config = Config.model_validate(
        {
            "synthesis": {
                "filter": {"min_confidence": 0.5, "max_oversample": max_oversample, "fill_short": fill_short}
            }
        }
    )
    shape = GanShape(4, 1, 8, 8)
    images = np.zeros((8, 8, 8), dtype=np.uint8)
    trainer = GanTrainer(
        images=images, labels=np.arange(8) % 4, shape=shape, settings=GanTrainConfig(width=8, z_dim=8), seed=0
    )
    wanted = {0: 5, 1: 5, 2: 5, 3: 0}
    pool, kept = synthesis._sample_until_filled(config, trainer, None, shape, wanted)
    counts = np.bincount(pool["labels"][kept], minlength=4)
    made = np.bincount(pool["labels"], minlength=4)
    if fill_short:  # every confident candidate kept, the rest of each class from the others
        assert made.tolist() == [10, 10, 10, 0] and counts.tolist() == [5, 5, 5, 0]
        assert (pool["confidence"] >= 0.5).sum() == (pool["confidence"][kept] >= 0.5).sum() < 15
        return
    assert (pool["confidence"][kept] >= 0.5).all()
    if filled:
        assert counts.tolist() == [5, 5, 5, 0] and len(seen) > 1  # the first round's guess fell short
        assert made[3] == 0
    else:
        assert made.tolist() == [10, 10, 10, 0] and counts.max() < 5  # capped at 2 x wanted
    for c in range(3):  # candidate k of class c has the k-th derived seed, across rounds
        seeds = pool["seeds"][pool["labels"] == c]
        assert seeds.tolist() == [derive_seed(config.seed, f"synthetic/{c}", k) for k in range(made[c])]


def test_a_class_the_filter_starves_is_named_in_manifest_and_summary(tiny_config):
    version, _ = build(
        tiny_config(
            *TINY_GAN,
            "synthesis.gate.enabled=false",
            "synthesis.filter.min_confidence=1.0",  # no 4-step generator is that convincing
            "synthesis.filter.max_oversample=2",
        )
    )
    manifest = read_manifest(version)
    report = manifest["synthesis"]
    assert report["wanted"] == 9 and report["candidates"] == 18  # 2 x wanted per class, then it stops
    assert report["short"] and set(report["short"]) <= set(manifest["class_names"])
    assert sum(report["short"].values()) == report["published"] < 9
    text = run_markdown(manifest, version, created=True)
    short = f"classes short of their count (kept): {report['short']}"
    assert f"of 18 candidates kept for 9 wanted; {short}" in text
    threads = torch.get_num_threads()
    assert f"Devices: GAN training on cpu, sampling and classifiers on cpu, {threads} CPU threads." in text


def test_fill_short_tops_classes_up_and_the_manifest_counts_the_fill(tiny_config):
    version, _ = build(
        tiny_config(
            *TINY_GAN,
            "synthesis.gate.enabled=false",
            "synthesis.filter.min_confidence=1.0",
            "synthesis.filter.max_oversample=2",
            "synthesis.filter.fill_short=true",
        )
    )
    manifest = read_manifest(version)
    report = manifest["synthesis"]
    assert "short" not in report and report["published"] == report["wanted"] == 9
    assert sum(report["filled_below_threshold"].values()) == 9
    text = run_markdown(manifest, version, created=True)
    assert f"kept below the confidence threshold to fill classes: {report['filled_below_threshold']}." in text


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
    decision = synthesis.gate_decision(correct, min_gain=0.0, min_gain_se=1.0)
    assert decision["chosen_ratio"] == 0.0
    half = decision["accuracy"]["0.5"]
    assert half["gain"] == pytest.approx(0.005) and half["runs"] == pytest.approx([0.855, 0.855])
    differences = np.r_[np.ones(11), -np.ones(10), np.zeros(179)]
    assert half["gain_se"] == pytest.approx(differences.std(ddof=1) / np.sqrt(200))
    assert "standard error" in decision["reason"] and "ratio 0.5" in decision["reason"]
    # Without the noise rule any positive gain is taken.
    assert synthesis.gate_decision(correct, min_gain=0.0, min_gain_se=0.0)["chosen_ratio"] == 0.5


def test_gate_takes_the_best_ratio_whose_gain_clears_the_noise():
    correct = {
        "0": _answers(140)[None],
        "0.5": _answers(140, 20, 0)[None],  # +10 points: 20 images fixed, none broken
        "1": _answers(140, 60, 36)[None],  # +12 points, but 96 images changed
    }
    decision = synthesis.gate_decision(correct, min_gain=0.0, min_gain_se=3.0)
    assert decision["chosen_ratio"] == 0.5
    assert decision["accuracy"]["1"]["gain"] > decision["accuracy"]["0.5"]["gain"]
    assert "+0.1000" in decision["reason"]
    # With a looser rule the larger gain wins; a min_gain above every gain declines both.
    assert synthesis.gate_decision(correct, min_gain=0.0, min_gain_se=1.0)["chosen_ratio"] == 1.0
    assert synthesis.gate_decision(correct, min_gain=0.15, min_gain_se=0.0)["chosen_ratio"] == 0.0


def test_gate_averages_the_seeds_per_image():
    # Seed 0 gains 20 images, seed 1 loses 20: no gain on average, whatever each seed says.
    correct = {
        "0": np.stack([_answers(150), _answers(150)]),
        "1": np.stack([_answers(150, 20, 0), _answers(150, 0, 20)]),
    }
    decision = synthesis.gate_decision(correct, min_gain=0.0, min_gain_se=1.0)
    entry = decision["accuracy"]["1"]
    assert entry["runs"] == pytest.approx([0.85, 0.65]) and entry["gain"] == pytest.approx(0.0)
    assert entry["std"] == pytest.approx(np.std([0.85, 0.65], ddof=1))
    assert decision["chosen_ratio"] == 0.0


def test_the_gate_can_weigh_every_class_alike():
    # 180 validation images of class 0, 20 of class 1. Ratio 1 fixes 10 of class 1 and
    # breaks 6 of class 0: +2 points of accuracy, +23.3 of balanced accuracy.
    labels = np.r_[np.zeros(180, int), np.ones(20, int)]
    base = np.r_[np.ones(180, bool), np.zeros(20, bool)]
    better = base.copy()
    better[:6], better[180:190] = False, True
    correct = {"0": base[None], "1": better[None]}
    plain = synthesis.gate_decision(correct, min_gain=0.05, min_gain_se=0.0)
    assert plain["chosen_ratio"] == 0.0 and plain["accuracy"]["1"]["gain"] == pytest.approx(0.02)
    weights = metric_weights(labels, "balanced_accuracy")
    balanced = synthesis.gate_decision(correct, 0.05, 0.0, weights=weights, metric="balanced accuracy")
    entry = balanced["accuracy"]["1"]
    assert entry["gain"] == pytest.approx((10 / 20 - 6 / 180) / 2)
    assert balanced["accuracy"]["0"]["mean"] == pytest.approx(0.5)  # class 0 all right, class 1 none
    assert balanced["chosen_ratio"] == 1.0 and "balanced accuracy by +0.2333" in balanced["reason"]
    declined = synthesis.gate_decision(correct, 0.3, 0.0, weights=weights, metric="balanced accuracy")
    assert declined["reason"].startswith("no ratio beat real in validation balanced accuracy by more than")
    assert metric_weights(labels, "accuracy") is None
    assert score(better, weights) == pytest.approx((174 / 180 + 10 / 20) / 2)


def test_sampling_reuses_the_reference_classifier_saved_beside_the_checkpoint(
    tiny_config, tmp_path, monkeypatch
):
    config = tiny_config(*TINY_GAN)
    rng = np.random.default_rng(0)
    fit = synthesis.RealData(
        rng.integers(0, 256, (12, 8, 8), np.uint8), np.arange(12) % 3, list("abcdefghijkl")
    )
    trainings = []
    train = classifier.train_classifier
    monkeypatch.setattr(classifier, "train_classifier", lambda *a, **k: trainings.append(1) or train(*a, **k))
    saved = tmp_path / "gan" / synthesis.REFERENCE_FILE
    trained = synthesis._reference(config, fit, 3, saved, save=True)
    loaded = synthesis._reference(config, fit, 3, saved)
    images = synthesis.to_tensor(fit.images)
    assert len(trainings) == 1 and torch.equal(trained(images), loaded(images))
    # another seed, other images or labels: that classifier does not apply, so it is trained
    other = fit.subset(np.arange(12) < 9)
    for args in ((config.model_copy(update={"seed": 1}), fit), (config, other)):
        synthesis._reference(*args, 3, saved)
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)  # other CPU sums: trained again
    try:
        synthesis._reference(config, fit, 3, saved)
    finally:
        torch.set_num_threads(threads)
    assert len(trainings) == 4
    assert torch.equal(
        synthesis._reference(config, fit, 3, saved)(images), trained(images)
    )  # not overwritten
    saved.write_bytes(b"not a checkpoint")  # unreadable: trained again, no error
    assert torch.equal(synthesis._reference(config, fit, 3, saved)(images), trained(images))
    assert len(trainings) == 5
