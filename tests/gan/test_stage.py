"""pipeline.gan.stage: GAN training and sampling on a build's staging area, and the sample grid."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_GAN
from pipeline.build.context import discard, prepare
from pipeline.gan.checkpoint import GanShape
from pipeline.gan.stage import (
    CHECKPOINT_IN_VERSION,
    GRID_FILE,
    HISTORY_FILE,
    SYNTHETIC_PIXELS,
    gan_shape,
    read_synthetic,
    synthesize_stage,
    train_gan_stage,
    write_grid,
)
from pipeline.ingest.store import RealData
from pipeline.version.pictures import CURVES_FILE


def test_gan_shape_reads_channels_from_the_staged_shape():
    assert gan_shape((8, 6), 3) == GanShape(num_classes=3, channels=1, height=8, width=6)
    assert gan_shape((8, 6, 3), 2) == GanShape(num_classes=2, channels=3, height=8, width=6)


def test_train_then_synthesize_stage_the_rows_and_put_the_files_in_the_version(tiny_config):
    config = tiny_config(*TINY_GAN, "synthesis.gate.enabled=false")
    context = prepare(config)
    try:
        work, classes = context.work_dir, context.class_names
        summary = train_gan_stage(config, work, context.shape, len(classes))
        checkpoint = Path(summary["checkpoint"])
        assert checkpoint == work / "gan" / "best.pt" and summary["best"]["step"] in {2, 4}
        curves = json.loads((work / HISTORY_FILE).read_text())
        assert curves and not any("img_per_s" in point for point in curves)  # speeds are left out
        context.version_dir.mkdir(parents=True, exist_ok=True)
        report = synthesize_stage(config, work, context.version_dir, context.shape, classes, checkpoint)
        assert report["published"] == 9 and report["per_class"] == {"cat": 3, "dog": 3, "eel": 3}
        assert report["files"] == {
            "checkpoint": CHECKPOINT_IN_VERSION,
            "grid": GRID_FILE,
            "curves": CURVES_FILE,
        }
        assert (context.version_dir / CHECKPOINT_IN_VERSION).read_bytes() == checkpoint.read_bytes()
        assert (context.version_dir / GRID_FILE).is_file() and (context.version_dir / CURVES_FILE).is_file()
        assert report["devices"]["training"] == "cpu"
        staged = read_synthetic(work)
        sha = report["checkpoint_sha256"]
        assert staged.num_rows == 9 and set(staged.column("checkpoint_sha256").to_pylist()) == {sha}
        assert all(s.startswith(f"gan/{sha[:12]}/") for s in staged.column("source_id").to_pylist())
        assert sorted(staged.column("label").to_pylist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
        assert (work / SYNTHETIC_PIXELS).stat().st_size == 9 * 8 * 8 * 3  # one row of pixels each
    finally:
        discard(context)


def test_write_grid_puts_real_images_left_and_generated_ones_right(tmp_path):
    real = RealData(np.zeros((4, 2, 3), np.uint8), np.array([0, 0, 1, 1]), list("abcd"))
    fake, fake_labels = np.full((2, 2, 3), 100, np.uint8), np.array([1, 1])
    write_grid(tmp_path / "grid.png", real, fake, fake_labels, num_classes=2, scale=1)
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape == (2 * 3, 17 * 4)  # a row per class; 8 real, a gap, 8 generated; 1-pixel borders
    assert (grid[0:2, 0:3] == 0).all() and (grid[3:5, 4:7] == 0).all()  # real images of both classes
    assert (grid[3:5, 36:39] == 100).all() and (grid[3:5, 40:43] == 100).all()  # class 1's generated
    assert (grid == 0).sum() == 4 * 6 and (grid == 100).sum() == 2 * 6 and (grid[0, 36:] == 255).all()


def test_synthetic_rows_can_carry_the_teachers_soft_labels(tiny_config):
    from conftest import TINY_GAN, version_rows
    from pipeline.build import build
    from pipeline.dataset import ExpandedDataset
    from pipeline.version.manifest import load_manifest, verify

    version, _ = build(tiny_config(*TINY_GAN, "synthesis.gate.enabled=false", "synthesis.soft_labels=true"))
    manifest = load_manifest(version)
    assert manifest.soft_labels and verify(version) == []
    assert "Soft labels: every synthetic row" in (version / "README.md").read_text()
    rows = version_rows(version, "train")
    synthetic = [r for r in rows if r["origin"] == "synthetic"]
    others = [r for r in rows if r["origin"] != "synthetic"]
    assert synthetic and others
    for r in synthetic:  # the reference classifier's probabilities: sum to 1, not one-hot
        assert sum(r["soft_label"]) == pytest.approx(1.0, abs=1e-4) and max(r["soft_label"]) < 1.0
    for r in others:  # one-hot for real and augmented rows
        assert r["soft_label"][r["label"]] == 1.0 and sum(r["soft_label"]) == 1.0
    dataset = ExpandedDataset(version, "train", soft_labels=True, origins=("synthetic",))
    _, label = dataset[0]
    assert label.dtype == torch.float32 and label.shape == (len(manifest.class_names),)


def test_the_gate_trains_the_synthetic_arm_on_soft_labels(tiny_config, monkeypatch):
    from conftest import TINY_GAN
    from pipeline.build import build
    from pipeline.gan import gate

    seen, train = [], gate.train_classifier
    monkeypatch.setattr(
        gate, "train_classifier", lambda x, y, *a, **k: seen.append(y) or train(x, y, *a, **k)
    )
    build(tiny_config(*TINY_GAN, "synthesis.soft_labels=true"))
    base, arm = seen  # one seed: the baseline, then ratio 0.5
    assert base.dtype == arm.dtype == torch.float32 and base.shape[1] == arm.shape[1] == 3
    assert torch.all(base.max(dim=1).values == 1.0)  # one-hot
    extra = arm[len(base) :]
    assert len(extra) and torch.allclose(extra.sum(dim=1), torch.ones(len(extra)), atol=1e-4)
    assert (extra.max(dim=1).values < 1.0).any()  # the teacher's probabilities


@pytest.mark.parametrize("layout", ["parquet", "imagefolder"])
def test_synthetic_rows_carry_their_loss_weight_to_readers_and_evaluation(tiny_config, monkeypatch, layout):
    from conftest import version_rows
    from pipeline.build import build
    from pipeline.config import EvaluateConfig
    from pipeline.dataset import ExpandedDataset
    from pipeline.evaluate import evaluation
    from pipeline.version.croissant import croissant_metadata
    from pipeline.version.manifest import load_manifest, verify

    overrides = [
        *TINY_GAN,
        "synthesis.gate.enabled=false",
        "synthesis.weight=0.25",
        f"output.format={layout}",
    ]
    version, _ = build(tiny_config(*overrides))
    manifest = load_manifest(version)
    assert manifest.row_weights and verify(version, full=True) == []
    dataset = ExpandedDataset(version, "train", return_lineage=True)
    synthetic = dataset.origins == "synthetic"
    assert synthetic.any() and (~synthetic).any()
    assert dataset.loss_weights[synthetic].tolist() == [0.25] * int(synthetic.sum())
    assert set(dataset.loss_weights[~synthetic].tolist()) == {1.0}
    first = int(np.flatnonzero(synthetic)[0])
    assert dataset[first][2]["weight"] == 0.25 and dataset[0][2]["weight"] in {0.25, 1.0}
    if layout == "parquet":  # the column, for readers without our code
        assert {r["weight"] for r in version_rows(version, "train") if r["origin"] == "synthetic"} == {0.25}
        assert "Loss weights: every row has a `weight` column, 0.25" in (version / "README.md").read_text()
    fields = {f["name"] for rs in croissant_metadata(manifest)["recordSet"] for f in rs["field"]}
    assert "weight" in fields
    # expand evaluate trains the subsets with synthetic rows on their weights, the others unweighted
    seen, train = {}, evaluation.train_classifier

    def recorded(x, *args, weights=None, **kwargs):
        seen[len(x)] = weights
        return train(x, *args, weights=weights, **kwargs)

    monkeypatch.setattr(evaluation, "train_classifier", recorded)
    evaluation.evaluate_subset(version, "real+augmented", EvaluateConfig(seeds=1, epochs=1))
    evaluation.evaluate_subset(version, "synthetic only (CAS)", EvaluateConfig(seeds=1, epochs=1))
    unweighted, cas = seen.values()
    assert unweighted is None and cas.tolist() == [0.25] * int(synthetic.sum())


def test_a_version_without_weights_has_no_weight_column(tiny_config):
    from conftest import version_rows
    from pipeline.build import build
    from pipeline.dataset import ExpandedDataset

    version, _ = build(tiny_config(*TINY_GAN, "synthesis.gate.enabled=false"))
    assert "weight" not in version_rows(version, "train")[0]
    dataset = ExpandedDataset(version, "train", return_lineage=True)
    assert set(dataset.loss_weights.tolist()) == {1.0} and "weight" not in dataset[0][2]


def test_target_per_class_fills_each_class_up_with_synthetic_rows(tiny_config):
    from pipeline.build import build
    from pipeline.version.manifest import load_manifest

    overrides = [
        *TINY_GAN,
        "synthesis.per_class=null",
        "synthesis.target_per_class=6",
        "augment.copies_per_image=0",
    ]
    version, _ = build(tiny_config(*overrides, "synthesis.gate.enabled=false"))
    manifest = load_manifest(version)
    by_origin = manifest.splits["train"].by_origin_class
    for name, real in by_origin["real"].items():  # the filter keeps every sample: exactly the fill
        assert real + by_origin.get("synthetic", {}).get(name, 0) == 6
    assert manifest.synthesis.wanted == sum(6 - n for n in by_origin["real"].values())


def test_the_staged_history_leaves_out_speed_and_memory(tmp_path):
    import json

    from pipeline.gan.stage import HISTORY_FILE, write_history

    write_history(
        tmp_path, [{"step": 2, "d_loss": 1.0, "img_per_s": 90.0, "peak_mem_gib": 0.5}, {"step": 2, "fd": 3.0}]
    )
    assert json.loads((tmp_path / HISTORY_FILE).read_text()) == [
        {"step": 2, "d_loss": 1.0},
        {"step": 2, "fd": 3.0},
    ]
