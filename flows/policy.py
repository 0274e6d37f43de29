"""What a run of an ``expand serve`` deployment may change.

Any client of the Prefect API can start a run of a deployment with parameters of its
choosing. Unchecked, that lets it point a run at another config, another ``source.path``
(read into the version and uploaded) or ``output.root``, or name a module to import. So
``expand serve`` fixes the policy when it starts and hands it to the runs it executes
through their environment, which API clients cannot set:

- the config file is the one served; a run naming another is refused;
- the overrides given to ``expand serve`` always apply;
- a run may add overrides only for keys matching an ``--allow`` pattern (``fnmatch`` on
  the dotted key: ``augment.copies_per_image``, ``synthesis.gate.*``); none by default;
- keys that import code (:data:`CODE_KEYS`) are never taken from a run, whatever the
  patterns: they can only be set in the served config or the ``expand serve`` command.

Deployments made otherwise (``prefect deploy`` with prefect.yaml, run by a work-pool
worker) take any parameters, as Prefect allows: serve with ``expand serve`` where the API
is reachable by people who may not choose what a run reads and writes.
"""

from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError

POLICY_ENV = "EXPAND_SERVE_POLICY"
CODE_KEYS = ("augment.custom_transforms", "synthesis.features")


def serve_policy(config_path: str, overrides: list[str], allow: list[str]) -> dict[str, Any]:
    """The policy ``expand serve`` fixes for its runs (stored in :data:`POLICY_ENV`).

    Raises:
        ConfigError: an allow pattern that names a key importing code (patterns with
            wildcards may cover them: those keys are refused at each run anyway).
    """
    for pattern in allow:
        if _touches_code(pattern):
            raise ConfigError(
                f"--allow {pattern}: runs may never set {' or '.join(CODE_KEYS)} (they import code); "
                "set them in the served config"
            )
    return {
        "config_path": str(Path(config_path).resolve()),
        "overrides": list(overrides),
        "allow": list(allow),
    }


def served_parameters(config_path: str | None, overrides: list[str]) -> tuple[str | None, list[str]]:
    """The config path and overrides a run really gets: as given outside a served deployment;
    inside one, checked against its policy (see the module).

    Raises:
        ConfigError: the run names another config, or overrides a key it may not.
    """
    raw = os.environ.get(POLICY_ENV)
    if not raw:
        return config_path, overrides
    policy = json.loads(raw)
    served = policy["config_path"]
    if config_path is not None and str(Path(config_path).resolve()) != served:
        raise ConfigError(
            f"this deployment serves {served}; a run may not name another config ({config_path})"
        )
    fixed = list(policy["overrides"])
    served_keys = {o.split("=", 1)[0].strip() for o in fixed}
    extra = [o for o in overrides if o not in fixed]
    for override in extra:
        key = override.split("=", 1)[0].strip()
        if key in served_keys:
            raise ConfigError(f"this deployment sets {key!r} itself; a run may not change it")
        if _touches_code(key) or not any(fnmatch.fnmatchcase(key, p) for p in policy["allow"]):
            allowed = ", ".join(policy["allow"]) or "none"
            raise ConfigError(
                f"this deployment does not let a run set {key!r} (allowed: {allowed}; "
                "see expand serve --allow)"
            )
    return served, fixed + extra


def _touches_code(key: str) -> bool:
    """Whether setting ``key`` sets a key that imports code (it, a part of it, or its section)."""
    return any(key == c or key.startswith(c + ".") or c.startswith(key + ".") for c in CODE_KEYS)
