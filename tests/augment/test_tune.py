"""pipeline.augment.tune: candidate expansions scored on validation data carved from the
training split."""

import json

import numpy as np
import pytest

from conftest import TINY_TUNE
from pipeline.augment.tune import candidates, scale_recipe
from pipeline.build import build
from pipeline.config import AugmentConfig
from pipeline.core.errors import PipelineError
from pipeline.ingest import store
from pipeline.version.manifest import load_manifest, verify

RECIPE = [
    {"Affine": {"rotate": [-10, 10], "scale": [0.9, 1.1], "translate_percent": [-0.1, 0.1], "p": 0.8}},
    {"OneOf": {"p": 0.5, "transforms": [{"RandomBrightnessContrast": {"brightness_limit": 0.2}}]}},
]


def test_scaling_touches_magnitudes_only():
    scaled = scale_recipe(RECIPE, 2.0)
    affine = scaled[0]["Affine"]
    assert affine["rotate"] == [-20, 20] and affine["translate_percent"] == [-0.2, 0.2]
    assert affine["scale"] == pytest.approx([0.8, 1.2]) and affine["p"] == 0.8
    inner = scaled[1]["OneOf"]
    assert inner["p"] == 0.5 and inner["transforms"][0]["RandomBrightnessContrast"]["brightness_limit"] == 0.4
    jitter = scale_recipe([{"ColorJitter": {"brightness": 0.2, "contrast": [0.9, 1.1], "hue": 0.4}}], 2.0)
    params = jitter[0]["ColorJitter"]
    assert params["brightness"] == 0.4 and params["contrast"] == pytest.approx([0.8, 1.2])
    assert params["hue"] == 0.5  # torchvision's limit
    assert scale_recipe(RECIPE, 1.0) == RECIPE and RECIPE[0]["Affine"]["rotate"] == [-10, 10]


def test_candidates_start_with_no_augmentation_and_cover_strengths_policies_and_counts():
    augment = AugmentConfig(
        copies_per_image=2,
        transforms=RECIPE,
        tune={"enabled": True, "strengths": [0.5, 1.0], "copies": [1, 4], "policies": ["RandAugment"]},
    )
    found, refused = candidates(augment)
    names = [c.name for c in found]
    assert names == [
        "none",
        "recipe x1, 1 copies",
        "recipe x0.5, 1 copies",
        "RandAugment, 1 copies",
        "recipe x1, 4 copies",
        "recipe x0.5, 4 copies",
        "RandAugment, 4 copies",
    ]
    assert refused == []
    assert not found[0].augment.enabled
    assert found[3].augment.backend == "torchvision" and found[3].augment.transforms == [{"RandAugment": {}}]
    assert found[4].augment.copies_per_image == 4 and found[4].augment.transforms == RECIPE
    capped, refused = candidates(
        augment.model_copy(update={"tune": augment.tune.model_copy(update={"max_candidates": 3})})
    )
    assert len(capped) == 3 and [r["reason"] for r in refused] == ["over tune.max_candidates"] * 4


def test_policies_are_not_mixed_with_custom_albumentations_recipes():
    augment = AugmentConfig(
        copies_per_image=1,
        transforms=RECIPE,
        custom_transforms=["custom_transforms:Invert"],
        tune={"enabled": True, "strengths": [1.0]},
    )
    found, refused = candidates(augment)
    assert [c.name for c in found] == ["none", "recipe x1, 1 copies"]
    assert refused[0]["candidate"] == "TrivialAugmentWide, 1 copies"


def test_a_tuned_build_records_every_candidate_and_uses_the_winner(tiny_config, tmp_path, monkeypatch):
    splits_read = []
    real_load = store.load_split  # imported by the tune stage when it runs
    monkeypatch.setattr(store, "load_split", lambda *a, **k: splits_read.append(a[2]) or real_load(*a, **k))
    overrides = [*TINY_TUNE, "augment.tune.copies=[1, 3]", "augment.tune.strengths=[0.5, 1]"]
    version, _ = build(tiny_config(*overrides, f"output.root={tmp_path / 'one'}"))
    assert set(splits_read) == {"train"}  # the test split is never read
    assert verify(version, full=True) == []
    manifest = load_manifest(version)
    summary = manifest.tune
    names = [c.name for c in summary.candidates]
    assert names[0] == "none" and len(names) == 7
    assert summary.chosen in names and summary.validation_rows > 0
    best = max(c.mean for c in summary.candidates)
    chosen = next(c for c in summary.candidates if c.name == summary.chosen)
    assert chosen.mean == best
    assert all(c.rows >= chosen.rows for c in summary.candidates if c.mean == best)
    augmented = manifest.splits["train"].by_origin.get("augmented", 0)
    copies = manifest.config["augment"]["copies_per_image"]
    assert augmented == round((copies or 0) * manifest.splits["train"].by_origin["real"])
    assert "tune.png" in {f.path for f in manifest.files}
    card = (version / "README.md").read_text()
    assert "## Augmentation tuning" in card and summary.chosen in card
    assert json.loads((version / "croissant.json").read_text())["rai:dataManipulationProtocol"].count(
        "chosen by"
    )

    two, _ = build(tiny_config(*overrides, f"output.root={tmp_path / 'two'}", "runner.workers=2"))
    again = load_manifest(two).tune
    assert [c.runs for c in again.candidates] == [c.runs for c in summary.candidates]
    assert two.name == version.name


def test_the_budget_stops_new_candidates(tiny_config):
    version, _ = build(tiny_config(*TINY_TUNE, "augment.tune.budget_seconds=0.001", "runner.workers=1"))
    summary = load_manifest(version).tune
    assert [c.name for c in summary.candidates] == ["none"]
    assert {n.reason for n in summary.not_run} == {"tune.budget_seconds spent"}


def test_candidates_can_be_scored_by_balanced_accuracy(tiny_config, monkeypatch):
    from pipeline.evaluate import classifier

    # Every classifier gets exactly the validation images of the first class right: its
    # accuracy is that class's share, its balanced accuracy 1 / classes.
    monkeypatch.setattr(classifier, "correct", lambda model, x, labels: np.asarray(labels) == 0)
    overrides = [*TINY_TUNE, "augment.tune.strengths=[1]", "augment.tune.policies=[]", "runner.workers=1"]
    version, _ = build(tiny_config(*overrides, "augment.tune.metric=balanced_accuracy"))
    summary = load_manifest(version).tune
    assert summary.metric == "balanced_accuracy"
    assert [c.mean for c in summary.candidates] == pytest.approx([1 / 3, 1 / 3])
    assert summary.reason.startswith("none: validation balanced accuracy 0.3333")
    card = (version / "README.md").read_text()
    assert "| candidate | validation balanced accuracy | rows | |" in card


def test_candidates_can_be_scored_on_a_few_images_per_class(tiny_config):
    overrides = [
        *TINY_TUNE,
        "augment.tune.max_per_class=1",
        "augment.tune.strengths=[1]",
        "augment.tune.policies=[]",
    ]
    version, _ = build(tiny_config(*overrides))
    summary = load_manifest(version).tune
    assert [(c.name, c.rows) for c in summary.candidates] == [
        ("none", 3),
        ("recipe x1, 2 copies", 9),
    ]


def test_too_few_images_for_a_validation_part(tmp_path):
    from conftest import make_imagefolder
    from pipeline.build import load_config

    source = make_imagefolder(tmp_path / "src", {"a": 1, "b": 1})
    config = load_config(
        None,
        [
            "source.kind=imagefolder",
            f"source.path={source}",
            f"output.root={tmp_path}",
            "split.test_fraction=0.01",
        ]
        + TINY_TUNE,
    )
    with pytest.raises(PipelineError, match="augment.tune: no validation images"):
        build(config)


def test_tune_augmentation_and_score_candidate_on_a_staged_split(tiny_config):
    from pipeline.augment.tune import Candidate, score_candidate, tune_augmentation
    from pipeline.build.context import discard, prepare
    from pipeline.ingest.splits import validation_masks
    from pipeline.ingest.store import INDEX_FILE, load_index, values_at

    config = tiny_config(*TINY_TUNE, "augment.copies_per_image=1")
    context = prepare(config)
    try:
        augment, summary = tune_augmentation(config, context.work_dir, context.shape, context.class_names, 1)
        found, _ = candidates(config.augment)
        assert all(isinstance(c, Candidate) for c in found)
        chosen = next(c for c in found if c.name == summary["chosen"])
        assert augment == chosen.augment  # the winner's augmentation is what the build uses
        assert [c["name"] for c in summary["candidates"]] == [c.name for c in found]
        assert summary["fit_rows"] + summary["validation_rows"] == sum(
            n for n in context.details["source"]["counts"]["train"].values()
        )
        # Equal compute: every candidate trained as many steps, those of the largest one's epochs.
        largest = max(c["rows"] for c in summary["candidates"])
        steps = {c["steps"] for c in summary["candidates"]}
        assert steps == {config.augment.tune.classifier_epochs * -(-largest // 64)}
        assert min(c["rows"] for c in summary["candidates"]) < largest

        index = load_index(context.work_dir / INDEX_FILE)
        rows = index.rows_in("train").tolist()
        ids, labels = values_at(index.source_ids, rows), index.labels[rows]
        fit, validation = validation_masks(ids, labels, config.augment.tune.validation_fraction, config.seed)
        args = (
            config,
            found[0].augment,
            context.work_dir,
            context.shape,
            context.class_names,
            fit,
            validation,
        )
        scored = score_candidate(*args)
        assert scored["rows"] == int(fit.sum())  # "none": the fit images alone
        assert 0.0 <= scored["mean"] <= 1.0 and len(scored["runs"]) == config.augment.tune.seeds
        assert score_candidate(*args)["runs"] == scored["runs"]  # seeded: the same score again
    finally:
        discard(context)


def test_with_the_gate_on_tuning_never_sees_the_gates_validation_images():
    from pipeline.augment.tune import tune_masks
    from pipeline.build import load_config
    from pipeline.gan.synthesis import fit_validation_masks
    from pipeline.ingest.splits import validation_masks
    from pipeline.ingest.store import RealData

    ids = [f"img{k:03d}" for k in range(200)]
    labels = np.arange(200) % 4
    gated = load_config(None, ["augment.tune.enabled=true", "synthesis.enabled=true"])
    fit, validation = tune_masks(ids, labels, gated)
    _, gate_validation = fit_validation_masks(RealData(np.zeros((200, 2, 2), np.uint8), labels, ids), gated)
    assert gate_validation.any() and validation.any()
    assert not (gate_validation & (fit | validation)).any()  # nested: tuning fits and scores elsewhere
    assert not (fit & validation).any()
    assert validation.sum() == pytest.approx(
        0.2 * (~gate_validation).sum(), abs=4
    )  # its fraction of the rest
    # Without a gate, tuning carves as it always has.
    plain = load_config(None, ["augment.tune.enabled=true"])
    assert [m.tolist() for m in tune_masks(ids, labels, plain)] == [
        m.tolist() for m in validation_masks(ids, labels, 0.2, plain.seed)
    ]
