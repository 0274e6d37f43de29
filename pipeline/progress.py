"""Progress of the long stages, for whoever shows it.

Stages call :func:`report` with how far they are (``done`` of ``total`` units, ``total``
None when unknown): ingest (images), augmentation tuning (candidates), GAN training
(steps), sampling (images), the utility gate (classifier trainings) and writing (rows).
The sink installed with :func:`reporting` receives it, in the process and thread that
reports; without a sink, a report costs a function call. The command line draws progress
bars from it (:mod:`flows.progress_bar`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

Sink = Callable[[str, int, "int | None"], None]

INGEST, TUNING, GAN, SAMPLING = "ingest", "tuning", "GAN training", "sampling"
GATE, WRITING = "utility gate", "writing"
UNITS = {
    INGEST: "images",
    TUNING: "candidates",
    GAN: "steps",
    SAMPLING: "images",
    GATE: "trainings",
    WRITING: "rows",
}

_sink: Sink | None = None


def report(stage: str, done: int, total: int | None = None) -> None:
    """Tell the installed sink that ``stage`` has done ``done`` of ``total`` units."""
    if _sink is not None:
        _sink(stage, done, total)


@contextmanager
def reporting(sink: Sink) -> Iterator[None]:
    """Send this process's progress reports to ``sink`` inside the block."""
    global _sink
    previous, _sink = _sink, sink
    try:
        yield
    finally:
        _sink = previous
