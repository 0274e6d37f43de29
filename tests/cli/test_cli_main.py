"""cli/main.py: exit codes and messages without tracebacks, for usage errors, bad data and
a stopped run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.main import main
from conftest import group_members


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "{cfg}", "--set", "augment.bogus=1"], "augment.bogus: unknown key"),
        (
            ["run", "{cfg}", "--set", "source.kind=imagefolder", "--set", "source.path=/no/such/dir"],
            "source.path does not exist: /no/such/dir",
        ),
        (["run", "{missing}"], "cannot read config file"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_cli_usage_errors_exit_2_without_traceback(tmp_path, args, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("seed: 1\n")
    args = [a.format(cfg=cfg, missing=tmp_path / "missing.yaml") for a in args]
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_cli_bad_source_data_exits_1_without_traceback(prefect_harness, tmp_path, capsys):
    folder = tmp_path / "src" / "cls"
    folder.mkdir(parents=True)
    (folder / "bad.png").write_bytes(b"definitely not a png")
    code = main(
        [
            "run",
            "/dev/null",
            "--set",
            "source.kind=imagefolder",
            "--set",
            f"source.path={tmp_path / 'src'}",
            "--set",
            f"output.root={tmp_path / 'o'}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "bad.png" in err


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process groups from /proc")
@pytest.mark.parametrize(
    ("signum", "whole_group", "code", "said"),
    [
        (signal.SIGINT, True, 130, "expand: run interrupted"),  # Ctrl-C reaches every process of the group
        (signal.SIGTERM, False, 143, "expand: run terminated"),  # `kill PID`: the command's process only
    ],
)
def test_a_stopped_run_cleans_up_and_leaves_no_process(
    tmp_path, tiny_folder, signum, whole_group, code, said
):
    import json

    tests = Path(__file__).resolve().parents[1]
    recipe = [{"custom_transforms:Slow": {"seconds": 0.4}}]  # a shard of 300 rows: 2 minutes
    args = [
        "run",
        "/dev/null",
        *("--set", "source.kind=imagefolder", "--set", f"source.path={tiny_folder}"),
        *("--set", f"output.root={tmp_path / 'o'}", "--set", "runner.workers=2"),
        *("--set", "augment.copies_per_image=400", "--set", "output.shard_size=300"),
        *("--set", 'augment.custom_transforms=["custom_transforms:Slow"]'),
        *("--set", f"augment.transforms={json.dumps(recipe)}"),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group, as a terminal gives a command
        # Ctrl-C as a terminal delivers it, even when the tests run as a background job,
        # whose children a shell starts with SIGINT ignored (Python keeps an ignored SIGINT)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    dataset = tmp_path / "o" / "src"
    deadline = time.monotonic() + 120
    try:
        while not list(dataset.glob(".incomplete-*/version/data/*.parquet")):  # shards being written
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.05)
        (os.killpg if whole_group else os.kill)(process.pid, signum)
        # the shards running are stopped, not waited for (the workers ignore Ctrl-C themselves)
        out, err = process.communicate(timeout=180)  # a ceiling, not a budget: it exits on the signal
        assert process.returncode == code, err
        assert said in err and "Traceback" not in err
        assert not list(dataset.glob(".incomplete-*")) and not list(dataset.glob("v-*"))
        deadline = time.monotonic() + 120  # a ceiling for the group to empty, not a budget
        while group_members(process.pid) and time.monotonic() < deadline:  # the server stops in 5 s
            time.sleep(0.1)
        assert group_members(process.pid) == []  # no temporary server or worker outlives the run
    finally:
        if group_members(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
