"""Versions as first-class objects: rebuilds, verify, lock, crashes, gc, tags, diff, lineage."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from cli.main import main
from pipeline.build import build, load_config
from pipeline.build import write as shard_writing
from pipeline.core.errors import PipelineError
from pipeline.version import catalog, rows
from pipeline.version.manifest import load_manifest, verify

ROOT = Path(__file__).resolve().parents[1]


def file_hashes(version: Path) -> dict[str, str]:
    return {f.path: f.sha256 for f in load_manifest(version).files}


@pytest.mark.parametrize("resize", [[], ["source.resize=[6, 7]"]])  # resized in the workers
def test_rebuild_is_byte_identical_whatever_the_worker_count(tiny_config, tmp_path, resize):
    one, _ = build(tiny_config("runner.workers=1", f"output.root={tmp_path / 'one'}", *resize))
    many, _ = build(tiny_config("runner.workers=4", f"output.root={tmp_path / 'many'}", *resize))
    assert one.name == many.name
    assert file_hashes(one) == file_hashes(many)
    assert len([p for p in file_hashes(one) if p.startswith("data/")]) > 2
    for path in file_hashes(one):  # croissant.json and the card too: no dates or local paths
        assert (one / path).read_bytes() == (many / path).read_bytes()


def test_unchanged_rerun_publishes_nothing_and_moves_latest(tiny_config):
    first, created = build(tiny_config())
    other, _ = build(tiny_config("seed=3"))
    assert os.readlink(first.parent / "latest") == other.name
    again, created_again = build(tiny_config())
    assert created and not created_again and again == first
    assert os.readlink(first.parent / "latest") == first.name
    assert len(catalog.list_versions(first.parent.parent)) == 2


@pytest.mark.parametrize("fmt", ["parquet", "imagefolder"])
def test_verify_catches_a_flipped_byte_in_any_shard_and_a_deleted_file(tiny_config, fmt):
    version, _ = build(tiny_config(f"output.format={fmt}"))
    assert verify(version) == []
    shards = [f.path for f in load_manifest(version).files if f.path.endswith((".parquet", ".png"))]
    assert len(shards) > 2
    for relative in shards:
        path = version / relative
        original = path.read_bytes()
        damaged = bytearray(original)
        damaged[len(damaged) // 2] ^= 0x01
        path.write_bytes(bytes(damaged))
        problems = verify(version)
        assert problems and all(p.startswith(relative) for p in problems), problems
        path.write_bytes(original)
    assert verify(version) == []
    (version / shards[0]).unlink()
    problems = verify(version, full=False)
    assert f"{shards[0]}: missing" in problems


def test_verify_cli_exit_codes(tiny_config, capsys):
    version, _ = build(tiny_config())
    assert main(["verify", str(version)]) == 0
    assert "OK" in capsys.readouterr().out
    (version / "extra.txt").write_text("smuggled")
    assert main(["verify", str(version)]) == 1
    assert "extra.txt: present but not listed" in capsys.readouterr().out
    assert main(["verify", str(version.parent)]) == 1
    assert "not a dataset version" in capsys.readouterr().err


def test_second_run_fails_clearly_or_waits_for_the_lock(tiny_config):
    config = tiny_config()
    dataset_dir = config.output.root / config.dataset_name()
    with catalog.dataset_lock(dataset_dir, purpose="test holder"):
        with pytest.raises(PipelineError, match=r"locked by test holder \(pid \d+"):
            build(config)
    # with a timeout, the second run waits for the first to let go
    held = threading.Event()

    def hold_briefly():
        with catalog.dataset_lock(dataset_dir, purpose="brief holder"):
            held.set()
            time.sleep(1.0)

    holder = threading.Thread(target=hold_briefly)
    holder.start()
    held.wait()
    version, created = build(tiny_config("output.lock_timeout=30"))
    holder.join()
    assert created and verify(version) == []


def test_two_concurrent_processes_share_one_root(tiny_config, tmp_path):
    """Two runs of different configs into one dataset directory, in parallel processes."""
    config = tiny_config()
    script = textwrap.dedent(
        """
        import json, sys
        from pipeline.build import build
        from pipeline.build import load_config
        overrides = json.loads(sys.argv[1])
        version, created = build(load_config(None, overrides))
        print(version.name, created)
        """
    )
    base = [
        "source.kind=imagefolder",
        f"source.path={config.source.path}",
        f"output.root={config.output.root}",
        "output.lock_timeout=120",
        "output.shard_size=5",
    ]
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script, json.dumps([*base, f"seed={seed}"])],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    outputs = [run.communicate(timeout=240)[0].split() for run in runs]
    assert [run.returncode for run in runs] == [0, 0]
    listed = catalog.list_versions(config.output.root)
    assert sorted(s.version_id for s in listed) == sorted(out[0] for out in outputs)
    assert all(verify(Path(s.path)) == [] for s in listed)


def test_failure_mid_shard_leaves_nothing_listed_and_rerun_gives_same_id(tiny_config, tmp_path, monkeypatch):
    reference, _ = build(tiny_config(f"output.root={tmp_path / 'reference'}"))
    config = tiny_config()
    calls = {"n": 0}
    real_encode = shard_writing.encode_image

    def fail_on_fifth(*args):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk full")
        return real_encode(*args)

    monkeypatch.setattr(shard_writing, "encode_image", fail_on_fifth)
    with pytest.raises(OSError, match="disk full"):
        build(config)
    dataset_dir = config.output.root / config.dataset_name()
    assert catalog.list_versions(dataset_dir) == []
    assert not list(dataset_dir.glob(".incomplete-*"))
    monkeypatch.setattr(shard_writing, "encode_image", real_encode)
    version, created = build(config)
    assert created and version.name == reference.name
    assert file_hashes(version) == file_hashes(reference)


def test_killed_run_leaves_only_staging_that_the_next_run_cleans(tiny_folder, tmp_path):
    def config_for(root: Path) -> list[str]:
        return [
            "source.kind=imagefolder",
            f"source.path={tiny_folder}",
            f"output.root={root}",
            "augment.copies_per_image=2",
            "output.shard_size=5",
            "runner.workers=1",
        ]

    reference, _ = build(load_config(None, config_for(tmp_path / "reference")))
    overrides = config_for(tmp_path / "out")
    started = tmp_path / "shard-started"
    script = textwrap.dedent(
        f"""
        import time
        import dataclasses
        from pipeline.build import build, load_config, runner
        from pipeline.build.write import write_shard
        def slow(context, shard):
            entry = write_shard(context, shard)
            open({str(started)!r}, "w").close()
            time.sleep(120)
            return entry
        runner.STAGES = tuple(dataclasses.replace(s, run=slow) if s.per_shard else s for s in runner.STAGES)
        build(load_config(None, {json.dumps(overrides)}))
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    deadline = time.monotonic() + 120
    while not started.exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    dataset_dir = tmp_path / "out" / reference.parent.name
    assert catalog.list_versions(dataset_dir) == []
    assert len(list(dataset_dir.glob(".incomplete-*"))) == 1
    version, created = build(load_config(None, overrides))  # the lock died with the process
    assert created and version.name == reference.name
    assert file_hashes(version) == file_hashes(reference)
    assert not list(dataset_dir.glob(".incomplete-*"))


def test_gc_keeps_newest_tagged_and_latest(tiny_config, capsys):
    versions = [build(tiny_config(f"seed={s}"))[0] for s in range(4)]
    dataset_dir = versions[0].parent
    assert main(["tag", str(versions[0]), "golden"]) == 0
    (dataset_dir / ".incomplete-crashed").mkdir()
    report = catalog.gc(dataset_dir.parent, keep=1, dry_run=True)
    assert sorted(report["removed"]) == sorted(str(v) for v in versions[1:3])
    assert all(v.exists() for v in versions)
    assert main(["gc", str(dataset_dir.parent), "--keep", "1"]) == 0
    remaining = {s.version_id: s for s in catalog.list_versions(dataset_dir.parent)}
    assert set(remaining) == {versions[0].name, versions[3].name}
    assert remaining[versions[0].name].tags == ["golden"] and remaining[versions[3].name].latest
    assert not (dataset_dir / ".incomplete-crashed").exists()
    capsys.readouterr()
    assert main(["versions", str(dataset_dir.parent), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [v["version_id"] for v in listed] == [versions[0].name, versions[3].name]
    build(tiny_config("name=a-dataset-with-a-longer-name"))
    assert main(["versions", str(dataset_dir.parent)]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    column = header.index("train r/a/s")  # each column starts where its heading does
    assert len(lines) == 3 and all(
        line[column - 2 : column] == "  " and line[column].isdigit() for line in lines
    )
    with pytest.raises(PipelineError, match="tag 'bad name'"):
        catalog.tag_version(versions[0], "bad name")
    assert catalog.tag_version(versions[3], "golden") == versions[0].name  # moved
    assert catalog.tag_version(versions[3], "golden", delete=True) == versions[3].name
    assert catalog.refs(dataset_dir)[1] == {}


def test_diff_shows_an_edited_added_and_removed_source_image(tiny_config, tiny_folder, capsys):
    before, _ = build(tiny_config())
    edited = tiny_folder / "cat" / "img_001.png"
    pixels = np.asarray(Image.open(edited)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(edited)
    (tiny_folder / "dog" / "img_000.png").unlink()
    Image.fromarray(255 - pixels).save(tiny_folder / "eel" / "img_new.png")  # not a duplicate
    after, _ = build(tiny_config())
    changes = rows.diff_versions(before, after)
    source = changes["source"]
    assert source["changed"]
    assert source["edited"] == ["cat/img_001.png"]
    assert source["removed"] == ["dog/img_000.png"]
    assert source["added"] == ["eel/img_new.png"]
    assert changes["config"] == []
    assert main(["diff", str(before), str(after)]) == 0
    out = capsys.readouterr().out
    assert "edited" in out and "cat/img_001.png" in out
    config_change = rows.diff_versions(after, build(tiny_config("augment.copies_per_image=1"))[0])
    assert config_change["config"] == [{"key": "augment.copies_per_image", "a": 2.0, "b": 1.0}]
    assert not config_change["source"]["changed"]


def test_a_synthesis_build_on_another_thread_count_is_another_version(tiny_config, capsys):
    """CPU results depend on torch's thread count: the id holds it, the manifest records
    it, and diff names it as the one difference."""
    import torch
    from test_synthesis import TINY_GAN

    config = tiny_config(*TINY_GAN, "synthesis.gate.enabled=false")
    threads = torch.get_num_threads()
    first, _ = build(config)
    torch.set_num_threads(threads + 1)
    try:
        second, created = build(config)
    finally:
        torch.set_num_threads(threads)
    assert created and second.name != first.name
    changes = rows.diff_versions(first, second)
    assert changes["config"] == [] and changes["counts"] == []
    assert changes["devices"] == [{"key": "cpu_threads", "a": threads, "b": threads + 1}]
    assert main(["diff", str(first), str(second)]) == 0
    assert f"synthesis cpu_threads: {threads} -> {threads + 1}" in capsys.readouterr().out


def test_lineage_traces_rows_to_source_and_run(tiny_config, capsys):
    version, _ = build(tiny_config(), run={"orchestrator": "test", "flow_run_id": "abc"})
    manifest = load_manifest(version)
    assert manifest.run.model_extra["flow_run_id"] == "abc" and manifest.run.host
    git = manifest.run.git
    assert git is None or len(git.commit) == 40
    table = pq.read_table(
        sorted((version / "data").glob("train-*.parquet"))[0], columns=["id", "origin", "source_id"]
    )
    augmented = [r for r in table.to_pylist() if r["origin"] == "augmented"][0]
    assert main(["lineage", str(version), augmented["id"]]) == 0
    traced = json.loads(capsys.readouterr().out)
    assert traced["row"]["source_id"] == augmented["source_id"]
    assert traced["made_by"]["applied"][0][0] == "Affine"
    assert traced["made_by"]["recipe"] == manifest.config["augment"]["transforms"]
    assert traced["run"]["flow_run_id"] == "abc"
    with pytest.raises(PipelineError, match="no row with id"):
        rows.lineage(version, "0" * 16)


@pytest.mark.parametrize("fmt", ["parquet", "imagefolder"])
def test_croissant_validates_and_its_records_load(tiny_config, fmt):
    mlc = pytest.importorskip("mlcroissant")
    version, _ = build(tiny_config(f"output.format={fmt}", "source.license=CC-BY-4.0"))
    dataset = mlc.Dataset(jsonld=str(version / "croissant.json"))  # raises on validation errors
    manifest = load_manifest(version)
    for split, info in manifest.splits.items():
        records = list(dataset.records(record_set=split))
        assert len(records) == info.rows
        image = records[0][f"{split}/image"]
        assert image.size == (8, 8)
    names = [r["class_names/name"] for r in dataset.records(record_set="class_names")]
    assert names == manifest.class_names
    document = json.loads((version / "croissant.json").read_text())
    assert "Synthetic data" in document["rai:dataCollectionType"] and document["license"] == "CC-BY-4.0"


def test_dataset_card_loads_with_datasets(tiny_config):
    datasets = pytest.importorskip("datasets")
    version, _ = build(tiny_config())
    card = (version / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    manifest = load_manifest(version)
    shard_bytes = sum(f.bytes for f in manifest.files if f.path.startswith("data/train-"))
    assert {
        "name": "train",
        "num_bytes": shard_bytes,
        "num_examples": manifest.splits["train"].rows,
    } in (header["dataset_info"]["splits"])
    loaded = datasets.load_dataset(str(version))
    assert {s: loaded[s].num_rows for s in loaded} == {s: i.rows for s, i in manifest.splits.items()}
    assert loaded["train"].features["label"].names == ["cat", "dog", "eel"]


def test_a_failing_worker_process_fails_the_build(tiny_config):
    from pipeline.build.context import prepare
    from pipeline.build.runner import InProcess
    from pipeline.build.stages import plan, stage_named
    from pipeline.ingest.store import PIXELS_FILE

    context = plan(prepare(tiny_config("runner.workers=2")))
    assert len(context.shards) > 2
    (context.work_dir / PIXELS_FILE).unlink()  # every shard now fails in its worker process
    with pytest.raises(OSError):
        InProcess().shards(stage_named("write-shard"), context)


def test_show_lists_the_rows_of_each_class(tiny_config, capsys, monkeypatch):
    version, _ = build(tiny_config("augment.classes={dog: {copies_per_image: 4}}"))
    assert main(["show", str(version)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines.index("  class  test  train r/a/s")
    per_class = load_manifest(version).splits
    for line in lines[header + 1 :]:
        name, test, train = line.split()
        assert int(test) == per_class["test"].by_origin_class["real"][name]
        real, augmented, synthetic = map(int, train.split("/"))
        assert augmented == (4 if name == "dog" else 2) * real and synthetic == 0
    assert [line.split()[0] for line in lines[header + 1 :]] == ["cat", "dog", "eel"]
    assert main(["show", str(version), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["rows_per_class"]
    assert shown == {split: info.by_origin_class for split, info in per_class.items()}
    from cli import catalog as catalog_cli

    monkeypatch.setattr(catalog_cli, "_CLASS_LIMIT", 2)  # more classes than a screen: a pointer
    assert main(["show", str(version)]) == 0
    out = capsys.readouterr().out
    assert "classes   3: rows per class in --json and the version's README.md" in out and " r/a/s" not in out
