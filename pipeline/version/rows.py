"""Row-level questions about published versions: what changed from one to another (source
images, row counts, config, libraries, devices), and where one row came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.core.errors import PipelineError
from pipeline.version.catalog import resolve_version
from pipeline.version.manifest import load_manifest
from pipeline.version.model import Manifest, SplitCounts


def _row_files(version: Path, manifest: Manifest) -> list[tuple[str, Path]]:
    """(split, file) of each shard's row table: the shard itself or its lineage file."""
    folder = "data" if manifest.format == "parquet" else "lineage"
    return [(s.split, version / folder / f"{s.shard}.parquet") for s in manifest.shards]


def _real_sources(version: Path, manifest: Manifest) -> dict[str, tuple[str, str]]:
    """source_id -> (source_sha256, split) of the version's real rows."""
    found = {}
    for split, path in _row_files(version, manifest):
        table = pq.read_table(path, columns=["source_id", "source_sha256"], filters=[("origin", "=", "real")])
        ids, shas = table["source_id"].to_pylist(), table["source_sha256"].to_pylist()
        found.update({source_id: (sha, split) for source_id, sha in zip(ids, shas, strict=True)})
    return found


def diff_versions(a: Path, b: Path) -> dict[str, Any]:
    """What changed from version ``a`` to ``b``: source images, row counts, config, libraries
    and the devices synthesis ran on.

    Returns:
        ``{"a", "b", "source", "counts", "config", "libraries", "devices"}``; the last four
        are lists of changes (``{"key", "a", "b"}``; counts per split, origin and class).

    Raises:
        PipelineError: either is not a published version.
    """
    a, b = resolve_version(a), resolve_version(b)
    ma, mb = load_manifest(a), load_manifest(b)
    source: dict[str, Any] = {
        "fingerprint": [ma.source.fingerprint, mb.source.fingerprint],
        "changed": ma.source.fingerprint != mb.source.fingerprint,
    }
    if source["changed"]:
        ra, rb = _real_sources(a, ma), _real_sources(b, mb)
        source["added"] = sorted(set(rb) - set(ra))
        source["removed"] = sorted(set(ra) - set(rb))
        common = set(ra) & set(rb)
        source["edited"] = sorted(k for k in common if ra[k][0] != rb[k][0])
        source["moved_split"] = sorted(k for k in common if ra[k][0] == rb[k][0] and ra[k][1] != rb[k][1])
    return {
        "a": ma.version_id,
        "b": mb.version_id,
        "source": source,
        "counts": _count_changes(ma.splits, mb.splits),
        "config": _changes(_flatten(ma.config), _flatten(mb.config)),
        "libraries": _changes(ma.libraries, mb.libraries),
        "devices": _changes(_devices(ma), _devices(mb)),
    }


def _devices(manifest: Manifest) -> dict[str, Any]:
    synthesis = manifest.synthesis
    if synthesis is None or synthesis.devices is None:
        return {}
    return synthesis.devices.model_dump(mode="json", exclude_unset=True)


def _count_changes(sa: dict[str, SplitCounts], sb: dict[str, SplitCounts]) -> list[dict[str, Any]]:
    def count(splits: dict[str, SplitCounts], split: str, origin: str, name: str) -> int:
        info = splits.get(split)
        return info.by_origin_class.get(origin, {}).get(name, 0) if info else 0

    keys = set()
    for splits in (sa, sb):
        for split, info in splits.items():
            keys |= {(split, origin, name) for origin, by in info.by_origin_class.items() for name in by}
    changes = []
    for split, origin, name in sorted(keys):
        na, nb = count(sa, split, origin, name), count(sb, split, origin, name)
        if na != nb:
            changes.append(
                {"split": split, "origin": origin, "class": name, "a": na, "b": nb, "delta": nb - na}
            )
    return changes


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _changes(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "a": a.get(k), "b": b.get(k)} for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _find_row(version: Path, manifest: Manifest, row_id: str) -> tuple[str, Path, dict[str, Any]]:
    for split, path in _row_files(version, manifest):
        columns = [c for c in pq.read_schema(path).names if c != "image"]
        table = pq.read_table(path, columns=columns, filters=[("id", "=", row_id)])
        if table.num_rows:
            return split, path, table.to_pylist()[0]
    raise PipelineError(f"{version}: no row with id {row_id!r}")


def lineage(version: Path, row_id: str) -> dict[str, Any]:
    """Where one row came from: its columns, source image, transform or generator, run.

    Raises:
        PipelineError: ``version`` is not a published version, or no row has that id.
    """
    version = resolve_version(version)
    manifest = load_manifest(version)
    split, path, row = _find_row(version, manifest, row_id)
    params = json.loads(row["params"]) if row["params"] else None
    source = manifest.source
    result: dict[str, Any] = {
        "version_id": manifest.version_id,
        "split": split,
        "file": path.relative_to(version).as_posix(),
        "row": {**row, "params": params, "class_name": manifest.class_names[row["label"]]},
        "source": {"kind": source.kind, "path": source.path, "fingerprint": source.fingerprint},
        "run": manifest.run.model_dump(mode="json", exclude_unset=True),
    }
    if row["origin"] == "real":
        result["made_by"] = {"step": "copied from the source image", "source_id": row["source_id"]}
    elif row["origin"] == "augmented":
        result["made_by"] = {
            "step": "albumentations recipe applied to the source image",
            "source_id": row["source_id"],
            "recipe": manifest.config["augment"]["transforms"],
            "seed": row["seed"],
            "applied": params,
        }
    else:
        result["made_by"] = {
            "step": "class-conditional GAN sample",
            "checkpoint_sha256": (params or {}).get("checkpoint_sha256"),
            "latent_seed": row["seed"],
            "filter_scores": {k: (params or {}).get(k) for k in ("confidence", "d_score")},
        }
    return result
