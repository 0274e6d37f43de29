"""Children die with the command, however it ends, ``kill -9`` included (Linux: reads /proc).

A command that ends normally, or by Ctrl-C or SIGTERM, stops what it started itself. SIGKILL
(or the out-of-memory killer) gives it no chance: its fork server and workers, the resource
tracker, a temporary Prefect server and Dask workers would go on running, adopted by init.
So :func:`start_reaper` marks the command's environment with a random token before anything
is started: every process started afterwards inherits it, and ``/proc/<pid>/environ`` shows
the environment a process was started with (forks carry their parent's). A small watchdog
process then polls the command; once the command is gone, whatever the reason, it sends
SIGKILL to every process that carries the token and exits.

The watchdog runs this file as a script, with the standard library only, and ignores
Ctrl-C, SIGTERM and SIGHUP, which reach the whole process group: it must outlive the command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

TOKEN_ENV = "EXPAND_RUN_TOKEN"
_POLL_SECONDS = 0.2


def start_reaper() -> bool:
    """Mark this process's environment and start its watchdog (once per process).

    Returns:
        Whether a watchdog runs (not where /proc is missing: macOS, Windows).
    """
    started = os.environ.get(TOKEN_ENV, "").startswith(f"{os.getpid()}-")
    if started or not Path("/proc/self/environ").is_file():
        return False
    token = f"{os.getpid()}-{uuid.uuid4().hex}"
    try:
        subprocess.Popen(
            [sys.executable, "-I", "-S", __file__, str(os.getpid()), token],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, TOKEN_ENV: token},
        )
    except OSError:  # no watchdog (no processes left, say): the command still runs
        return False
    os.environ[TOKEN_ENV] = token
    return True


def carriers(token: str, *, exclude: int, among: list[int] | None = None) -> list[int]:
    """The live processes whose environment carries ``token``, other than ``exclude``
    (``among``: only these pids; default: all)."""
    mark = f"{TOKEN_ENV}={token}".encode()
    found = []
    entries = Path("/proc").glob("[0-9]*") if among is None else (Path(f"/proc/{p}") for p in among)
    for entry in entries:
        pid = int(entry.name)
        try:
            if pid != exclude and mark in (entry / "environ").read_bytes().split(b"\0"):
                found.append(pid)
        except OSError:  # ended while listed, or another user's
            continue
    return found


def reap(token: str) -> int:
    """SIGKILL every process carrying ``token`` (but this one), until none is left; return how many."""
    killed: set[int] = set()
    for _ in range(10):  # a process started while the others die is found on the next pass
        found = [pid for pid in carriers(token, exclude=os.getpid()) if pid not in killed]
        if not found:
            break
        for pid in found:
            if _kill_if_carrier(pid, token):
                killed.add(pid)
        time.sleep(0.05)
    return len(killed)


def _kill_if_carrier(pid: int, token: str) -> bool:
    """SIGKILL ``pid`` if it still carries ``token``: through a pidfd where there is one, so
    that a process that ended and whose pid was reused in between is never hit."""
    try:
        handle = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfd (older kernels): the plain, racy kill
        try:
            os.kill(pid, signal.SIGKILL)
            return True
        except OSError:
            return False
    try:
        if pid not in carriers(token, exclude=os.getpid(), among=[pid]):
            return False  # the pid now names another process
        signal.pidfd_send_signal(handle, signal.SIGKILL)
        return True
    except OSError:
        return False
    finally:
        os.close(handle)


def _watch(parent: int, token: str) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    while os.getppid() == parent:
        time.sleep(_POLL_SECONDS)
    reap(token)


if __name__ == "__main__":
    _watch(int(sys.argv[1]), sys.argv[2])
