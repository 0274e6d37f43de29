"""Scale-out: the expand flow's shard and sampling tasks on a real Dask cluster give the same bytes."""

import pytest

from conftest import TINY_GAN
from pipeline.build import build, load_config
from pipeline.version.manifest import load_manifest


def _local_and_on_a_cluster(base: list[str], tmp_path):
    """The version of ``base`` built in this process, and the flow's result and the keys
    of the tasks run on a 2-worker Dask cluster building it again."""
    distributed = pytest.importorskip("distributed")
    from flows.expand import expand_for

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
    assert result["version_id"] == local.name
    hashes = {f.path: f.sha256 for f in load_manifest(result["version_dir"]).files}
    assert hashes == {f.path: f.sha256 for f in load_manifest(local).files}
    return local, result, [str(t["key"]) for t in stream.data]


def test_dask_cluster_writes_the_same_version(prefect_harness, tiny_folder, tmp_path):
    base = [
        "source.kind=imagefolder",
        f"source.path={tiny_folder}",
        "augment.copies_per_image=2",
        "output.shard_size=5",
    ]
    local, _, ran = _local_and_on_a_cluster(base, tmp_path)
    assert len(ran) >= len(load_manifest(local).shards) > 2  # the shard tasks ran on the cluster


def test_synthesis_samples_on_the_cluster_and_gives_the_same_version(prefect_harness, tiny_folder, tmp_path):
    base = ["source.kind=imagefolder", f"source.path={tiny_folder}", "output.shard_size=5", *TINY_GAN]
    base.append("synthesis.gate.enabled=false")  # every kept sample is published: their bytes compared
    local, result, ran = _local_and_on_a_cluster(base, tmp_path)
    assert any("chunk_task" in key for key in ran), ran  # the candidates were made there
    published = load_manifest(result["version_dir"]).synthesis.published
    assert published == load_manifest(local).synthesis.published > 0
    assert not list((tmp_path / "dask").rglob("candidates-*.npy"))  # the chunks' images are gone


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
