"""Scale-out: the expand flow's shard tasks on a real Dask cluster give the same bytes."""

import pytest

from pipeline.build import build, load_config
from pipeline.version.manifest import load_manifest


def test_dask_cluster_writes_the_same_version(prefect_harness, tiny_folder, tmp_path):
    distributed = pytest.importorskip("distributed")
    from flows.expand import expand_for

    base = [
        "source.kind=imagefolder",
        f"source.path={tiny_folder}",
        "augment.copies_per_image=2",
        "output.shard_size=5",
    ]
    local, _ = build(load_config(None, [*base, f"output.root={tmp_path / 'local'}"]))
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        overrides = [
            *base,
            f"output.root={tmp_path / 'dask'}",
            "runner.kind=dask",
            f"runner.address={cluster.scheduler_address}",
        ]
        with distributed.get_task_stream(client) as stream:
            result = expand_for(load_config(None, overrides))(config_path=None, overrides=overrides)
    shards = load_manifest(local).shards
    assert len(stream.data) >= len(shards) > 2  # the shard tasks ran on the cluster
    assert result["version_id"] == local.name
    hashes = {f.path: f.sha256 for f in load_manifest(result["version_dir"]).files}
    assert hashes == {f.path: f.sha256 for f in load_manifest(local).files}


def test_expand_run_starts_a_local_cluster_whose_workers_use_the_runs_server(tiny_folder, tmp_path):
    """`runner.kind: dask` without an address: the run starts a local cluster, and its
    workers record their task runs with the run's temporary server instead of starting
    one each (3-4 s and a process apiece)."""
    pytest.importorskip("distributed")
    import subprocess
    import sys

    base = ["source.kind=imagefolder", f"source.path={tiny_folder}", "augment.copies_per_image=2"]
    base += ["output.shard_size=5"]
    local, _ = build(load_config(None, [*base, f"output.root={tmp_path / 'local'}"]))
    overrides = [*base, f"output.root={tmp_path / 'dask'}", "runner.kind=dask", "runner.workers=2"]
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "run", "/dev/null", "--quiet"]
        + [arg for item in overrides for arg in ("--set", item)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].endswith(local.name)  # the same version
    assert "Creating a new Dask cluster" in done.stderr
    assert done.stderr.count("Starting temporary server") == 1, done.stderr
