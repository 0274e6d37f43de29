"""Offline MixUp / CutMix with soft labels (augment.mix)."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.augment.mixing import choose_partners, mix_images, soft_label
from pipeline.build import build
from pipeline.config import EvaluateConfig, MixConfig
from pipeline.dataset import ExpandedDataset, IterableExpandedDataset
from pipeline.version.manifest import load_manifest, verify


@pytest.mark.parametrize("method", ["mixup", "cutmix"])
@pytest.mark.parametrize("shape", [(8, 8), (9, 13, 3)])
def test_the_copy_keeps_the_larger_share(method, shape):
    rng = np.random.default_rng(0)
    for seed in range(200):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        partner = rng.integers(0, 256, shape, dtype=np.uint8)
        out, done = mix_images(image, partner, method, alpha=1.0, seed=seed)
        assert out.shape == image.shape and out.dtype == np.uint8
        assert 0.5 < done.lam <= 1.0
        if method == "cutmix":
            y0, x0, y1, x1 = done.box
            pasted = np.zeros(shape[:2], bool)
            pasted[y0:y1, x0:x1] = True
            assert np.array_equal(out[pasted], partner[pasted]) and np.array_equal(
                out[~pasted], image[~pasted]
            )
            assert done.lam == pytest.approx(1 - pasted.mean())
        else:
            expected = np.rint(done.lam * image.astype(float) + (1 - done.lam) * partner.astype(float))
            assert np.abs(out.astype(float) - expected).max() <= 1
    same = mix_images(image, partner, method, 0.4, seed=7)
    again = mix_images(image, partner, method, 0.4, seed=7)
    assert np.array_equal(same[0], again[0]) and same[1] == again[1]


def test_soft_labels_sum_to_one():
    assert soft_label(1, 3) == [0.0, 1.0, 0.0]
    mixed = soft_label(0, 3, partner_label=2, lam=0.7)
    assert mixed == pytest.approx([0.7, 0.0, 0.3]) and sum(mixed) == pytest.approx(1.0)
    assert soft_label(2, 3, partner_label=2, lam=0.6) == pytest.approx([0, 0, 1])


def test_partners_come_from_the_pool_and_never_the_row_itself():
    mix = MixConfig(method="either", fraction=0.5)
    ids = [f"img{i}" for i in range(400)]
    replicas = np.array([i % 3 for i in range(400)])
    pixel_rows = np.arange(400) // 3
    pool = np.unique(pixel_rows)
    methods, partners = choose_partners(mix, 0, ids, replicas, pixel_rows, pool)
    mixed = partners >= 0
    assert all((m is not None) == x for m, x in zip(methods, mixed, strict=True))
    assert not mixed[replicas == 0].any()  # real rows are never mixed
    share = mixed[replicas > 0].mean()
    assert 0.4 < share < 0.6
    assert set(partners[mixed]) <= set(pool) and not (partners == pixel_rows)[mixed].any()
    assert {m for m in methods if m} == {"mixup", "cutmix"}
    again = choose_partners(mix, 0, ids, replicas, pixel_rows, pool)
    assert again[0] == methods and np.array_equal(again[1], partners)


@pytest.mark.parametrize("fmt", ["parquet", "imagefolder"])
def test_mixed_version_has_soft_labels_end_to_end(tiny_config, fmt):
    config = tiny_config(
        "augment.copies_per_image=4",
        "augment.mix.method=either",
        "augment.mix.fraction=0.6",
        f"output.format={fmt}",
    )
    version, _ = build(config)
    assert verify(version, full=True) == []
    mixed = load_manifest(version).augment.mixed
    assert mixed["mixup"] > 0 and mixed["cutmix"] > 0
    folder = "data" if fmt == "parquet" else "lineage"
    schema = pq.read_schema(next((version / folder).glob("train-*.parquet")))
    assert schema.field("soft_label").type.value_type == "float32"
    rows = [r for f in sorted((version / folder).glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    mixed_rows = 0
    for row in rows:
        soft = np.array(row["soft_label"])
        assert soft.shape == (3,) and soft.sum() == pytest.approx(1.0, abs=1e-6)
        assert int(np.argmax(soft)) == row["label"]
        steps = json.loads(row["params"]) if row["params"] else []
        mixing = [s for s in steps if s[0] in ("MixUp", "CutMix")]
        if mixing:
            mixed_rows += 1
            assert row["origin"] == "augmented"
            assert soft[row["label"]] == pytest.approx(mixing[0][1]["lam"], abs=1e-6) or soft.max() == 1.0
            assert mixing[0][1]["partner"] != row["source_id"] or soft.max() == 1.0
        else:
            assert soft.max() == 1.0
    assert mixed_rows == mixed["mixup"] + mixed["cutmix"]
    assert "soft_label" in (version / "README.md").read_text()

    dataset = ExpandedDataset(version, soft_labels=True)
    targets = torch.stack([dataset[i][1] for i in range(len(dataset))])
    assert targets.shape == (len(dataset), 3) and torch.allclose(targets.sum(1), torch.ones(len(dataset)))
    assert (targets.max(1).values < 1).sum() > 0  # mixed rows come back soft
    assert torch.equal(targets.argmax(1), torch.tensor(dataset.labels))
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=8)))
    assert batch[1].shape == (8, 3)
    if fmt == "parquet":
        stream = list(IterableExpandedDataset(version, soft_labels=True))
        assert sorted(t[1].tolist() for t in stream) == sorted(targets.tolist())


def test_mixing_is_the_same_on_one_or_two_workers(tiny_config, tmp_path):
    overrides = ["augment.copies_per_image=3", "augment.mix.method=either"]
    one, _ = build(tiny_config(*overrides, f"output.root={tmp_path / 'one'}"))
    two, _ = build(tiny_config(*overrides, f"output.root={tmp_path / 'two'}", "runner.workers=2"))
    files = {f.path: f.sha256 for f in load_manifest(one).files}
    assert one.name == two.name and files == {f.path: f.sha256 for f in load_manifest(two).files}


def test_unmixed_versions_have_no_soft_label_column_but_the_reader_gives_one_hot(tiny_config):
    version, _ = build(tiny_config())
    schema = pq.read_schema(next((version / "data").glob("train-*.parquet")))
    assert "soft_label" not in schema.names
    dataset = ExpandedDataset(version, soft_labels=True)
    image, target = dataset[0]
    assert target.tolist() == torch.nn.functional.one_hot(torch.tensor(dataset.labels[0]), 3).float().tolist()


def test_soft_labels_load_with_datasets(tiny_config):
    datasets = pytest.importorskip("datasets")
    version, _ = build(tiny_config("augment.mix.method=mixup", "augment.mix.fraction=1"))
    loaded = datasets.load_dataset(str(version))
    feature = loaded["train"].features["soft_label"]
    assert feature.feature.dtype == "float32"
    soft = [s for s in loaded["train"]["soft_label"] if max(s) < 1]
    assert soft and all(sum(s) == pytest.approx(1.0, abs=1e-6) for s in soft)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("augment.mix.method=blend", "augment.mix.method"),
        ("augment.mix.alpha=0", "augment.mix.alpha"),
        ("augment.mix.fraction=1.5", "augment.mix.fraction"),
        ("augment.mix.share=1", "augment.mix.share"),
    ],
)
def test_bad_mix_settings_name_the_key(tiny_config, override, message):
    from pipeline.core.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        tiny_config(override)


@pytest.mark.parametrize("fmt", ["parquet", "imagefolder"])
def test_soft_labels_are_in_the_croissant_records(tiny_config, fmt):
    mlc = pytest.importorskip("mlcroissant")
    version, _ = build(
        tiny_config("augment.mix.method=cutmix", "augment.mix.fraction=1", f"output.format={fmt}")
    )
    dataset = mlc.Dataset(jsonld=str(version / "croissant.json"))
    record_set = "train" if fmt == "parquet" else "lineage"
    records = list(dataset.records(record_set=record_set))
    soft = [np.asarray(r[f"{record_set}/soft_label"], dtype=float) for r in records]
    assert all(s.shape == (3,) and s.sum() == pytest.approx(1, abs=1e-6) for s in soft)
    assert any(s.max() < 1 for s in soft)


def test_evaluation_trains_on_the_soft_labels(tiny_config, monkeypatch):
    from pipeline.evaluate import evaluation

    version, _ = build(tiny_config("augment.mix.method=mixup", "augment.mix.fraction=1"))
    seen = []
    real_train = evaluation.train_classifier
    monkeypatch.setattr(
        evaluation, "train_classifier", lambda x, y, *a, **k: seen.append(y) or real_train(x, y, *a, **k)
    )
    result = evaluation.evaluate_subset(version, "real+augmented", EvaluateConfig(seeds=1, epochs=1))
    assert 0 <= result["mean"] <= 1
    (targets,) = seen
    assert targets.shape == (result["rows"], 3) and (targets.max(1).values < 1).any()


def test_mix_copy_draws_with_the_copys_own_seed():
    from pipeline.augment.mixing import Mixed, mix_copy
    from pipeline.core.seeds import derive_seed

    rng = np.random.default_rng(1)
    image, partner = (rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(2))
    mix = MixConfig(method="cutmix", alpha=0.7)
    out, done = mix_copy(image, partner, "cutmix", mix, 9, "cat/a.png", 2)
    expected = mix_images(image, partner, "cutmix", 0.7, derive_seed(9, "cat/a.png", "mix-draw-2"))
    assert np.array_equal(out, expected[0]) and done == expected[1]
    assert isinstance(done, Mixed) and done.method == "cutmix" and len(done.box) == 4
    other = mix_copy(image, partner, "cutmix", mix, 9, "cat/a.png", 3)[1]
    assert other != done
    _, blended = mix_copy(image, partner, "mixup", mix, 9, "cat/a.png", 2)
    assert blended.method == "mixup" and blended.box is None and 0.5 < blended.lam <= 1
