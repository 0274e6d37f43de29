"""Progress reports from the long stages (pipeline/core/progress.py): the sinks, the
progress bars' lines and the log lines that show them."""

import io
from itertools import groupby

from conftest import TINY_GAN, LogLines, screen
from pipeline.build import build
from pipeline.core.progress import (
    GAN,
    GATE,
    INGEST,
    REFERENCE,
    SAMPLING,
    WRITING,
    ProgressBars,
    ProgressLog,
    report,
    reporting,
)


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_bars_show_counts_rate_eta_and_time_taken():
    stream, clock = io.StringIO(), FakeClock()
    bars = ProgressBars(stream, width=10, clock=clock)
    bars(GAN, 0, 200)
    clock.now += 2.0
    bars(GAN, 50, 200)
    assert bars.line(clock.now) == "GAN training   [##--------]  50/200 steps  25.0 steps/s  ETA 0:06"
    clock.now += 6.0
    bars(GAN, 200, 200)  # the total ends the line
    bars(INGEST, 3000, None)  # an unknown total: no bar, no ETA
    clock.now += 1.0
    bars(INGEST, 5000, None)
    bars.close()
    lines = screen(stream.getvalue())
    assert lines[0] == "GAN training   [##########]  200/200 steps  25.0 steps/s  done in 0:08"
    assert lines[1] == "ingest         5000 images  2,000 images/s"
    assert len(lines) == 2


def test_redraws_are_throttled():
    stream, clock = io.StringIO(), FakeClock()
    bars = ProgressBars(stream, clock=clock)
    for done in range(1000):
        bars(WRITING, done, 1000)
    assert stream.getvalue().count("\r") == 1  # the first report; the rest came within 0.1 s
    bars(WRITING, 1000, 1000)
    assert stream.getvalue().count("\r") == 2  # the last one is always drawn, and ends the line


def test_reports_reach_the_sinks_only_inside_their_blocks():
    outer, inner = [], []
    report(INGEST, 1, 2)
    with reporting(lambda *event: outer.append(event)):
        with reporting(lambda *event: inner.append(event)):
            report(INGEST, 2, 2)
        report(GAN, 1, 2)
    report(INGEST, 3, 3)
    assert outer == [(INGEST, 2, 2), (GAN, 1, 2)] and inner == [(INGEST, 2, 2)]


def test_log_lines_come_every_interval_of_a_long_stage_and_at_its_end():
    logger, clock = LogLines(), FakeClock()
    log = ProgressLog(logger, every=30.0, skip=[WRITING], clock=clock)
    log(INGEST, 0, 100)
    clock.now += 10.0
    log(INGEST, 50, 100)
    assert logger.lines == []  # a stage shorter than the interval logs nothing
    log(INGEST, 100, 100)
    log(GATE, 0, 60)
    for _ in range(60):
        clock.now += 1.0
        log(GATE, 1 + log._done, 60)
        log(WRITING, 1, 2)  # skipped: the flow logs each shard itself
    assert logger.lines == [
        "utility gate, 30/60 trainings, 1.0 trainings/s, ETA 0:30",
        "utility gate, 60/60 trainings, 1.0 trainings/s, done in 1:00",
    ]


def test_slow_units_get_a_rate_per_minute():
    logger, clock = LogLines(), FakeClock()
    log = ProgressLog(logger, every=30.0, clock=clock)
    log(GATE, 0, 6)
    for done in range(1, 7):  # a classifier training every 20 s
        clock.now += 20.0
        log(GATE, done, 6)
    assert logger.lines[-1] == "utility gate, 6/6 trainings, 3.0 trainings/min, done in 2:00"


def test_a_build_reports_every_long_stage(tiny_config):
    events = []
    with reporting(lambda *event: events.append(event)):
        build(tiny_config(*TINY_GAN, "runner.workers=2"))
    runs = [list(run) for _, run in groupby(events, key=lambda event: event[0])]  # one stage's reports
    # the reference classifier is trained for the GAN's metrics; sampling loads it
    assert [run[0][0] for run in runs] == [INGEST, REFERENCE, GAN, SAMPLING, GATE, WRITING]
    for run in runs:
        done = [d for _, d, _ in run]
        (total,) = {t for _, _, t in run}
        assert done == sorted(done) and done[-1] == total, run[0][0]
    assert [t for s, _, t in events if s == INGEST][0] == 15  # the tiny folder's images
