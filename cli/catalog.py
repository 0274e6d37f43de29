"""``expand`` subcommands over published versions: versions, show, diff, tag, gc, verify,
lineage, push.

They read and change the output directory only; none starts Prefect. ``--json`` prints
one JSON document instead of the human summary.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cli.options import JSON, ROOT, VERSION
from pipeline.version import catalog
from pipeline.version import rows as version_rows
from pipeline.version.manifest import ATTACHMENTS_DIR, load_manifest, recorded_digest, verify
from pipeline.version.remote import push

EXIT_OK, EXIT_FAILED = 0, 1
_LIST_LIMIT = 20
_CLASS_LIMIT = 20  # show prints a row per class up to this many classes


def add_commands(commands: argparse._SubParsersAction) -> None:
    commands.add_parser("versions", parents=[ROOT, JSON], help="list the versions under an output root")
    commands.add_parser("show", parents=[VERSION, JSON], help="summarise one version")
    diff = commands.add_parser("diff", parents=[JSON], help="what changed between two versions")
    diff.add_argument("a", help="the older version folder")
    diff.add_argument("b", help="the newer version folder")
    tag = commands.add_parser("tag", help="name a version (gc keeps tagged versions)")
    tag.add_argument("version", help="version folder")
    tag.add_argument("name", help="the tag: the version is linked as <dataset folder>/tags/<name>")
    tag.add_argument("--delete", action="store_true", help="remove the tag instead")
    gc = commands.add_parser(
        "gc", parents=[ROOT], help="remove old untagged versions and crashed runs' staging"
    )
    gc.add_argument("--keep", type=int, required=True, help="newest versions kept per dataset")
    gc.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    check = commands.add_parser("verify", help="re-hash every file of a version against its manifest")
    check.add_argument("version", help="version folder, or the fsspec URL of an uploaded version")
    check.add_argument("--quick", action="store_true", help="sizes, schemas and row counts only")
    check.add_argument(
        "--manifest-sha256",
        metavar="HEX",
        help="the manifest's sha256 as published (kept elsewhere); default: the version's digest record",
    )
    trace = commands.add_parser("lineage", parents=[VERSION], help="where one row came from")
    trace.add_argument("row_id", help="the row's id (the id column: 16 hex digits)")
    upload = commands.add_parser("push", help="upload a version to remote storage (an fsspec URL)")
    upload.add_argument("version", help="version folder")
    upload.add_argument("url", help="e.g. s3://bucket/datasets: it goes to <url>/<name>/<version id>/")
    upload.add_argument("--latest", action="store_true", help="also point <url>/<name>/latest at it")


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=1, sort_keys=True, default=str))


def _origins(rows: dict[str, int]) -> str:
    return "/".join(str(rows.get(o, 0)) for o in ("real", "augmented", "synthetic"))


def _versions(args: argparse.Namespace) -> int:
    found = catalog.list_versions(Path(args.root))
    if args.json:
        _print_json([s.as_dict() for s in found])
        return EXIT_OK
    if not found:
        print(f"no versions under {args.root}")
        return EXIT_OK
    header = ("version", "created", "dataset", "train r/a/s", "test", "MB", "refs")
    rows = [
        (
            s.version_id,
            "DAMAGED" if s.damaged else s.created,
            s.name,
            _origins(s.rows.get("train", {})),
            str(sum(s.rows.get("test", {}).values())),
            f"{s.bytes / 1e6:.2f}",
            ", ".join((["latest"] if s.latest else []) + s.tags),
        )
        for s in found
    ]
    widths = [max(len(row[column]) for row in (header, *rows)) for column in range(len(header))]
    for row in (header, *rows):
        cells = [
            cell.rjust(w) if column in (4, 5) else cell.ljust(w)
            for column, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
    for s in found:
        if s.damaged:
            print(f"damaged: {s.path}: {s.damaged}")
            print("  (expand gc removes it; a run of its config builds it again)")
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    version = catalog.resolve_version(args.version)
    manifest = load_manifest(version)
    latest, tags = catalog.refs(version.parent)
    summary = catalog.summarize(version, latest, tags).as_dict()
    synthesis = manifest.synthesis
    summary.update(
        classes=manifest.class_names,
        image=manifest.image.model_dump(mode="json"),
        format=manifest.format,
        files=len(manifest.files),
        rows_per_class={split: info.by_origin_class for split, info in sorted(manifest.splits.items())},
        run=manifest.run.model_dump(mode="json", exclude_unset=True),
        synthesis=(
            synthesis.model_dump(mode="json", exclude_unset=True, include={"published", "gate"})
            if synthesis
            else {}
        ),
        attachments=sorted(
            p.relative_to(version).as_posix() for p in (version / ATTACHMENTS_DIR).rglob("*") if p.is_file()
        ),
    )
    if args.json:
        _print_json(summary)
        return EXIT_OK
    print(f"{summary['name']} {summary['version_id']}  ({version})")
    print(f"  created   {summary['created']}, {summary['files']} files, {summary['bytes'] / 1e6:.2f} MB")
    print(f"  source    {summary['source']} (fingerprint {summary['fingerprint']})")
    image = summary["image"]
    print(
        f"  images    {image['mode']} {image['height']}x{image['width']}, {len(summary['classes'])} classes"
    )
    for split, rows in summary["rows"].items():
        print(f"  {split:<9} {sum(rows.values()):>7} rows (real/augmented/synthetic {_origins(rows)})")
    gate = summary["synthesis"].get("gate")
    if gate:
        print(f"  gate      {gate['reason']}")
    refs = (["latest"] if summary["latest"] else []) + summary["tags"]
    if refs:
        print(f"  refs      {', '.join(refs)}")
    if summary["attachments"]:
        print(f"  attached  {', '.join(summary['attachments'])} (not in the manifest)")
    print_class_rows(summary["classes"], summary["rows_per_class"])
    return EXIT_OK


def print_class_rows(classes: list[str], per_class: dict[str, dict[str, dict[str, int]]]) -> None:
    """Rows per class: real/augmented/synthetic in a split that has more than real rows, the
    count in the others; up to ``_CLASS_LIMIT`` classes (``--json`` and the card have all)."""
    if len(classes) > _CLASS_LIMIT:
        print(f"  classes   {len(classes)}: rows per class in --json and the version's README.md")
        return
    expanded = {split: set(origins) - {"real"} for split, origins in per_class.items()}
    header = ["class"] + [f"{split} r/a/s" if expanded[split] else split for split in per_class]
    rows = [
        [name]
        + [
            _origins({o: by_class.get(name, 0) for o, by_class in origins.items()})
            if expanded[split]
            else str(origins.get("real", {}).get(name, 0))
            for split, origins in per_class.items()
        ]
        for name in classes
    ]
    widths = [max(len(row[column]) for row in (header, *rows)) for column in range(len(header))]
    for row in (header, *rows):
        cells = [
            cell.ljust(w) if column == 0 else cell.rjust(w)
            for column, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  " + "  ".join(cells))


def _diff(args: argparse.Namespace) -> int:
    changes = version_rows.diff_versions(Path(args.a), Path(args.b))
    if args.json:
        _print_json(changes)
        return EXIT_OK
    print(f"{changes['a']} -> {changes['b']}")
    source = changes["source"]
    if source["changed"]:
        print(f"source changed: {source['fingerprint'][0]} -> {source['fingerprint'][1]}")
        for kind in ("added", "removed", "edited", "moved_split"):
            ids = source[kind]
            if ids:
                more = f" (+{len(ids) - _LIST_LIMIT} more)" if len(ids) > _LIST_LIMIT else ""
                print(f"  {kind:<12} {len(ids):>5}: {', '.join(ids[:_LIST_LIMIT])}{more}")
    else:
        print("source unchanged")
    for c in changes["counts"]:
        print(f"  rows {c['split']}/{c['origin']}/{c['class']}: {c['a']} -> {c['b']} ({c['delta']:+d})")
    for c in changes["config"]:
        print(f"  config {c['key']}: {json.dumps(c['a'])} -> {json.dumps(c['b'])}")
    for c in changes["libraries"]:
        print(f"  library {c['key']}: {c['a']} -> {c['b']}")
    for c in changes["devices"]:
        print(f"  synthesis {c['key']}: {c['a']} -> {c['b']}")
    return EXIT_OK


def _tag(args: argparse.Namespace) -> int:
    previous = catalog.tag_version(Path(args.version), args.name, delete=args.delete)
    if args.delete:
        print(f"tag {args.name} removed (was {previous})")
    else:
        moved = f" (moved from {previous})" if previous else ""
        print(f"tag {args.name} -> {catalog.resolve_version(args.version).name}{moved}")
    return EXIT_OK


def _gc(args: argparse.Namespace) -> int:
    report = catalog.gc(Path(args.root), keep=args.keep, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for path in report["removed"]:
        print(f"{verb} version {path}")
    for path in report["staging"]:
        print(f"{verb} staging {path}")
    print(f"{len(report['kept'])} versions kept, {len(report['removed'])} {verb}")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    version = args.version if "://" in args.version else catalog.resolve_version(args.version)
    problems = verify(version, full=not args.quick, manifest_sha256=args.manifest_sha256)
    if problems:
        for problem in problems:
            print(f"{version}: {problem}")
        print(f"FAILED: {len(problems)} problem(s)")
        return EXIT_FAILED
    files = len(load_manifest(version).files)
    print(f"OK: {files} files {'sized' if args.quick else 'hashed'}, schemas and row counts match")
    if args.manifest_sha256:
        print("the manifest is the one given by --manifest-sha256")
    elif recorded_digest(version):
        print("the manifest is the one recorded when the version was published")
    else:
        print("no manifest digest recorded for this version: a rewritten manifest would not be seen")
    return EXIT_OK


def _lineage(args: argparse.Namespace) -> int:
    _print_json(version_rows.lineage(Path(args.version), args.row_id))
    return EXIT_OK


def _push(args: argparse.Namespace) -> int:
    print(push(catalog.resolve_version(args.version), args.url, latest=args.latest))
    return EXIT_OK


COMMANDS = {
    "versions": _versions,
    "show": _show,
    "diff": _diff,
    "tag": _tag,
    "gc": _gc,
    "verify": _verify,
    "lineage": _lineage,
    "push": _push,
}
