"""Crash points: places where the crash-recovery tests kill the process, as a power loss or
``kill -9`` would, to show that the next run recovers from exactly that moment.

``EXPAND_CRASH_AT=<point>`` in the environment makes the process send itself SIGKILL when it
reaches :func:`crash_point` with that name; unset (always, outside those tests), a crash
point costs one dictionary lookup. The points: ``publish.renamed`` (a version renamed into
place, ``latest`` not yet moved) and ``upload.file`` (one file of a version uploaded to
``output.remote``, the rest not).
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "EXPAND_CRASH_AT"


def crash_point(name: str) -> None:
    """Die here, at once and without cleanup, if ``EXPAND_CRASH_AT`` names this point."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
