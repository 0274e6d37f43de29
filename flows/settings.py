"""Prefect settings for a flow run that a command starts once in its own process
(``expand run``, ``expand train-gan``, ``expand evaluate``), as opposed to a deployment's
runs (``expand serve``), which keep Prefect's defaults."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect.context import SettingsContext, get_settings_context
from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

# Each applies where the user set no value (environment, profile or prefect.toml):
# - flow-run heartbeats off: their thread sleeps in 1-second steps and a run waits for it
#   at exit, up to a second per run (an empty flow took 1.06 s with them, 0.07 s without).
#   They serve zombie-run detection for deployments.
# - a temporary server that the run starts records task runs in batches of 100 instead of
#   one database transaction per task-run event: that halved the server's CPU per expand
#   run, which the shard workers share the cores with. It writes what is left when it
#   stops, and has no periodic flush (an hour): Prefect 3.9 cancels a periodic flush that
#   is under way when the server stops and logs that as an ERROR with a traceback, which
#   a flush every second did at the end of 3 runs in 17 (the final flush still wrote
#   everything). A server started elsewhere keeps its own settings.
ONE_OFF_RUN_DEFAULTS: dict[str, Any] = {
    "flows.heartbeat_frequency": None,
    "server.services.task_run_recorder.batch_size": 100,
    "server.services.task_run_recorder.flush_interval": 3600.0,
}


def one_off_run_settings() -> SettingsContext:
    """The current Prefect settings with :data:`ONE_OFF_RUN_DEFAULTS` where the user set
    no value (settings this Prefect lacks are skipped), as a context to run the flow in.

    A copy of the current settings with those values changed, where
    ``prefect.settings.temporary_settings`` would build and validate all of them again
    (20 ms).
    """
    current = get_settings_context()
    settings = current.settings
    for key, value in ONE_OFF_RUN_DEFAULTS.items():
        settings = _with_default(settings, key.split("."), value)
    return SettingsContext(profile=current.profile, settings=settings)


def _with_default(model, path: list[str], value: Any):
    """``model`` with the setting at ``path`` set to ``value`` unless it was set already."""
    name, *rest = path
    if name not in type(model).model_fields:
        return model
    if rest:
        return model.model_copy(update={name: _with_default(getattr(model, name), rest, value)})
    return model if name in model.model_fields_set else model.model_copy(update={name: value})


@contextmanager
def one_off_run() -> Iterator[None]:
    """Run a flow once in this process: under :func:`one_off_run_settings`, and with the
    temporary server (when no server is configured) started so that Ctrl-C leaves it up.

    Ctrl-C on a terminal interrupts the whole process group. The temporary server, a child
    process, stopped with it, and the interrupted run then spent minutes retrying to record
    its crash with the stopped server before it exited. Started with SIGINT blocked (a
    child keeps the signal mask of the thread that starts it), the server ignores Ctrl-C,
    records the crash, and stops when this process exits, as it always does.
    """
    with one_off_run_settings():
        _start_temporary_server()
        yield


def temporary_server_url() -> str | None:
    """The API URL of the temporary server this process started, if one is running: for
    worker processes it starts itself (a local Dask cluster), which would each start a
    temporary server of their own (3-4 s, and another process each) without it."""
    if PREFECT_API_URL.value():
        return None
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    return server.api_url if server.running else None


def _start_temporary_server() -> None:
    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    from prefect.server.api.server import SubprocessASGIServer

    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        SubprocessASGIServer().start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
