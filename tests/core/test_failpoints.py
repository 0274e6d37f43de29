"""pipeline/core/failpoints.py: a crash point kills the process only when named."""

import signal
import subprocess
import sys

from pipeline.core.failpoints import CRASH_ENV, crash_point

SCRIPT = "from pipeline.core.failpoints import crash_point; crash_point('here'); print('alive')"


def test_a_named_crash_point_kills_the_process_and_others_do_nothing(monkeypatch):
    import os

    env = {**os.environ, CRASH_ENV: "here"}
    assert subprocess.run([sys.executable, "-c", SCRIPT], env=env, timeout=120).returncode == -signal.SIGKILL
    env[CRASH_ENV] = "elsewhere"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout == "alive\n"
    monkeypatch.delenv(CRASH_ENV, raising=False)
    crash_point("here")  # unset: nothing happens to this process
