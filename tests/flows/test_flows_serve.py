"""Scheduled runs for real: a Prefect server on 127.0.0.1, ``expand serve`` with a cron
schedule, deployment runs triggered through the API."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.version.catalog import list_versions
from pipeline.version.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[2]


PREFECT = Path(sys.executable).parent / "prefect"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(env: dict[str, str], path: str, body: dict | None = None):
    request = urllib.request.Request(
        env["PREFECT_API_URL"] + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-server-home")
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(lambda: _api(env, "/health"), 120, "the Prefect server")
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_served_deployment_publishes_then_reports_the_existing_version(prefect_server, tiny_folder, tmp_path):
    env = prefect_server
    out = tmp_path / "out"
    config = tmp_path / "nightly.yaml"
    config.write_text(
        f"source:\n  kind: imagefolder\n  path: {tiny_folder}\naugment:\n  copies_per_image: 1\n"
        f"output:\n  root: {out}\nrunner:\n  workers: 1\n"
    )
    serve = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", str(config), "--cron", "0 3 * * *", "--name", "nightly"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deployment = _wait_for(
            lambda: _api(env, "/deployments/name/expand/nightly"), 120, "the served deployment"
        )
        assert [s["schedule"]["cron"] for s in deployment["schedules"]] == ["0 3 * * *"]
        assert {"dataset-expand", "dataset:src"} <= set(deployment["tags"])

        def trigger() -> dict:
            done = subprocess.run(
                [str(PREFECT), "deployment", "run", "expand/nightly", "--watch", "--watch-timeout", "240"],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            run_id = re.search(r"UUID: ([0-9a-f-]{36})", done.stdout).group(1)
            run = _api(env, f"/flow_runs/{run_id}")
            assert run["state"]["type"] == "COMPLETED"
            return run

        first = trigger()
        [version] = list_versions(out / "src")
        manifest = load_manifest(version.path)
        assert first["name"] == f"src-{manifest.version_id}"
        assert {"dataset-expand", "dataset:src"} <= set(first["tags"])
        assert manifest.run.deployment_id == deployment["id"]

        second = trigger()  # unchanged source: nothing new, the same version reported
        assert [v.version_id for v in list_versions(out / "src")] == [manifest.version_id]
        assert second["name"] == first["name"] and second["id"] != first["id"]
        artifacts = _api(env, "/artifacts/filter", {"artifacts": {"key": {"any_": ["src-summary"]}}})
        assert any("Already published" in a["data"] for a in artifacts)
        assert any(manifest.version_id in a["data"] for a in artifacts)
        [counts, *_] = _api(env, "/artifacts/filter", {"artifacts": {"key": {"any_": ["src-counts"]}}})
        table = json.loads(counts["data"]) if isinstance(counts["data"], str) else counts["data"]
        assert {"split", "class", "source images", "real", "augmented", "synthetic", "rows"} <= set(table[0])

        # Any API client may start a run with parameters: this deployment allows none.
        evil = tmp_path / "evil"
        done = subprocess.run(
            [str(PREFECT), "deployment", "run", "expand/nightly", "--watch", "--watch-timeout", "240"]
            + ["--param", f"overrides={json.dumps([f'output.root={evil}'])}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        run_id = re.search(r"UUID: ([0-9a-f-]{36})", done.stdout).group(1)
        assert _api(env, f"/flow_runs/{run_id}")["state"]["type"] == "FAILED" and not evil.exists()
    finally:
        serve.terminate()
        serve.wait(timeout=30)


def test_prefect_yaml_deployment_runs_on_a_work_pool_worker(prefect_server, tmp_path):
    env = prefect_server
    out = tmp_path / "out"

    def prefect(*args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [str(PREFECT), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    prefect("work-pool", "create", "local", "--type", "process")
    prefect("--no-prompt", "deploy", "--all")  # prefect.yaml: expand/digits-nightly on pool 'local'
    deployment = _api(env, "/deployments/name/expand/digits-nightly")
    assert [s["schedule"]["cron"] for s in deployment["schedules"]] == ["0 3 * * *"]
    overrides = ["synthesis.enabled=false", "augment.tune.enabled=false", "augment.copies_per_image=1"]
    overrides.append(f"output.root={out}")
    created = prefect(
        "deployment", "run", "expand/digits-nightly", "--param", f"overrides={json.dumps(overrides)}"
    )
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", created).group(1)
    prefect("worker", "start", "--pool", "local", "--run-once", timeout=300)  # picks up the run, exits
    run = _api(env, f"/flow_runs/{run_id}")
    assert run["state"]["type"] == "COMPLETED", run["state"]
    [version] = list_versions(out / "digits")
    manifest = load_manifest(version.path)
    assert run["name"] == f"digits-{manifest.version_id}"
    assert manifest.run.deployment_id == deployment["id"]
    assert manifest.splits["train"].by_origin == {"real": 1438, "augmented": 1438}
