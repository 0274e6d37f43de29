"""How ``expand run`` runs the stages: in this process, or as a Prefect flow run.

In-process when no Prefect API is configured: the stage list runs here, with no server to
start and stop (about 10 s of a small run). A flow run when ``PREFECT_API_URL`` is set
(in the environment, the active Prefect profile, or ``./prefect.toml``), when asked with
``--flow``, and for ``runner.kind: dask`` (Prefect's Dask task runner). Both publish the
same version for the same config and source: the id depends on neither.
"""

from __future__ import annotations

import logging
import os
import sys
import tomllib
from pathlib import Path

IN_PROCESS, FLOW = "in-process", "prefect-flow"
MODES = {IN_PROCESS: "in-process", FLOW: "as a Prefect flow run"}


def run_mode(config, flow: bool) -> str:
    """:data:`FLOW` when asked, for Dask, or with a Prefect API configured; else :data:`IN_PROCESS`."""
    if flow or config.runner.kind == "dask" or prefect_api_url():
        return FLOW
    return IN_PROCESS


def prefect_api_url() -> str | None:
    """The Prefect API URL the user configured, found without importing Prefect (2.5 s):
    ``PREFECT_API_URL`` in the environment, in the active profile of
    ``$PREFECT_HOME/profiles.toml``, or ``[api] url`` in ``./prefect.toml``."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    home = Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect")).expanduser()
    profiles = _toml(Path(os.environ.get("PREFECT_PROFILES_PATH", home / "profiles.toml")).expanduser())
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active", "ephemeral")
    url = profiles.get("profiles", {}).get(active, {}).get("PREFECT_API_URL")
    return url or _toml(Path("prefect.toml")).get("api", {}).get("url")


def _toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to ``sys.stderr`` as it is at each record (a command run
    twice in one process, e.g. under a test's captured streams, gets its own)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def stderr_logger() -> logging.Logger:
    """A logger that writes timed lines to stderr (an in-process run without a terminal)."""
    logger = logging.getLogger("expand.run")
    if not logger.handlers:
        handler = _StderrHandler()
        line = "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(message)s"
        handler.setFormatter(logging.Formatter(line, "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger
