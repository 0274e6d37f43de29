"""pipeline.version.catalog: versions as first-class objects: rebuilds, the lock, crashes,
staging, gc and tags."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from cli.main import main
from pipeline.build import build, load_config
from pipeline.build import write as shard_writing
from pipeline.core.errors import PipelineError
from pipeline.version import catalog
from pipeline.version.manifest import load_manifest, verify

ROOT = Path(__file__).resolve().parents[2]


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

    def fail_on_fifth(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk full")
        return real_encode(*args, **kwargs)

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


def test_gc_keeps_newest_tagged_and_latest(tiny_config, capsys):
    versions = [build(tiny_config(f"seed={s}"))[0] for s in range(4)]
    dataset_dir = versions[0].parent
    assert main(["tag", str(versions[0]), "golden"]) == 0
    (dataset_dir / ".incomplete-crashed").mkdir()
    digests = dataset_dir / "digests"
    assert sorted(p.name for p in digests.iterdir()) == sorted(f"{v.name}.sha256" for v in versions)
    (digests / "v-0123456789abcdef.sha256").write_text("0" * 64 + "\n")  # a crash before its rename
    report = catalog.gc(dataset_dir.parent, keep=1, dry_run=True)
    assert sorted(report["removed"]) == sorted(str(v) for v in versions[1:3])
    assert all(v.exists() for v in versions)
    assert main(["gc", str(dataset_dir.parent), "--keep", "1"]) == 0
    remaining = {s.version_id: s for s in catalog.list_versions(dataset_dir.parent)}
    assert set(remaining) == {versions[0].name, versions[3].name}
    assert remaining[versions[0].name].tags == ["golden"] and remaining[versions[3].name].latest
    assert not (dataset_dir / ".incomplete-crashed").exists()
    assert sorted(p.name for p in digests.iterdir()) == sorted(f"{v}.sha256" for v in remaining)
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
