"""Progress of the long stages, for whoever shows it.

Stages call :func:`report` with how far they are (``done`` of ``total`` units, ``total``
None when unknown): ingest (images), augmentation tuning (candidates), the reference
classifier of the GAN metrics (epochs), GAN training (steps), sampling (images), the
utility gate (classifier epochs) and writing (rows). The sinks installed with
:func:`reporting` receive it, in the process and thread that reports; without a sink, a
report costs a function call. The command line draws progress bars from it and the flows
log it (:mod:`flows.progress_bar`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

Sink = Callable[[str, int, "int | None"], None]

INGEST, TUNING, GAN, SAMPLING = "ingest", "tuning", "GAN training", "sampling"
REFERENCE, GATE, WRITING = "reference classifier", "utility gate", "writing"
UNITS = {
    INGEST: "images",
    TUNING: "candidates",
    REFERENCE: "epochs",
    GAN: "steps",
    SAMPLING: "images",
    GATE: "epochs",
    WRITING: "rows",
}

_sinks: tuple[Sink, ...] = ()


def report(stage: str, done: int, total: int | None = None) -> None:
    """Tell the installed sinks that ``stage`` has done ``done`` of ``total`` units."""
    for sink in _sinks:
        sink(stage, done, total)


@contextmanager
def reporting(sink: Sink) -> Iterator[None]:
    """Send this process's progress reports to ``sink`` too inside the block (blocks nest:
    every sink installed gets every report)."""
    global _sinks
    previous, _sinks = _sinks, (*_sinks, sink)
    try:
        yield
    finally:
        _sinks = previous
