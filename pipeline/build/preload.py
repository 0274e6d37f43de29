"""Imported once by the worker pool's fork server (:mod:`pipeline.core.workers`), so that every
worker starts with the shard writers and albumentations loaded, and without torch."""

import pipeline.build  # noqa: F401  # the functions workers run
from pipeline.augment.recipe import albumentations

albumentations()
