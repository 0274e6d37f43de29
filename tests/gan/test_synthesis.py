"""pipeline.gan.synthesis inside a build: tiny GAN at 8x8, lineage of synthetic rows, filtered
sampling, the reference classifier."""

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from conftest import TINY_GAN
from pipeline.build import build, load_config
from pipeline.config import Config, GanTrainConfig
from pipeline.core.hashing import file_sha256
from pipeline.core.seeds import derive_seed
from pipeline.evaluate import classifier
from pipeline.gan import filtering, synthesis
from pipeline.gan.checkpoint import GanShape, id_digests
from pipeline.gan.filtering import Sampler, sample_until_filled
from pipeline.gan.train import GanTrainer
from pipeline.version.manifest import load_manifest
from pipeline.version.summary import run_markdown


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
        {f.path: f.sha256 for f in load_manifest(v).files if f.path.startswith(("data/", "gan/"))}
        for v in runs
    ]
    assert runs[0].name == runs[1].name and data[0] == data[1]
    assert any(path.startswith("gan/") for path in data[0])


def test_synthetic_rows_carry_lineage_without_gate(tiny_config):
    version, _ = build(tiny_config(*TINY_GAN, "synthesis.gate.enabled=false"))
    manifest = load_manifest(version)
    report = manifest.synthesis
    assert report.published == 9 and report.gate is None
    # no filter: one round, every candidate kept
    assert report.candidates == report.wanted == report.kept_after_filter == 9
    assert set(report.metrics) >= {"fd", "kid", "precision", "recall", "per_class_fd", "cas_test"}
    synthetic = [r for r in train_rows(version) if r["origin"] == "synthetic"]
    assert len(synthetic) == 9
    listed = {f.path for f in manifest.files}
    assert {"gan/generator.pt", "samples.png", "gan/curves.png", "grid.png", "classes.png"} <= listed
    assert report.files.curves == "gan/curves.png"
    grid = Image.open(version / "grid.png")
    assert grid.size[0] > 3 * 4 * 8 and grid.size[1] > 3 * 8  # three origins of 4 tiles, three classes
    sha = report.checkpoint_sha256
    for row in synthetic:
        params = json.loads(row["params"])
        assert row["source_sha256"] == sha == params["checkpoint_sha256"]
        assert row["seed"] == params["latent_seed"] and 0.0 <= params["confidence"] <= 1.0
    assert manifest.splits["train"].by_origin["synthetic"] == 9
    # where it ran, as the version id has it (TINY_GAN trains on the CPU)
    threads = torch.get_num_threads()
    assert report.devices.model_dump(exclude_unset=True) == {
        "training": "cpu",
        "sampling_and_classifiers": "cpu",
        "cpu_threads": threads,
    }


def test_gate_decision_is_recorded_and_followed(tiny_config):
    version, _ = build(tiny_config(*TINY_GAN))
    gate = load_manifest(version).synthesis.gate
    assert set(gate.accuracy) == {"0", "0.5"} and gate.reason
    synthetic = [r for r in train_rows(version) if r["origin"] == "synthetic"]
    if gate.chosen_ratio == 0:
        assert synthetic == []
    else:
        assert synthetic
    test_ids = {
        r["source_id"]
        for f in (version / "data").glob("test-*.parquet")
        for r in pq.read_table(f).to_pylist()
    }
    assert gate.validation_rows > 0 and not test_ids & {r["source_id"] for r in train_rows(version)}


def test_user_feature_extractor_is_used(tiny_config):
    version, _ = build(
        tiny_config(
            *TINY_GAN, "synthesis.gate.enabled=false", "synthesis.features=conftest:mean_pixel_features"
        )
    )
    metrics = load_manifest(version).synthesis.metrics
    assert metrics["features"] == "conftest:mean_pixel_features" and metrics["fd"] >= 0


def test_sample_grid_shows_generated_images_even_when_gate_declines(tiny_config):
    import numpy as np
    from PIL import Image

    version, _ = build(tiny_config(*TINY_GAN, "synthesis.gate.min_gain=1.0"))  # gain > 1 is impossible
    manifest = load_manifest(version)
    assert manifest.synthesis.gate.chosen_ratio == 0.0
    assert manifest.splits["train"].by_origin.get("synthetic", 0) == 0
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

    monkeypatch.setattr(filtering, "predict_proba", predict_proba)
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
    pool, kept = sample_until_filled(Sampler(config, shape, trainer, None), wanted)
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
    manifest = load_manifest(version)
    report = manifest.synthesis
    assert report.wanted == 9 and report.candidates == 18  # 2 x wanted per class, then it stops
    assert report.short and set(report.short) <= set(manifest.class_names)
    assert sum(report.short.values()) == report.published < 9
    text = run_markdown(manifest, version, created=True)
    short = f"classes short of their count (kept): {report.short}"
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
    manifest = load_manifest(version)
    report = manifest.synthesis
    assert report.short is None and report.published == report.wanted == 9
    assert sum(report.filled_below_threshold.values()) == 9
    text = run_markdown(manifest, version, created=True)
    assert f"kept below the confidence threshold to fill classes: {report.filled_below_threshold}." in text


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


def test_fit_validation_masks_carve_validation_only_for_the_gate():
    data = synthesis.RealData(np.zeros((30, 2, 2), np.uint8), np.arange(30) % 3, [f"i{k}" for k in range(30)])
    off = Config.model_validate({"synthesis": {"gate": {"enabled": False}}})
    fit, validation = synthesis.fit_validation_masks(data, off)
    assert fit.all() and not validation.any()
    on = Config.model_validate({"synthesis": {"gate": {"validation_fraction": 0.2}}})
    fit, validation = synthesis.fit_validation_masks(data, on)
    assert (fit ^ validation).all() and validation.sum() == 6  # disjoint, everything, 20 %
    assert set(data.labels[validation]) == {0, 1, 2}  # stratified by class
    again, _ = synthesis.fit_validation_masks(data, on)
    assert np.array_equal(again, fit)  # seeded


def test_train_gan_then_synthesize_from_its_best_checkpoint(tmp_path):
    config = load_config(None, [*TINY_GAN, "synthesis.gate.enabled=false"])
    rng = np.random.default_rng(0)
    train = synthesis.RealData(
        rng.integers(0, 256, (24, 8, 8), np.uint8), np.arange(24) % 3, [f"t{k}" for k in range(24)]
    )
    shape = GanShape(3, 1, 8, 8)
    steps = []
    summary = synthesis.train_gan(config, train, shape, tmp_path / "gan", on_metrics=steps.append)
    assert summary["checkpoint"] == str(tmp_path / "gan" / "best.pt") and summary["best"]["step"] in {2, 4}
    assert summary["sha256"] == file_sha256(tmp_path / "gan" / "best.pt")
    assert [h["step"] for h in summary["history"] if "fd" in h] == [2, 4]  # measured every eval_every
    assert (tmp_path / "gan" / "last.pt").is_file() and (
        tmp_path / "gan" / synthesis.REFERENCE_FILE
    ).is_file()
    assert any("fd" in m for m in steps)
    result = synthesis.synthesize(config, train, None, shape, Path(summary["checkpoint"]), ["a", "b", "c"])
    assert result["images"].shape == (9, 8, 8) and np.bincount(result["labels"]).tolist() == [3, 3, 3]
    assert len(result["seeds"]) == len(result["confidence"]) == len(result["d_score"]) == 9
    report = result["report"]
    assert report["published"] == 9 and "gate" not in report and "cas_test" not in report["metrics"]
    assert report["checkpoint_step"] == summary["best"]["step"]


def test_quality_metrics_of_the_real_images_themselves():
    config = load_config(None, [*TINY_GAN, "synthesis.features=conftest:mean_pixel_features"])
    rng = np.random.default_rng(0)
    fit = synthesis.RealData(
        rng.integers(0, 256, (30, 8, 8), np.uint8), np.arange(30) % 3, [f"f{k}" for k in range(30)]
    )
    test = synthesis.RealData(fit.images[:6], fit.labels[:6], list("abcdef"))
    same = {"images": fit.images, "labels": fit.labels}
    # Compared with held-out images first (here the same images: a distance of 0)...
    metrics = synthesis.quality_metrics(config, None, fit, same, test, 3, held_out=fit)  # plug-in features
    assert metrics["features"] == "conftest:mean_pixel_features"
    assert metrics["against"] == "held-out validation images (30)"
    assert metrics["fd"] == pytest.approx(0.0, abs=1e-6) and metrics["precision"] == metrics["recall"] == 1.0
    assert metrics["per_class_fd"] == pytest.approx([0.0] * 3, abs=1e-6)  # one per class
    assert 0.0 <= metrics["cas_test"] <= 1.0
    # ...then with the test split, and only with neither with the GAN's own training images.
    on_test = synthesis.quality_metrics(config, None, fit, same, test, 3)
    assert on_test["against"] == "test images (6)" and on_test["fd"] > 0
    neither = synthesis.quality_metrics(config, None, fit, same, None, 3)
    assert neither["against"].startswith("the GAN's training images") and neither["fd"] == pytest.approx(
        0.0, abs=1e-6
    )
    assert set(neither) == {
        "features",
        "against",
        "fd",
        "kid",
        "precision",
        "recall",
        "per_class_fd",
    }  # no CAS
    one = {"images": fit.images[:1], "labels": fit.labels[:1]}
    assert "note" in synthesis.quality_metrics(config, None, fit, one, test, 3)


def test_synthesis_devices_name_where_training_and_sampling_ran(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = load_config(None, ["synthesis.enabled=true"])
    threads = torch.get_num_threads()
    assert synthesis.synthesis_devices(config) == {
        "training": "cpu",
        "sampling_and_classifiers": "cpu",
        "cpu_threads": threads,
    }
    (tmp_path / "g.pt").write_bytes(b"")
    given = load_config(None, ["synthesis.enabled=true", f"synthesis.checkpoint={tmp_path / 'g.pt'}"])
    assert synthesis.synthesis_devices(given)["training"] is None  # a given checkpoint: not trained here


def _four_class_trainer() -> tuple[GanShape, GanTrainer]:
    """An untrained 4-class GAN on 8x8 grey images: enough to sample and filter from."""
    shape = GanShape(4, 1, 8, 8)
    trainer = GanTrainer(
        images=np.zeros((8, 8, 8), np.uint8),
        labels=np.arange(8) % 4,
        shape=shape,
        settings=GanTrainConfig(width=8, z_dim=8),
        seed=0,
    )
    return shape, trainer


def test_label_consistent_filtering_keeps_samples_whose_top_class_is_their_own(monkeypatch):
    # The classifier's top class is the intended one for even-numbered candidates, the next
    # class for odd ones; its confidence in the intended class is 0.4 either way.
    def predict_proba(reference, images):
        n = len(images)
        probs = torch.full((n, 4), 0.1)
        labels = torch.as_tensor(np.repeat(np.arange(4), n // 4 + 1)[:n])
        shown = torch.where(torch.arange(n) % 2 == 0, labels, (labels + 1) % 4)
        probs[torch.arange(n), shown] = 0.7
        return probs

    monkeypatch.setattr(filtering, "predict_proba", predict_proba)
    shape, trainer = _four_class_trainer()
    config = Config.model_validate({"synthesis": {"filter": {"label_consistent": True, "max_oversample": 2}}})
    pool, kept = sample_until_filled(Sampler(config, shape, trainer, None), {c: 2 for c in range(4)})
    assert pool["consistent"][kept].all() and not pool["consistent"].all()
    loose = Config.model_validate({"synthesis": {"filter": {"max_oversample": 2}}})
    pool, kept = sample_until_filled(Sampler(loose, shape, trainer, None), {c: 2 for c in range(4)})
    assert not pool["consistent"][kept].all()  # off: the top class is not asked


def test_drs_filtering_keeps_the_candidates_d_scores_highest_more_often(monkeypatch):
    monkeypatch.setattr(
        filtering, "predict_proba", lambda reference, images: torch.full((len(images), 4), 0.25)
    )
    shape, trainer = _four_class_trainer()
    wanted = {c: 30 for c in range(4)}
    config = Config.model_validate({"synthesis": {"filter": {"drs": 0.8, "max_oversample": 4}}})
    pool, kept = sample_until_filled(Sampler(config, shape, trainer, None), wanted)
    assert len(pool["labels"]) > len(kept) > 0  # it rejected some, and sampled more in rounds
    rejected = np.setdiff1d(np.arange(len(pool["labels"])), kept)
    assert pool["d_score"][kept].mean() > pool["d_score"][rejected].mean()
    again, kept_again = sample_until_filled(Sampler(config, shape, trainer, None), wanted)
    assert np.array_equal(kept, kept_again) and np.array_equal(pool["seeds"], again["seeds"])


def test_the_best_checkpoint_is_chosen_on_images_neither_the_gan_nor_the_classifier_saw(
    tmp_path, monkeypatch
):
    config = load_config(
        None, [*TINY_GAN, "synthesis.gate.enabled=false", "synthesis.train.selection_fraction=0.25"]
    )
    rng = np.random.default_rng(0)
    train = synthesis.RealData(
        rng.integers(0, 256, (24, 8, 8), np.uint8), np.arange(24) % 3, [f"t{k}" for k in range(24)]
    )
    gan_part, held_out = synthesis.selection_split(config, train)
    assert len(held_out.ids) == 6 and set(held_out.labels.tolist()) == {0, 1, 2}  # 25 %, stratified
    assert not set(held_out.ids) & set(gan_part.ids) and len(gan_part.ids) == 18
    assert synthesis.selection_split(config, train)[1].ids == held_out.ids  # seeded
    measured, features = [], synthesis._features
    monkeypatch.setattr(
        synthesis, "_features", lambda c, r, images: measured.append(len(images)) or features(c, r, images)
    )
    classifiers, fit_classifier = [], synthesis._reference
    monkeypatch.setattr(
        synthesis,
        "_reference",
        lambda c, fit, *a, **k: classifiers.append(list(fit.ids)) or fit_classifier(c, fit, *a, **k),
    )
    summary = synthesis.train_gan(config, train, GanShape(3, 1, 8, 8), tmp_path / "gan")
    assert measured[0] == 6  # the real side of every FD: the 6 held-out images
    assert classifiers == [list(gan_part.ids)]  # the feature network never saw them either
    assert summary["best"]["against"] == "held-out images (6)"
    state = torch.load(tmp_path / "gan" / "best.pt", weights_only=False)
    assert sorted(json.loads(state["trained_on"])) == sorted(id_digests(list(gan_part.ids)))
    report = synthesis.synthesize(
        config, train, None, GanShape(3, 1, 8, 8), Path(summary["checkpoint"]), list("abc")
    )["report"]
    assert report["checkpoint_chosen"] == summary["best"]
    assert report["geometry"] == {"resolution": 8, "fit": "stretch", "size": [8, 8]}
    assert classifiers[-1] == list(gan_part.ids)  # sampling's classifier: the one saved beside it
    # 0: chosen against the training images, and the manifest says so
    off = config.model_copy(
        update={
            "synthesis": config.synthesis.model_copy(
                update={"train": config.synthesis.train.model_copy(update={"selection_fraction": 0.0})}
            )
        }
    )
    assert synthesis.train_gan(off, train, GanShape(3, 1, 8, 8), tmp_path / "off")["best"]["against"] == (
        "the GAN's training images (24)"
    )
