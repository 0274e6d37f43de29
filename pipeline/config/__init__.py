"""The one configuration tree. Every default lives here; YAML files hold only what differs.

One module per part of the tree: :mod:`~pipeline.config.source` (``source``, ``split``),
:mod:`~pipeline.config.augment`, :mod:`~pipeline.config.synthesis`,
:mod:`~pipeline.config.output` (``output``, ``runner``), :mod:`~pipeline.config.evaluate`,
:mod:`~pipeline.config.root` (the whole :class:`Config`), with the shared base, limits and
helpers in :mod:`~pipeline.config.common`. Loading goes through :func:`read_config`
(:mod:`~pipeline.config.load`), which turns every validation problem into a
:class:`~pipeline.core.errors.ConfigError` naming the file and the dotted key.
:mod:`~pipeline.config.reference` writes docs/config.md from the fields' descriptions.
"""

from pipeline.config.augment import AugmentConfig, ClassAugmentConfig, MixConfig, TuneConfig
from pipeline.config.common import (
    ARCHIVE_SUFFIXES,
    AUTO_SHARD_ROWS,
    AUTO_SHARDS,
    DEVICES,
    GAN_MAX_SIDE,
    GAN_MIN_SIDE,
    MAX_RESIZE,
    SOURCE_KINDS,
    Device,
    Metric,
    archive_stem,
    gan_layout,
    gan_side_ok,
    is_inside,
    metric_name,
    parse_size,
)
from pipeline.config.evaluate import EvaluateConfig
from pipeline.config.load import read_config, validate_section
from pipeline.config.output import OutputConfig, RunnerConfig
from pipeline.config.root import Config
from pipeline.config.source import SourceConfig, SplitConfig
from pipeline.config.synthesis import FilterConfig, GanTrainConfig, GateConfig, SynthesisConfig

__all__ = [
    "ARCHIVE_SUFFIXES",
    "AUTO_SHARDS",
    "AUTO_SHARD_ROWS",
    "DEVICES",
    "GAN_MAX_SIDE",
    "GAN_MIN_SIDE",
    "MAX_RESIZE",
    "SOURCE_KINDS",
    "AugmentConfig",
    "ClassAugmentConfig",
    "Config",
    "Device",
    "EvaluateConfig",
    "FilterConfig",
    "GanTrainConfig",
    "GateConfig",
    "Metric",
    "MixConfig",
    "OutputConfig",
    "RunnerConfig",
    "SourceConfig",
    "SplitConfig",
    "SynthesisConfig",
    "TuneConfig",
    "archive_stem",
    "gan_layout",
    "gan_side_ok",
    "is_inside",
    "metric_name",
    "parse_size",
    "read_config",
    "validate_section",
]
