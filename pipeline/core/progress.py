"""Progress of the long stages, for whoever shows it.

Stages call :func:`report` with how far they are (``done`` of ``total`` units, ``total``
None when unknown): ingest (images), augmentation tuning (candidates), the reference
classifier of the GAN metrics (epochs), GAN training (steps), sampling (images), the
utility gate (classifier trainings) and writing (rows). The sinks installed with
:func:`reporting` receive it, in the process and thread that reports; without a sink, a
report costs a function call. The command line draws progress bars from it and the flows
log it (:mod:`cli.progress`).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

Sink = Callable[[str, int, "int | None"], None]

INGEST, TUNING, GAN, SAMPLING = "ingest", "tuning", "GAN training", "sampling"
REFERENCE, GATE, WRITING = "reference classifier", "utility gate", "writing"
UNITS = {
    INGEST: "images",
    TUNING: "candidates",
    REFERENCE: "epochs",
    GAN: "steps",
    SAMPLING: "images",
    GATE: "trainings",
    WRITING: "rows",
}

_sinks: tuple[Sink, ...] = ()


def _rate(per_second: float, unit: str) -> str:
    """``12.3 rows/s``, ``1,234 rows/s``, or per minute when under 0.1 a second (slow units:
    a classifier training)."""
    if per_second < 0.1:
        return f"{60 * per_second:,.1f} {unit}/min"
    return f"{per_second:,.1f} {unit}/s" if per_second < 100 else f"{per_second:,.0f} {unit}/s"


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


_REDRAW_S = 0.1


_MIN_RATE_S = 0.5  # no rate or time left before a stage has run this long


class ProgressBars:
    """Draws the reported progress of one stage at a time on ``stream`` (a terminal)."""

    def __init__(self, stream: TextIO | None, *, width: int = 24, clock=time.monotonic):
        self._stream = stream
        self._width = width
        self._clock = clock
        self._every = _REDRAW_S
        self._lock = threading.Lock()  # stages report from task threads
        self._stage: str | None = None
        self._started = self._drawn = 0.0
        self._first = self._done = 0
        self._total: int | None = None

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        with self._lock:
            now = self._clock()
            if stage != self._stage:
                self._end_line(now)
                self._stage, self._started, self._first, self._drawn = stage, now, done, 0.0
            self._done, self._total = done, total
            if total is not None and done >= total:
                self._end_line(now)
            elif now - self._drawn >= self._every:
                self._draw(now)
                self._drawn = now

    def close(self) -> None:
        """End the current stage's line (a stage that stopped before its total)."""
        with self._lock:
            self._end_line(self._clock())

    def line(self, now: float) -> str:
        """The current stage's line, as drawn at time ``now``."""
        unit = UNITS.get(self._stage or "", "")
        elapsed = now - self._started
        rate = (self._done - self._first) / elapsed if elapsed >= _MIN_RATE_S else None
        finished = self._total is not None and self._done >= self._total
        parts = [f"{self._stage:<13}"]
        if self._total:
            if self._width:
                filled = int(self._width * min(self._done, self._total) / self._total)
                parts.append("[" + "#" * filled + "-" * (self._width - filled) + "]")
            parts.append(f"{self._done}/{self._total} {unit}")
        else:
            parts.append(f"{self._done} {unit}")
        if rate is not None:
            parts.append(_rate(rate, unit))
        if finished:
            parts.append(f"done in {_clock(elapsed)}")
        elif rate and self._total:
            parts.append(f"ETA {_clock((self._total - self._done) / rate)}")
        return "  ".join(parts)

    def _draw(self, now: float) -> None:
        self._stream.write("\r\x1b[2K" + self.line(now))
        self._stream.flush()

    def _end_line(self, now: float) -> None:
        if self._stage is None:
            return
        self._draw(now)
        self._stream.write("\n")
        self._stream.flush()
        self._stage = None


class ProgressLog(ProgressBars):
    """Logs a stage's line (without the bar) every ``every`` seconds and when it ends; a
    stage shorter than ``every`` logs nothing. Stages in ``skip`` log their own progress."""

    def __init__(self, logger, *, every: float = 30.0, skip=(), clock=time.monotonic):
        super().__init__(None, width=0, clock=clock)
        self._logger, self._every, self._skip = logger, every, set(skip)

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if stage not in self._skip:
            super().__call__(stage, done, total)

    def _draw(self, now: float) -> None:
        if now - self._started >= self._every:
            self._logger.info("%s", re.sub(" {2,}", ", ", self.line(now)))

    def _end_line(self, now: float) -> None:
        if self._stage is not None:
            self._draw(now)
            self._stage = None


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
