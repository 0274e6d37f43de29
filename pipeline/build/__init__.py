"""Building a version: the stage list (:mod:`~pipeline.build.stages`), its runner
(:mod:`~pipeline.build.runner`), the plan, the shard writers, publishing.

``build(load_config(path))`` publishes a version in this process.
"""

from pipeline.build.runner import build
from pipeline.build.stages import load_config

__all__ = ["build", "load_config"]
