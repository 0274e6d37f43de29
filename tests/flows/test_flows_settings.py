"""flows/settings.py: the Prefect settings of a one-off run."""

import pytest


def test_a_one_off_run_sends_no_flow_heartbeats_unless_they_are_set():
    """``expand run`` (and ``train-gan``, ``evaluate``) turn Prefect's flow-run heartbeats
    off (their thread holds every run up to a second at exit); a frequency the user set is
    kept."""
    from prefect.settings import get_current_settings, temporary_settings

    from flows.settings import one_off_run_settings

    if getattr(get_current_settings().flows, "heartbeat_frequency", None) is None:
        pytest.skip("this Prefect sends no flow-run heartbeats by default")
    with one_off_run_settings():
        assert get_current_settings().flows.heartbeat_frequency is None
    with temporary_settings(updates={"flows.heartbeat_frequency": 60}), one_off_run_settings():
        assert get_current_settings().flows.heartbeat_frequency == 60
    assert get_current_settings().flows.heartbeat_frequency is not None  # restored on exit


def test_a_one_off_run_batches_task_run_records_on_a_server_it_starts():
    """A temporary server started by ``expand run`` gets the batched task-run recorder
    through its environment; values the user set are kept, and nothing else changes."""
    from prefect.settings import get_current_settings, temporary_settings

    from flows.settings import one_off_run_settings

    before = get_current_settings()
    if not hasattr(before.server.services, "task_run_recorder"):
        pytest.skip("this Prefect has no task-run recorder settings")
    with one_off_run_settings():
        inside = get_current_settings()
        env = inside.to_environment_variables(exclude_unset=True)
        assert env["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"] == "100"
        assert inside.server.services.task_run_recorder.flush_interval == 3600.0
        assert inside.api.url == before.api.url
        assert inside.server.services.event_persister == before.server.services.event_persister
    mine = {"server.services.task_run_recorder.batch_size": 7}
    with temporary_settings(updates=mine), one_off_run_settings():
        assert get_current_settings().server.services.task_run_recorder.batch_size == 7
        assert get_current_settings().server.services.task_run_recorder.flush_interval == 3600.0
    assert get_current_settings() is before
