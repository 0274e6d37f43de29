import os
import subprocess
import sys
from pathlib import Path

import pytest


def test_run_all_makes_a_calls_arguments_only_when_it_is_sent():
    from pipeline.core.workers import _IN_FLIGHT, Calls, run_all, warm_up

    assert warm_up(2).wait(120)
    made, outstanding = [], []

    def make(k):
        made.append(k)
        return (k, 2)

    results = run_all(pow, Calls(40, make), 2, on_result=lambda k, _: outstanding.append(len(made)))
    assert results == [k**2 for k in range(40)] and sorted(made) == list(range(40))
    # when the n-th call finishes, at most n - 1 others have finished and the window is full
    assert all(m <= n + _IN_FLIGHT * 2 for n, m in enumerate(outstanding))
    with pytest.raises(IndexError):
        Calls(3, make)[3]


def test_stopped_workers_end_their_calls_at_once_and_a_fresh_pool_follows():
    """An interrupted run does not wait for the calls its workers hold (they ignore Ctrl-C)."""
    import signal
    import time
    from concurrent.futures import CancelledError
    from concurrent.futures.process import BrokenProcessPool

    from pipeline.core.workers import run_one, stop_workers, warm_up, worker_pool

    assert warm_up(2).wait(120)
    pool = worker_pool(2)
    assert run_one(signal.getsignal, (signal.SIGINT,), 2) == signal.SIG_IGN
    held = [pool.submit(time.sleep, 600) for _ in range(3)]  # two running, one queued
    workers = list(pool._processes.values())  # the pool's processes (private, as stop_workers reads them)
    started = time.monotonic()
    stop_workers()
    assert len(workers) == 2 and not any(w.is_alive() for w in workers)  # ended, not ending
    for future in held:
        with pytest.raises((BrokenProcessPool, CancelledError)):
            future.result(timeout=30)
    assert time.monotonic() - started < 30  # not the 600 s they hold
    assert worker_pool(2) is not pool and run_one(pow, (3, 2), 2) == 9


@pytest.mark.parametrize("delay", [0.0, 0.8, 1.6])
def test_workers_stopped_while_the_pool_starts_have_ended_when_the_stop_returns(delay):
    """A run stopped in its first seconds (SIGTERM while the pool starts): the pool is
    stopped once it is up, workers being started included, and nothing is left to race
    the interpreter's exit (a worker started after its parent left failed to find its
    semaphores: a traceback)."""
    script = (
        "import multiprocessing, time; from pipeline.core.workers import stop_workers, warm_up\n"
        f"warm_up(2); time.sleep({delay}); stop_workers()\n"
        "print(len(multiprocessing.active_children()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=120,  # a ceiling, not a budget
    )
    assert done.returncode == 0 and done.stdout == "0\n", done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_a_run_that_fails_while_the_pool_starts_exits_without_a_traceback():
    """The pool starts in the background; a process that ends before it is up (a bad source
    found in the first second) waits for it rather than leave the fork server starting a
    worker whose parent is gone (a FileNotFoundError traceback on stderr)."""
    script = "import time; from pipeline.core.workers import warm_up; warm_up(2); time.sleep(0.3); exit(3)"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stderr


def test_single_threaded_sets_one_thread_and_leaves_ctrl_c_to_the_caller(monkeypatch):
    import signal

    import cv2

    from pipeline.core.workers import single_threaded

    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    handler, threads = signal.getsignal(signal.SIGINT), cv2.getNumThreads()
    try:
        single_threaded()
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        assert cv2.getNumThreads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        signal.signal(signal.SIGINT, handler)
        cv2.setNumThreads(threads)
