import json
import os
import random
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import make_imagefolder
from pipeline.augment.counts import allocate_copies
from pipeline.build import build
from pipeline.build.context import prepare
from pipeline.build.publish import publish
from pipeline.build.stages import plan
from pipeline.build.write import write_shard
from pipeline.ingest.splits import carve_test_split
from pipeline.ingest.store import Index
from pipeline.version.layout import file_entry
from pipeline.version.manifest import read_manifest


def rows(version: Path, split: str) -> list[dict]:
    files = sorted((version / "data").glob(f"{split}-*.parquet"))
    return [r for f in files for r in pq.read_table(f).to_pylist()]


def test_split_is_made_before_augmentation(tiny_config):
    version, created = build(tiny_config())
    assert created
    train, test = rows(version, "train"), rows(version, "test")
    assert {r["origin"] for r in test} == {"real"}
    test_ids = {r["source_id"] for r in test}
    train_real = {r["source_id"] for r in train if r["origin"] == "real"}
    assert not test_ids & {r["source_id"] for r in train}
    augmented = [r for r in train if r["origin"] == "augmented"]
    assert {r["source_id"] for r in augmented} == train_real
    assert len(augmented) == 2 * len(train_real)
    assert len(test) + len(train_real) == 15
    # the carved test split is stratified: each class keeps about a third of its images
    assert Counter(r["label"] for r in test) == Counter({0: 2, 1: 1, 2: 2})


def test_source_test_split_is_copied_unchanged(tmp_path, tiny_config):
    src = make_imagefolder(tmp_path / "split-src", {"a": 3, "b": 3}, splits=["train", "test"])
    version, _ = build(tiny_config(f"source.path={src}"))
    test = rows(version, "test")
    assert len(test) == 6 and {r["origin"] for r in test} == {"real"}
    assert all(r["sha256"] == r["source_sha256"] and r["seed"] is None for r in test)
    train = rows(version, "train")
    assert len(train) == 18 and all(r["source_id"].startswith("train/") for r in train)


def test_a_source_without_a_test_split_gets_one_carved_from_train(tmp_path, tiny_config):
    """Split folders without ``test/`` (only train, or train and validation): the test split
    is carved from the training images, stratified; the validation split stays as it is."""
    src = make_imagefolder(tmp_path / "no-test", {"a": 5, "b": 5}, splits=["train", "val"])
    version, _ = build(tiny_config(f"source.path={src}", "split.test_fraction=0.4"))
    test, validation = rows(version, "test"), rows(version, "validation")
    assert Counter(r["label"] for r in test) == Counter({0: 2, 1: 2})
    assert all(r["source_id"].startswith("train/") and r["origin"] == "real" for r in test)
    assert len(validation) == 10 and all(r["source_id"].startswith("val/") for r in validation)
    real_train = {r["source_id"] for r in rows(version, "train") if r["origin"] == "real"}
    assert len(real_train) == 6 and not real_train & {r["source_id"] for r in test}
    assert read_manifest(version)["source"]["split_carved"] is True


def test_lineage_columns(tiny_config):
    version, _ = build(tiny_config())
    for row in rows(version, "train"):
        if row["origin"] == "real":
            assert row["seed"] is None and row["params"] is None
        else:
            applied = json.loads(row["params"])
            assert applied[0][0] == "Affine" and isinstance(row["seed"], int)
            assert row["sha256"] != row["source_sha256"]


def test_fractional_copies_are_floor_or_ceil(tiny_config):
    version, _ = build(tiny_config("augment.copies_per_image=1.5"))
    copies = Counter(r["source_id"] for r in rows(version, "train") if r["origin"] == "augmented")
    assert set(copies.values()) == {1, 2}


def test_target_per_class_balances(tiny_config):
    version, _ = build(tiny_config("augment.copies_per_image=null", "augment.target_per_class=9"))
    per_class = Counter(r["label"] for r in rows(version, "train"))
    assert per_class == Counter({0: 9, 1: 9, 2: 9})
    manifest = read_manifest(version)
    assert manifest["splits"]["train"]["by_origin_class"]["real"]["cat"] == 4


def test_result_does_not_depend_on_shard_order_or_size(tiny_config, tmp_path):
    one = tiny_config("output.shard_size=1000", f"output.root={tmp_path / 'a'}")
    version_a, _ = build(one)
    many = tiny_config("output.shard_size=3", f"output.root={tmp_path / 'b'}")
    context = plan(prepare(many))
    shards = list(context.shards)
    random.Random(1).shuffle(shards)
    entries = [write_shard(context, shard) for shard in shards]
    version_b = publish(replace(context, entries=entries))
    for split in ("train", "test"):
        a = {r["id"]: r["sha256"] for r in rows(version_a, split)}
        b = {r["id"]: r["sha256"] for r in rows(version_b, split)}
        assert a == b and len(a) > 0
    # same settings, shards written in another order: byte-identical shards
    again = tiny_config("output.shard_size=3", f"output.root={tmp_path / 'c'}")
    version_c, _ = build(again)
    files_b = {f["path"]: f["sha256"] for f in read_manifest(version_b)["files"]}
    files_c = {f["path"]: f["sha256"] for f in read_manifest(version_c)["files"]}
    assert files_b == files_c and len(files_b) > 2


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


def test_manifest_lists_every_file_with_hashes(tiny_config):
    version, _ = build(tiny_config())
    text = (version / "manifest.json").read_text()
    manifest = json.loads(text)
    assert text == json.dumps(manifest, sort_keys=True, indent=2) + "\n"
    assert manifest["schema_version"] == 1 and manifest["version_id"] == version.name
    on_disk = sorted(p for p in version.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert [f["path"] for f in manifest["files"]] == [p.relative_to(version).as_posix() for p in on_disk]
    for listed, path in zip(manifest["files"], on_disk, strict=True):
        assert listed == file_entry(version, path)
    assert manifest["splits"]["train"]["rows"] == len(rows(version, "train"))
    assert manifest["config"]["augment"]["copies_per_image"] == 2
    assert manifest["class_names"] == ["cat", "dog", "eel"]
    assert manifest["libraries"]["albumentations"].startswith("2.0")
    assert manifest["source"]["split_carved"] is True
    assert {"classes.png", "grid.png", "croissant.json", "README.md"} <= {
        f["path"] for f in manifest["files"]
    }


def test_version_id_is_content_derived(tiny_config, tmp_path):
    first, created = build(tiny_config())
    again, created_again = build(tiny_config())
    assert first == again and created and not created_again
    other_seed, _ = build(tiny_config("seed=1"))
    assert other_seed.name != first.name
    elsewhere, _ = build(tiny_config(f"output.root={tmp_path / 'elsewhere'}"))
    assert elsewhere.name == first.name
    (Path(tiny_config().source.path) / "cat" / "img_000.png").unlink()
    edited, _ = build(tiny_config())
    assert edited.name != first.name


def test_failed_shard_leaves_no_version(tiny_config, monkeypatch):
    class Boom(RuntimeError):
        pass

    def explode(self, pixels, seed):
        raise Boom("disk on fire")

    from pipeline.augment.recipe import Augmenter

    monkeypatch.setattr(Augmenter, "__call__", explode)
    config = tiny_config()
    with pytest.raises(Boom):
        build(config)
    parent = config.output.root / config.dataset_name()
    assert [p.name for p in parent.iterdir()] == [".lock"]  # no version, no staging


def test_byte_shard_size(tiny_config):
    version, _ = build(tiny_config("output.shard_size=4KB"))
    manifest = read_manifest(version)
    image_bytes = [len(r["image"]["bytes"]) for r in rows(version, "train")]
    expected_rows = 4000 // int(np.mean(image_bytes[:5]))
    assert 1 < manifest["augment"]["rows_per_shard"] <= expected_rows + 2
    assert len([s for s in manifest["shards"] if s["split"] == "train"]) > 1


@pytest.mark.parametrize(
    "recipe, fix",
    [
        ([{"Resize": {"height": 16, "width": 16}}], "add a Resize to the recipe's end"),
        ([{"ToFloat": {}}], "leave out ToFloat and Normalize"),
    ],
)
def test_a_recipe_that_changes_the_size_or_dtype_says_what_to_change(recipe, fix):
    from pipeline.augment.recipe import Augmenter
    from pipeline.core.errors import PipelineError

    with pytest.raises(PipelineError, match=f"changed the image from \\(8, 8\\) uint8 .*; {fix}"):
        Augmenter(recipe)(np.zeros((8, 8), np.uint8), 0)


def test_augmenter_output_depends_on_the_seed_only():
    from pipeline.augment.recipe import Augmenter

    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    recipe = [
        {"OneOf": {"p": 1.0, "transforms": [{"Affine": {"rotate": [-30, 30]}}, {"GaussNoise": {}}]}},
        {"RandomBrightnessContrast": {"p": 0.5}},
    ]
    first, again = Augmenter(recipe), Augmenter(recipe)
    seeds = [5, 6, 7, 5, 2**32 - 1, 0]
    outputs = [first(image, s) for s in seeds]
    assert np.array_equal(outputs[0][0], outputs[3][0]) and outputs[0][1] == outputs[3][1]
    for seed, (pixels, params) in zip(reversed(seeds), reversed(outputs), strict=True):
        other_pixels, other_params = again(image, seed)  # another instance, other call order
        assert np.array_equal(pixels, other_pixels) and params == other_params
    assert len({o[0].tobytes() for o in outputs}) == 5


def test_per_class_counts_and_recipes(tiny_config):
    classes = {"dog": {"copies_per_image": 0}, "eel": {"transforms": [{"VerticalFlip": {"p": 1.0}}]}}
    version, _ = build(tiny_config(f"augment.classes={json.dumps(classes)}"))
    by_class = read_manifest(version)["splits"]["train"]["by_origin_class"]
    assert "dog" not in by_class.get("augmented", {})
    assert by_class["augmented"]["cat"] == 2 * by_class["real"]["cat"]  # the dataset's count
    assert by_class["augmented"]["eel"] == 2 * by_class["real"]["eel"]
    augmented = [r for r in rows(version, "train") if r["origin"] == "augmented"]
    eel = [json.loads(r["params"]) for r in augmented if r["source_id"].startswith("eel/")]
    cat = [json.loads(r["params"]) for r in augmented if r["source_id"].startswith("cat/")]
    assert eel and all([name for name, _ in p] == ["VerticalFlip"] for p in eel)
    assert cat and all(p[0][0] == "Affine" for p in cat)  # the dataset's recipe


def test_per_class_settings_must_name_real_classes(tiny_config):
    from pipeline.core.errors import ConfigError, PipelineError

    with pytest.raises(PipelineError, match=r"augment.classes: \['zebra'\] are not classes"):
        build(tiny_config('augment.classes={"zebra": {"copies_per_image": 1}}'))
    with pytest.raises(ConfigError, match="classes.dog.transforms"):
        tiny_config('augment.classes={"dog": {"transforms": [{"Nope": {}}]}}')


def test_degenerate_augmentations_are_drawn_again(tiny_config):
    import io

    from PIL import Image

    from pipeline.augment.recipe import Augmenter

    recipe = [{"custom_transforms:Blank": {"p": 0.5}}]
    overrides = [
        f"augment.transforms={json.dumps(recipe)}",
        'augment.custom_transforms=["custom_transforms:Blank"]',
    ]
    loose, _ = build(tiny_config(*overrides, f"output.root={tiny_config().output.root}-loose"))
    strict, _ = build(tiny_config(*overrides, "augment.min_std=1"))
    assert read_manifest(loose)["augment"]["resampled"] == 0
    assert read_manifest(strict)["augment"]["resampled"] > 0
    blank = {"loose": 0, "strict": 0}
    sources = {r["id"]: r for r in rows(strict, "train") if r["origin"] == "real"}
    replay = Augmenter(recipe, ["custom_transforms:Blank"])
    for name, version in (("loose", loose), ("strict", strict)):
        for r in rows(version, "train"):
            if r["origin"] == "augmented":
                pixels = np.asarray(Image.open(io.BytesIO(r["image"]["bytes"])))
                blank[name] += pixels.std() < 1
                if name == "strict":  # the recorded seed replays the kept image
                    real = next(s for s in sources.values() if s["source_id"] == r["source_id"])
                    source = np.asarray(Image.open(io.BytesIO(real["image"]["bytes"])))
                    assert np.array_equal(replay(source, r["seed"])[0], pixels)
    assert blank["loose"] > 0 and blank["strict"] == 0


def test_a_build_without_synthesis_does_not_import_torch(tiny_config):
    """torch takes 3-4 s to import; a plain build and its worker processes go without it,
    and it still works where asked for (torch threads set to 1 in workers). Both use the
    system allocator for Arrow (mimalloc kept what Arrow's threads freed)."""
    config = tiny_config("runner.workers=2").model_dump(mode="json")
    script = """
import json, sys
from pipeline.build import build
from pipeline.config import Config
from pipeline.core.workers import run_one

build(Config.model_validate(json.loads(sys.argv[1])))
parent = "torch" in sys.modules
worker = run_one(eval, ("'torch' in __import__('sys').modules",), 2)
threads = run_one(eval, ("__import__('torch').get_num_threads()",), 2)
from pipeline.augment.recipe import build_transforms
to_tensor = type(build_transforms([{"ToTensorV2": {}}])[0]).__name__
pools = [
    __import__("pyarrow").default_memory_pool().backend_name,
    run_one(eval, ("__import__('pyarrow').default_memory_pool().backend_name",), 2),
]
print(json.dumps([parent, worker, threads, to_tensor, *pools]))
"""
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(config)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        check=True,
    )
    assert json.loads(done.stdout.splitlines()[-1]) == [False, False, 1, "ToTensorV2", "system", "system"]


def test_run_all_makes_a_calls_arguments_only_when_it_is_sent():
    from pipeline.core.workers import _IN_FLIGHT, Calls, run_all, warm_up

    assert warm_up(2).wait(120)
    made, outstanding = [], []

    def make(k):
        made.append(k)
        return (k, 2)

    results = run_all(pow, Calls(40, make), 2, on_result=lambda k, _: outstanding.append(len(made)))
    assert results == [k**2 for k in range(40)] and sorted(made) == list(range(40))
    # when the n-th call finishes, at most n - 1 others have finished and the window is full
    assert all(m <= n + _IN_FLIGHT * 2 for n, m in enumerate(outstanding))
    with pytest.raises(IndexError):
        Calls(3, make)[3]


def test_stopped_workers_end_their_calls_at_once_and_a_fresh_pool_follows():
    """An interrupted run does not wait for the calls its workers hold (they ignore Ctrl-C)."""
    import signal
    import time
    from concurrent.futures import CancelledError
    from concurrent.futures.process import BrokenProcessPool

    from pipeline.core.workers import run_one, stop_workers, warm_up, worker_pool

    assert warm_up(2).wait(120)
    pool = worker_pool(2)
    assert run_one(signal.getsignal, (signal.SIGINT,), 2) == signal.SIG_IGN
    held = [pool.submit(time.sleep, 600) for _ in range(3)]  # two running, one queued
    started = time.monotonic()
    stop_workers()
    for future in held:
        with pytest.raises((BrokenProcessPool, CancelledError)):
            future.result(timeout=30)
    assert time.monotonic() - started < 30  # not the 600 s they hold
    assert worker_pool(2) is not pool and run_one(pow, (3, 2), 2) == 9


def test_a_run_that_fails_while_the_pool_starts_exits_without_a_traceback():
    """The pool starts in the background; a process that ends before it is up (a bad source
    found in the first second) waits for it rather than leave the fork server starting a
    worker whose parent is gone (a FileNotFoundError traceback on stderr)."""
    script = "import time; from pipeline.core.workers import warm_up; warm_up(2); time.sleep(0.3); exit(3)"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stderr


def test_a_chosen_arrow_allocator_is_kept():
    script = "import pipeline, pyarrow; print(pyarrow.default_memory_pool().backend_name)"
    env = {**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "mimalloc"


def _write_order(rows, ids, seed):
    import pipeline.build.plan as plan_module

    return np.concatenate(list(plan_module._write_order(rows, ids, seed))).tolist()


def test_write_order_sorts_by_seeded_key_and_breaks_ties_by_id_then_replica(monkeypatch):
    import pyarrow as pa

    import pipeline.build.plan as plan_module
    from pipeline.core.seeds import derive_seed

    ids = pa.chunked_array([pa.array(["c", "a", "b"])])
    rows = plan_module._SplitRows(np.arange(3), np.array([1, 0, 2]))  # refs 0,0,1,2,2,2
    refs, replicas = rows.at(np.arange(rows.count))
    assert refs.tolist() == [0, 0, 1, 2, 2, 2] and replicas.tolist() == [0, 1, 0, 0, 1, 2]
    keys = [derive_seed(7, ids[r].as_py(), f"order-{k}") for r, k in zip(refs, replicas, strict=True)]
    id_rank = np.array([2, 0, 1])[refs]
    expected = np.lexsort((replicas, id_rank, np.array(keys, dtype=np.int64)))
    assert _write_order(rows, ids, 7) == expected.tolist()
    monkeypatch.setattr(plan_module, "derive_seed", lambda *args: 0)  # every key equal
    assert _write_order(rows, ids, 7) == [2, 3, 4, 5, 0, 1]
    # many equal keys among many rows: the same order as sorting by (key, id, replica)
    monkeypatch.setattr(plan_module, "derive_seed", lambda seed, i, salt: derive_seed(seed, i, salt) % 5)
    ids = pa.chunked_array([pa.array([f"img{i:03d}" for i in np.random.default_rng(1).permutation(300)])])
    rows = plan_module._SplitRows(np.arange(300), np.random.default_rng(2).integers(0, 4, 300))
    refs, replicas = rows.at(np.arange(rows.count))
    keys = [derive_seed(7, ids[r].as_py(), f"order-{k}") % 5 for r, k in zip(refs, replicas, strict=True)]
    id_rank = np.argsort(np.argsort(ids.to_pylist()))[refs]
    expected = np.lexsort((replicas, id_rank, np.array(keys)))
    assert _write_order(rows, ids, 7) == expected.tolist()


def test_write_order_sorted_a_key_range_at_a_time_is_one_sort(monkeypatch):
    """Rows sorted in many small key ranges (synthetic rows after the split's images) come
    out as one sort of every row by key; shards are cut across the ranges."""
    import pyarrow as pa

    import pipeline.build.plan as plan_module
    from pipeline.core.seeds import derive_seed

    ids = pa.chunked_array([pa.array([f"img{i:03d}" for i in range(200)]), pa.array(["fake0", "fake1"])])
    members = np.arange(0, 200, 2)  # every other image is in the split
    rows = plan_module._SplitRows(members, np.random.default_rng(3).integers(0, 3, 100), 200, 2)
    refs, replicas = rows.at(np.arange(rows.count))
    assert refs[-2:].tolist() == [200, 201] and replicas[-2:].tolist() == [0, 0]
    assert set(refs[:-2].tolist()) == set(members.tolist())
    keys = np.array(
        [derive_seed(7, ids[r].as_py(), f"order-{k}") for r, k in zip(refs, replicas, strict=True)]
    )
    whole = _write_order(rows, ids, 7)
    assert whole == np.argsort(keys, kind="stable").tolist()
    monkeypatch.setattr(plan_module, "_RANGE_ROWS", 16)
    ranges = list(plan_module._write_order(rows, ids, 7))
    assert len(ranges) == -(-rows.count // 16) and np.concatenate(ranges).tolist() == whole
    monkeypatch.setattr(plan_module, "_MAX_RANGES", 3)  # a large split: fewer, larger ranges
    few = list(plan_module._write_order(rows, ids, 7))
    assert len(few) == 3 and np.concatenate(few).tolist() == whole
    shards = list(plan_module._shard_positions(iter(ranges), 4, 60))
    assert [len(s) for s in shards] == [60, 60, 60, rows.count - 180]
    assert np.concatenate(shards).tolist() == whole


def test_seeded_ranks_order_by_key_then_id(monkeypatch):
    import pipeline.ingest.splits as ingest_module
    from pipeline.core.seeds import derive_seed

    ids = [f"img{i:03d}" for i in np.random.default_rng(4).permutation(200)]
    monkeypatch.setattr(ingest_module, "derive_seed", lambda seed, i, salt: derive_seed(seed, i, salt) % 7)
    keys = np.array([derive_seed(3, i, "split") % 7 for i in ids])
    expected = np.empty(len(ids), np.int64)
    expected[np.lexsort((np.argsort(np.argsort(ids)), keys))] = np.arange(len(ids))
    assert ingest_module.seeded_ranks(ids, 3, "split").tolist() == expected.tolist()
