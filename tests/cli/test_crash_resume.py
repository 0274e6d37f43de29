"""Crash and resume: ``expand run`` killed with SIGKILL (which no handler sees) at several
points leaves no process behind, and the next run ends with a valid version.

The points: while shards are written (in-process, and as a flow run with its temporary
Prefect server), between the rename that publishes a version and the move of ``latest``,
and in the middle of the upload to ``output.remote``. The last two are reached through the
crash points of :mod:`pipeline.core.failpoints`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import group_members
from pipeline.version.manifest import load_manifest, verify

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads processes from /proc")

TESTS = Path(__file__).resolve().parents[1]
CEILING = 180  # seconds: a ceiling for events, never a budget (the suite may share the cores)


def _args(tmp_path: Path, folder: Path, *extra: str) -> list[str]:
    return [
        "run",
        "/dev/null",
        *("--set", "source.kind=imagefolder", "--set", f"source.path={folder}"),
        *("--set", f"output.root={tmp_path / 'o'}", "--set", "runner.workers=2"),
        *("--set", "augment.copies_per_image=3", "--set", "output.shard_size=8"),
        *extra,
    ]


def _start(args: list[str], **env: str) -> subprocess.Popen:
    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": path, **env},
        start_new_session=True,  # its own process group, as a terminal gives a command
    )


def _wait_for(condition, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + CEILING
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the event never came"
        time.sleep(0.05)


def _assert_nothing_left(process: subprocess.Popen) -> None:
    """The process ended and every process it started ended with it."""
    try:
        process.wait(timeout=CEILING)
        deadline = time.monotonic() + CEILING
        while group_members(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert group_members(process.pid) == []  # no server, tracker, fork server or worker
    finally:
        if group_members(process.pid):
            os.killpg(process.pid, signal.SIGKILL)


def _run_again(args: list[str]) -> str:
    """The next run, to its end: it succeeds and leaves no process either."""
    process = _start(args)
    out, err = process.communicate(timeout=CEILING)
    _assert_nothing_left(process)
    assert process.returncode == 0 and "Traceback" not in err, err
    return out


def _valid_latest(dataset: Path) -> Path:
    version = (dataset / "latest").resolve()
    assert version.name.startswith("v-") and verify(version) == []
    assert not list(dataset.glob(".incomplete-*"))
    return version


@pytest.mark.parametrize("flow", [False, True], ids=["in-process", "flow-run"])
def test_killed_while_writing_shards(tmp_path, tiny_folder, flow):
    recipe = [{"custom_transforms:Slow": {"seconds": 0.05}}]  # 8-row shards of 0.4 s each
    slow = [
        *("--set", 'augment.custom_transforms=["custom_transforms:Slow"]'),
        *("--set", f"augment.transforms={json.dumps(recipe)}"),
    ]
    args = _args(tmp_path, tiny_folder, *slow)
    process = _start([*args, "--flow"] if flow else args)
    dataset = tmp_path / "o" / "src"
    _wait_for(lambda: list(dataset.glob(".incomplete-*/version/data/*.parquet")), process)
    os.kill(process.pid, signal.SIGKILL)
    _assert_nothing_left(process)
    assert not list(dataset.glob("v-*"))  # nothing half-written is published
    out = _run_again(args)
    assert _valid_latest(dataset).name in out


def test_killed_between_the_rename_and_latest(tmp_path, tiny_folder):
    args = _args(tmp_path, tiny_folder)
    process = _start(args, EXPAND_CRASH_AT="publish.renamed")
    _assert_nothing_left(process)
    assert process.returncode == -signal.SIGKILL
    dataset = tmp_path / "o" / "src"
    (published,) = dataset.glob("v-*")
    assert verify(published) == [] and not (dataset / "latest").exists()
    out = _run_again(args)
    assert "already published" in out and _valid_latest(dataset) == published


def test_killed_during_the_upload(tmp_path, tiny_folder):
    remote = tmp_path / "remote"
    args = _args(tmp_path, tiny_folder, "--set", f"output.remote=file://{remote}")
    process = _start(args, EXPAND_CRASH_AT="upload.file")
    _assert_nothing_left(process)
    assert process.returncode == -signal.SIGKILL
    dataset = tmp_path / "o" / "src"
    version = _valid_latest(dataset)  # published locally before the upload began
    uploaded = remote / "src" / version.name
    assert len([p for p in uploaded.rglob("*") if p.is_file()]) == 1  # one file, no manifest
    assert verify(uploaded) != []
    _run_again(args)
    assert verify(uploaded) == [] and load_manifest(uploaded) == load_manifest(version)
    assert (remote / "src" / "latest").read_text().strip() == version.name
