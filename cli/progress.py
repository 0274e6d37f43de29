"""Progress of ``expand run`` and ``expand train-gan``: bars on a terminal, log lines in
the flows.

:class:`ProgressBars` is a :mod:`pipeline.core.progress` sink: one line per stage, redrawn in
place, with a bar, units done of the total, the rate and the time left; a finished stage
keeps its line with the time it took. :func:`terminal_progress` installs it while a
command runs on a terminal and keeps Prefect's console log to warnings meanwhile, so log
lines do not break the bars (every log line still reaches the Prefect server's UI).
:class:`ProgressLog` is the flows' sink: the same line as a log line, every 30 s of a long
stage, so a run without a terminal (a deployment on a worker, a log file) shows it too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from pipeline.core.progress import ProgressBars, reporting


@contextmanager
def terminal_progress(stream: TextIO) -> Iterator[ProgressBars]:
    """Draw progress bars on ``stream`` inside the block, Prefect's console log quiet
    but for warnings and errors."""
    bars = ProgressBars(stream)
    consoles = [h for h in logging.getLogger().handlers if type(h).__name__ == "PrefectConsoleHandler"]
    levels = [h.level for h in consoles]
    for handler in consoles:
        handler.setLevel(max(handler.level, logging.WARNING))
    try:
        with reporting(bars):
            yield bars
    finally:
        bars.close()
        for handler, level in zip(consoles, levels, strict=True):
            handler.setLevel(level)
