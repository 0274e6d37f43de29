"""Exit codes of ``expand`` and what turns expected errors into a message, not a traceback."""

from __future__ import annotations

import logging

from pipeline.core.errors import PipelineError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT or SIGTERM, as shells report them


class Terminated(BaseException):
    """SIGTERM (``kill``, a scheduler's stop): raised in the main thread, as Ctrl-C raises
    ``KeyboardInterrupt``, so that the run removes its staging and its temporary server
    and worker processes exit with it instead of outliving it."""


class _DropExpectedTraceback(logging.Filter):
    """Prefect logs failed runs with a traceback; for bad input or a full disk the message
    is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], PipelineError | OSError):
            record.exc_info = None
            record.exc_text = None
        return True


def hide_tracebacks_of_expected_errors() -> None:
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        logging.getLogger(name).addFilter(_DropExpectedTraceback())
