"""cli/reaper.py: what a killed command started dies with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cli.reaper import TOKEN_ENV, carriers, reap, start_reaper

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads processes from /proc")
ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def test_carriers_are_found_by_their_token_and_reaped():
    token = "test-" + os.urandom(8).hex()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env={TOKEN_ENV: token})
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], env={TOKEN_ENV: token + "x"}
    )
    try:
        deadline = time.monotonic() + 60
        while sleeper.pid not in carriers(token, exclude=os.getpid()):  # its environ is readable once exec'd
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert carriers(token, exclude=sleeper.pid) == []
        assert reap(token) == 1
        assert sleeper.wait(timeout=60) == -signal.SIGKILL and other.poll() is None
    finally:
        for process in (sleeper, other):
            process.kill()
            process.wait()


def test_a_process_killed_with_sigkill_takes_what_it_started_along(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, signal, subprocess, sys
        sys.path.insert(0, {str(ROOT)!r})
        from cli.reaper import start_reaper
        assert start_reaper() and not start_reaper()  # once per process
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(tmp_path / "child")!r}, "w").write(str(child.pid))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    parent = subprocess.run([sys.executable, "-c", script], timeout=120)
    assert parent.returncode == -signal.SIGKILL
    child = int((tmp_path / "child").read_text())
    deadline = time.monotonic() + 120  # a ceiling: the watchdog polls every 0.2 s
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = _alive(child)
    if alive:
        os.kill(child, signal.SIGKILL)
    assert not alive


def test_start_reaper_marks_the_environment_once(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, f"{os.getpid()}-already")
    assert start_reaper() is False and os.environ[TOKEN_ENV] == f"{os.getpid()}-already"


def test_a_pid_that_no_longer_carries_the_token_is_spared():
    from cli.reaper import _kill_if_carrier

    sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
    other = subprocess.Popen(sleep, env={TOKEN_ENV: "someone-else"})
    try:
        time.sleep(0.5)
        assert _kill_if_carrier(other.pid, "mine") is False and other.poll() is None
    finally:
        other.kill()
        other.wait()
