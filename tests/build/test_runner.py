import dataclasses
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import make_imagefolder, version_rows
from pipeline.build import build, runner
from pipeline.build.context import dataset_dir
from pipeline.build.runner import Executor, InProcess, local_workers, run_result, run_stages, train_gan_only
from pipeline.version.manifest import load_manifest, manifest_digest


def test_split_is_made_before_augmentation(tiny_config):
    version, created = build(tiny_config())
    assert created
    train, test = version_rows(version, "train"), version_rows(version, "test")
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
    test = version_rows(version, "test")
    assert len(test) == 6 and {r["origin"] for r in test} == {"real"}
    assert all(r["sha256"] == r["source_sha256"] and r["seed"] is None for r in test)
    train = version_rows(version, "train")
    assert len(train) == 18 and all(r["source_id"].startswith("train/") for r in train)


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
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    )
    assert json.loads(done.stdout.splitlines()[-1]) == [False, False, 1, "ToTensorV2", "system", "system"]


def test_a_chosen_arrow_allocator_is_kept():
    script = "import pipeline, pyarrow; print(pyarrow.default_memory_pool().backend_name)"
    env = {**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "mimalloc"


class _Recording(InProcess):
    """Runs in this process and records the stages it was asked to run."""

    def __init__(self):
        self.lines, self.ran = [], []
        super().__init__(self.lines.append)

    def stage(self, stage, context):
        self.ran.append(stage.name)
        return super().stage(stage, context)

    def shards(self, stage, context):
        self.ran.append(stage.name)
        return super().shards(stage, context)


def test_run_stages_runs_the_stages_that_apply_and_only_publish_for_an_existing_version(tiny_config):
    config = tiny_config()
    first: Executor = _Recording()
    context = run_stages(config, first, run={"flow_run_id": "abc"})
    assert first.ran == ["plan", "write-shard", "publish"] and not context.existing
    assert len(context.entries) == len(context.shards) > 1 and context.final_dir.is_dir()
    assert load_manifest(context.final_dir).run.model_extra["flow_run_id"] == "abc"
    again = _Recording()
    existing = run_stages(config, again)
    assert again.ran == ["publish"] and existing.existing and existing.final_dir == context.final_dir
    assert again.lines == [f"version {context.version_id} already published at {context.final_dir}"]


def test_a_failing_stage_removes_the_staging_and_leaves_no_version(tiny_config, monkeypatch):
    def fail(context, log):
        assert context.staging_dir.is_dir() and len(context.entries) == len(context.shards)
        raise OSError("publish failed")

    monkeypatch.setattr(
        runner,
        "STAGES",
        tuple(dataclasses.replace(s, run=fail) if s.name == "publish" else s for s in runner.STAGES),
    )
    config = tiny_config()
    with pytest.raises(OSError, match="publish failed"):
        run_stages(config, InProcess())
    assert [p.name for p in dataset_dir(config).iterdir()] == [".lock"]


def test_in_process_runs_shards_in_order_and_sends_warnings_apart(tiny_config, tmp_path):
    from pipeline.build.context import BuildContext
    from pipeline.build.plan import ShardSpec
    from pipeline.build.stages import Stage

    infos, warnings = [], []
    executor = InProcess(infos.append, warnings.append)
    shards = [ShardSpec("train", k, 3, rows=k + 1) for k in range(3)]
    context = BuildContext(tiny_config(), "d", "v-1", tmp_path / "v", tmp_path / "s", shards=shards)
    written = executor.shards(Stage("w", _entry, per_shard=True), context)
    assert [e["rows"] for e in written.entries] == [1, 2, 3] and written.shards == shards
    named = executor.stage(Stage("n", lambda c, log: log("named") or c), context)
    assert named is context and infos == ["named"]
    executor.log("full disk ahead", warning=True)
    executor.log("fine")
    assert warnings == ["full disk ahead"] and infos == ["named", "fine"]
    quiet = InProcess()
    quiet.log("dropped", warning=True)  # a log that drops its lines


def _entry(context, shard):
    return {"path": shard.name, "rows": shard.rows}


def test_local_workers_are_the_runners_or_one_for_dask():
    from pipeline.build import load_config

    assert local_workers(load_config(None, ["runner.workers=3"])) == 3
    dask = load_config(None, ["runner.kind=dask", "runner.workers=3", "runner.address=tcp://127.0.0.1:1"])
    assert local_workers(dask) == 1


def test_run_result_says_where_the_version_is_and_what_it_holds(tiny_config):
    context = run_stages(tiny_config(), InProcess())
    result = run_result(context)
    manifest = load_manifest(context.final_dir)
    assert result == {
        "version_dir": str(context.final_dir),
        "version_id": context.version_id,
        "manifest_sha256": manifest_digest(context.final_dir),
        "remote": None,
        "created": True,
        "splits": {split: dict(info.by_origin) for split, info in manifest.splits.items()},
        "skipped": 0,
        "ignored_files": 0,
        "duplicate_groups": 0,
        "tune": None,
        "synthesis": None,
    }
    assert result["splits"]["train"] == {"real": 10, "augmented": 20}


def test_train_gan_only_keeps_the_checkpoints_and_removes_the_staging(tiny_config, tmp_path, monkeypatch):
    from pipeline.gan.synthesis import REFERENCE_FILE

    seen = {}

    def train(config, work_dir, shape, classes, resume=None, on_metrics=None):
        seen.update(name=config.name, shape=shape, classes=classes, resume=resume)
        (work_dir / "gan").mkdir()
        for name in ("best.pt", "last.pt", REFERENCE_FILE):
            (work_dir / "gan" / name).write_text(name)
        return {"steps": 3, "checkpoint": str(work_dir / "gan" / "best.pt")}

    monkeypatch.setattr(runner, "train_gan_stage", train)
    config = tiny_config("synthesis.enabled=true")
    summary = train_gan_only(config, tmp_path / "gan-out", resume=tmp_path / "old.pt")
    assert summary == {"steps": 3, "checkpoint": str(tmp_path / "gan-out" / "best.pt")}
    assert seen == {
        "name": config.dataset_name() + "-gan",
        "shape": (8, 8, 3),
        "classes": 3,
        "resume": tmp_path / "old.pt",
    }
    assert (tmp_path / "gan-out" / REFERENCE_FILE).read_text() == REFERENCE_FILE
    staged = config.model_copy(update={"name": config.dataset_name() + "-gan"})
    assert [p.name for p in dataset_dir(staged).iterdir()] == [".lock"]  # nothing published, no staging
