"""``expand preview``: a picture of augmented copies per class, made as a build makes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.augment.recipe import ClassAugmenters
from pipeline.config import Config


def preview(config: Config, copies: int, path: Path) -> Path:
    """Write a PNG of each class's first training image and ``copies`` augmented copies,
    made as a build makes them (same seeds), without publishing anything. With
    ``augment.mix``, the copies a build would mix are mixed too, with partners drawn from
    the previewed images (a build draws them from the whole training split)."""
    from pipeline.augment.mixing import choose_partners, mix_copy
    from pipeline.ingest.stage import stage_chunk
    from pipeline.sources import open_source
    from pipeline.sources.archive import extracted
    from pipeline.version.pictures import preview_grid

    with extracted(config.source.path) as folder:
        reader = open_source(config.source.model_copy(update={"path": folder}))
        firsts = {}
        for sample in reader:
            if sample.split in (None, "train") and sample.label not in firsts:
                firsts[sample.label] = sample
                if len(firsts) == len(reader.class_names):
                    break
        shown = sorted(firsts.items())
        # Staged as ingest stages them (decoded, resized with source.resize).
        staged = stage_chunk(
            [sample.pixels for _, sample in shown], reader.mode, False, config.source.resizing
        )
    originals = [np.frombuffer(raw, np.uint8).reshape(shape) for raw, shape, _ in staged]
    augment = ClassAugmenters(config.augment, reader.class_names, config.seed)
    mix = config.augment.mix
    rows = []
    for k, (label, sample) in enumerate(shown):
        augmented = [augment(originals[k], label, sample.source_id, r)[0] for r in range(1, copies + 1)]
        if mix is not None:
            replicas = np.arange(1, copies + 1)
            methods, partners = choose_partners(
                mix,
                config.seed,
                [sample.source_id] * copies,
                replicas,
                np.full(copies, k),
                np.arange(len(shown)),
            )
            for r, (method, partner) in enumerate(zip(methods, partners, strict=True)):
                if method is not None:
                    copy = augmented[r]
                    augmented[r] = mix_copy(
                        copy, originals[partner], method, mix, config.seed, sample.source_id, r + 1
                    )[0]
        rows.append((reader.class_names[label], originals[k], augmented))
    preview_grid(rows, path)
    return path
