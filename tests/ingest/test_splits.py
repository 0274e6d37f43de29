from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import config_for, make_imagefolder, version_rows
from pipeline.augment.counts import allocate_copies
from pipeline.build import build
from pipeline.ingest.splits import carve_test_split
from pipeline.ingest.store import Index
from pipeline.version.manifest import load_manifest


def test_a_source_without_a_test_split_gets_one_carved_from_train(tmp_path, tiny_config):
    """Split folders without ``test/`` (only train, or train and validation): the test split
    is carved from the training images, stratified; the validation split stays as it is."""
    src = make_imagefolder(tmp_path / "no-test", {"a": 5, "b": 5}, splits=["train", "val"])
    version, _ = build(tiny_config(f"source.path={src}", "split.test_fraction=0.4"))
    test, validation = version_rows(version, "test"), version_rows(version, "validation")
    assert Counter(r["label"] for r in test) == Counter({0: 2, 1: 2})
    assert all(r["source_id"].startswith("train/") and r["origin"] == "real" for r in test)
    assert len(validation) == 10 and all(r["source_id"].startswith("val/") for r in validation)
    real_train = {r["source_id"] for r in version_rows(version, "train") if r["origin"] == "real"}
    assert len(real_train) == 6 and not real_train & {r["source_id"] for r in test}
    assert load_manifest(version).source.split_carved is True


def test_split_and_allocation_ignore_input_order(tiny_config):
    ids = [f"img{i}" for i in range(40)]
    labels = np.array([i % 3 for i in range(40)])
    order = np.random.default_rng(0).permutation(40)
    first = dict(zip(ids, carve_test_split(ids, labels, 0.25, seed=5), strict=True))
    shuffled_ids = [ids[i] for i in order]
    second = dict(zip(shuffled_ids, carve_test_split(shuffled_ids, labels[order], 0.25, seed=5), strict=True))
    assert first == second
    augment = tiny_config("augment.copies_per_image=1.3").augment
    splits = ["train"] * 40
    names = ["a", "b", "c"]
    a, _ = allocate_copies(Index(ids, labels, splits, [""] * 40), augment, 5, names)
    b, _ = allocate_copies(Index(shuffled_ids, labels[order], splits, [""] * 40), augment, 5, names)
    assert dict(zip(ids, a.tolist(), strict=True)) == dict(zip(shuffled_ids, b.tolist(), strict=True))


def test_seeded_ranks_order_by_key_then_id(monkeypatch):
    import pipeline.ingest.splits as ingest_module
    from pipeline.core.seeds import derive_seed

    ids = [f"img{i:03d}" for i in np.random.default_rng(4).permutation(200)]
    monkeypatch.setattr(ingest_module, "derive_seed", lambda seed, i, salt: derive_seed(seed, i, salt) % 7)
    keys = np.array([derive_seed(3, i, "split") % 7 for i in ids])
    expected = np.empty(len(ids), np.int64)
    expected[np.lexsort((np.argsort(np.argsort(ids)), keys))] = np.arange(len(ids))
    assert ingest_module.seeded_ranks(ids, 3, "split").tolist() == expected.tolist()


def test_an_image_in_train_and_test_is_left_out_of_train(tmp_path):
    root = make_imagefolder(tmp_path / "src", {"cat": 3, "dog": 3}, splits=["train", "test"])
    (root / "train" / "cat" / "leak.png").write_bytes((root / "test" / "dog" / "img_002.png").read_bytes())
    version, _ = build(config_for(root, tmp_path, "augment.copies_per_image=2"))
    manifest = load_manifest(version)
    [leak] = manifest.source.skipped
    assert leak.source_id == "train/cat/leak.png"
    assert "same pixels as test image test/dog/img_002.png (leakage)" in leak.reason
    rows = [
        r for f in sorted((version / "data").glob("train-*.parquet")) for r in pq.read_table(f).to_pylist()
    ]
    assert rows and not [r for r in rows if r["source_id"] == "train/cat/leak.png"]


def test_repeated_source_ids_are_found():

    from pipeline.ingest.splits import duplicate_groups
    from pipeline.ingest.stage import _repeated_value

    assert _repeated_value(pa.array(["b", "a", "c", "b", "a"])) == "a"
    assert _repeated_value(pa.array(["b", "a", "c"])) is None
    assert _repeated_value(pa.array([], pa.string())) is None
    # the same pixels under three ids: one group, sorted by id, lists or Arrow arrays alike
    ids, hashes = ["z", "x", "y", "w"], ["f" * 64, "0" * 64, "f" * 64, "f" * 64]
    assert duplicate_groups(ids, hashes) == duplicate_groups(pa.array(ids), pa.array(hashes)) == [[3, 2, 0]]


def test_leaked_rows_are_training_rows_with_the_pixels_of_another_split():
    from pipeline.ingest.splits import leaked_rows
    from pipeline.ingest.store import EXCLUDED

    a, b, c = "a" * 64, "b" * 64, "c" * 64
    ids = ["train/x", "train/y", "test/x", "val/z", "train/z", "train/w", "gone/q"]
    hashes = [a, b, a, c, c, b, b]
    splits = ["train", "train", "test", "validation", "train", "train", EXCLUDED]
    assert leaked_rows(ids, hashes, splits, {}) == {
        0: "same pixels as test image test/x (leakage): left out of train",
        4: "same pixels as validation image val/z (leakage): left out of train",
    }
    # rows already left out count neither as leaked nor as what they leak
    assert leaked_rows(ids, hashes, splits, {2: "bad", 4: "bad"}) == {}
    assert leaked_rows(pa.array(ids), pa.array(hashes), splits, {}).keys() == {0, 4}


@pytest.mark.parametrize(
    ("n", "fraction", "carved"),
    [(10, 0.25, 3), (10, 0.2, 2), (3, 0.34, 1), (2, 0.9, 1), (1, 0.5, 0), (4, 0.125, 1)],
)
def test_carved_count_rounds_half_up_and_leaves_one_in_train(n, fraction, carved):
    from pipeline.ingest.splits import carved_count

    assert carved_count(n, fraction) == carved
    labels = np.zeros(n, int)
    splits = carve_test_split([f"i{k}" for k in range(n)], labels, fraction, seed=0)
    assert splits.count("test") == carved


def test_sort_by_key_breaks_ties_with_the_tiebreak_only():
    from pipeline.ingest.splits import sort_by_key

    keys = np.array([5, 1, 5, 3, 1, 5])
    ids = ["f", "e", "d", "c", "b", "a"]
    asked = []

    def tiebreak(positions):
        asked.append(sorted(positions.tolist()))
        return [(ids[p],) for p in positions]

    assert sort_by_key(keys, tiebreak).tolist() == [4, 1, 3, 5, 2, 0]
    assert asked == [[0, 1, 2, 4, 5]]  # only the tied positions
    assert sort_by_key(np.array([3, 1, 2]), tiebreak).tolist() == [1, 2, 0] and len(asked) == 1


def test_validation_masks_are_a_seeded_stratified_carve():
    from pipeline.ingest.splits import validation_masks

    ids = [f"img{i}" for i in range(40)]
    labels = np.array([i % 2 for i in range(40)])
    fit, validation = validation_masks(ids, labels, 0.25, seed=3)
    assert (fit == ~validation).all() and validation.sum() == 10
    assert Counter(labels[validation].tolist()) == Counter({0: 5, 1: 5})
    again = validation_masks(ids, labels, 0.25, seed=3)[1]
    other = validation_masks(ids, labels, 0.25, seed=4)[1]
    assert (again == validation).all() and not (other == validation).all()
