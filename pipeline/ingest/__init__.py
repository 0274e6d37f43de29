"""Ingest: decode and validate the source's images, drop duplicates and leaks, assign
splits (:mod:`~pipeline.ingest.stage`, :mod:`~pipeline.ingest.splits`), and stage them as
raw pixels with an index (:mod:`~pipeline.ingest.store`); :mod:`~pipeline.ingest.space`
checks the disk."""
