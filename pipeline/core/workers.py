"""Worker processes for shard writing and decoding: one persistent pool per process.

Workers fork from a ``forkserver`` that imports the pipeline once (:mod:`pipeline.build.preload`,
about 2 s on a small machine, without torch), never from the caller: a process that has run
OpenCV or OpenMP thread pools (or, under Prefect, has other threads) cannot be forked
safely (forked workers hung in the test suite). Each worker runs with one OpenCV, torch
and OpenMP thread, so ``workers`` processes do not oversubscribe the cores.
:func:`warm_up` starts the pool in a background thread while the caller ingests and
plans, and :func:`run_all` works in the caller's process until the pool is ready.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from typing import Any

import cv2

# Imported by the fork server once, so that workers start with them loaded (about 1.4 s
# each for albumentations, without torch, and for pandas, which pyarrow imports at a
# worker's first table when it is installed; absent ones are skipped).
PRELOAD = ["pipeline.build.preload", "pandas"]

_IN_FLIGHT = 2  # calls submitted per worker at a time by run_all
_STOP_SECONDS = 30  # a ceiling for stopped workers to end (terminated, they end at once)
_POOLS: dict[int, ProcessPoolExecutor] = {}
_READY: dict[int, threading.Event] = {}
_LOCK = threading.Lock()


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """This process's pool of ``workers`` processes, created once."""
    with _LOCK:
        if workers not in _POOLS:
            mp = multiprocessing.get_context("forkserver")
            mp.set_forkserver_preload(PRELOAD)
            _start_fork_server()
            _POOLS[workers] = ProcessPoolExecutor(
                max_workers=workers, mp_context=mp, initializer=single_threaded
            )
        return _POOLS[workers]


def _start_fork_server() -> None:
    """Start the fork server with Ctrl-C blocked (a child keeps the signal mask of the
    thread that starts it): it ignores SIGINT only once its imports are done, and a Ctrl-C
    during them (a small run interrupted early) printed a ``KeyboardInterrupt`` traceback.
    Its workers inherit the mask; they ignore Ctrl-C anyway (:func:`single_threaded`)."""
    from multiprocessing import forkserver, resource_tracker

    # The fork server starts the resource tracker first, which unblocks SIGINT after its
    # own start: started here beforehand, it leaves the mask alone.
    resource_tracker.ensure_running()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def warm_up(workers: int) -> threading.Event:
    """Start the pool's processes in a background thread; the event is set once they run.

    Starting a process from the fork server waits for the server's imports, so it is not
    done in the caller's thread.
    """
    with _LOCK:
        ready = _READY.get(workers)
        if ready is None:
            ready = _READY[workers] = threading.Event()
            threading.Thread(target=_start, args=(workers, ready), daemon=True, name="pool-warm-up").start()
    return ready


def run_all(
    fn: Callable[..., Any],
    calls: Sequence[tuple],
    workers: int,
    on_result: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """``[fn(*args) for args in calls]`` on ``workers`` processes, results in call order.

    While the pool is still starting, calls run here, last first; the rest go to the pool
    once it is ready. With one worker (or one call) everything runs here. ``on_result``
    gets (call index, result) as each call finishes.
    """
    results: dict[int, Any] = {}

    def finished(k: int, value: Any) -> None:
        results[k] = value
        if on_result:
            on_result(k, value)

    if workers <= 1 or len(calls) <= 1:
        for k, args in enumerate(calls):
            finished(k, fn(*args))
        return [results[k] for k in range(len(calls))]
    ready = warm_up(workers)
    pending = list(range(len(calls)))
    while pending and not ready.is_set():
        k = pending.pop()
        finished(k, fn(*calls[k]))
    # A few calls in flight per worker: the arguments of the others are not made yet (see
    # :class:`Calls`), and a long list of calls is not all queued in the pool at once.
    pool, queue, running = worker_pool(workers), iter(pending), {}
    for k in islice(queue, _IN_FLIGHT * workers):
        running[pool.submit(fn, *calls[k])] = k
    while running:
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            finished(running.pop(future), result(future, workers))
            for k in islice(queue, 1):
                running[pool.submit(fn, *calls[k])] = k
    return [results[k] for k in range(len(calls))]


class Calls(Sequence):
    """``count`` calls whose arguments ``make(k)`` builds when call ``k`` is sent, for
    :func:`run_all`: the arguments of a long list of calls are not all held at once."""

    def __init__(self, count: int, make: Callable[[int], tuple]):
        self._count, self._make = count, make

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, k: int) -> tuple:
        if not 0 <= k < self._count:
            raise IndexError(k)
        return self._make(k)


def run_one(fn: Callable[..., Any], args: tuple, workers: int) -> Any:
    """``fn(*args)`` in a process of the ``workers`` pool (here when ``workers`` is 1), for
    callers that schedule calls themselves, such as one Prefect task per shard on threads."""
    if workers <= 1:
        return fn(*args)
    warm_up(workers)
    return result(worker_pool(workers).submit(fn, *args), workers)


def result(future: Future, workers: int) -> Any:
    """The future's result; a broken pool (a worker was killed) is dropped, so the next
    call starts a fresh one."""
    try:
        return future.result()
    except BrokenProcessPool:
        with _LOCK:
            _POOLS.pop(workers, None)
            _READY.pop(workers, None)
        raise


def stop_workers() -> None:
    """Stop every pool of this process now, for an interrupted run: calls not started are
    dropped and the worker processes are terminated, rather than left to finish the calls
    they hold (a tuning candidate's training can take minutes). The next call starts a
    fresh pool.

    A pool still starting is stopped once it is up (the process would wait for it at exit
    anyway, see :func:`_finish_warm_ups`). It returns once the workers and each pool's
    manager thread have ended: left running, a manager thread still shutting down when the
    interpreter exits races the exit hook of ``concurrent.futures`` (an ``OSError``
    traceback), and a worker started as the command left fails to find its semaphores.
    """
    for ready in list(_READY.values()):
        ready.wait(timeout=_STOP_SECONDS)
    with _LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        processes, manager = _closed_to_new_calls(pool)
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=_STOP_SECONDS)
        if manager is not None:
            manager.join(timeout=_STOP_SECONDS)


def _closed_to_new_calls(pool: ProcessPoolExecutor) -> tuple[list, threading.Thread | None]:
    """Refuse ``pool`` new calls and return its worker processes and manager thread.

    Private parts of ``ProcessPoolExecutor`` (``terminate_workers()`` comes with Python
    3.14), taken under its lock: a submit holds it while it starts a worker, so a worker
    being started is listed too, and none starts after (``shutdown`` drops these references).
    """
    with pool._shutdown_lock:
        pool._shutdown_thread = True  # what shutdown() sets first: a later submit raises
        processes = list((pool._processes or {}).values())
        return processes, pool._executor_manager_thread


def single_threaded() -> None:
    """Worker-process set-up: one thread each for OpenCV, torch and OpenMP, and Ctrl-C left
    to the caller.

    Workers import torch only when a job needs it (torchvision policies, the reference
    classifier); it then starts with the OpenMP setting. Ctrl-C on a terminal reaches the
    workers too: an idle one printed a ``KeyboardInterrupt`` traceback and died. They
    ignore it; the interrupted caller stops them (:func:`stop_workers`).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["OMP_NUM_THREADS"] = "1"
    cv2.setNumThreads(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _finish_warm_ups() -> None:
    """At exit, wait for pools still starting. A process the fork server starts after its
    parent has gone finds the pool's semaphores removed and prints a traceback: a run that
    fails in its first second would end with one."""
    for ready in list(_READY.values()):
        ready.wait(timeout=60)


# Before concurrent.futures' own exit hook, which stops its pools (hooks run last first).
threading._register_atexit(_finish_warm_ups)


def _start(workers: int, ready: threading.Event) -> None:
    pool = None
    try:
        pool = worker_pool(workers)
        for future in [pool.submit(os.getpid) for _ in range(workers)]:
            future.result()
    except (BrokenProcessPool, CancelledError, RuntimeError):  # broken, or stopped (stop_workers)
        with _LOCK:  # dropped: the callers' own submissions start a fresh pool
            if pool is not None and _POOLS.get(workers) is pool:
                del _POOLS[workers]
    finally:
        ready.set()
