"""``expand`` commands that make data: run (and its dry run), init, preview, train-gan, serve.

On a terminal, ``run`` and ``train-gan`` draw progress bars on stderr (ingest, GAN
training, sampling, the utility gate, writing); elsewhere, and with ``--quiet`` or
``--json``, progress goes to the log only. ``expand run`` prints the version directory as
the last line of stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from cli.errors import EXIT_OK, hide_tracebacks_of_expected_errors
from cli.mode import FLOW, IN_PROCESS, MODES, run_mode, stderr_logger
from cli.options import CONFIG
from pipeline.core.errors import ConfigError


def add_commands(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", parents=[CONFIG], help="publish one dataset version from a config")
    output = run.add_mutually_exclusive_group()
    output.add_argument("--quiet", action="store_true", help="print only the version directory")
    output.add_argument("--json", action="store_true", help="print the run's result as JSON on the last line")
    run.add_argument(
        "--flow",
        action="store_true",
        help="run as a Prefect flow run even when no Prefect API is configured (a temporary local server)",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="ingest the source and say what would be published (rows per class, size); write nothing",
    )
    preview = commands.add_parser(
        "preview", parents=[CONFIG], help="a PNG of augmented copies per class; publishes nothing"
    )
    preview.add_argument("--n", type=int, default=8, help="augmented copies per class (default 8)")
    preview.add_argument("--out", default="preview.png", help="PNG to write (default: preview.png)")
    init = commands.add_parser("init", help="write a commented starter config for a source dataset")
    init.add_argument(
        "source",
        help="an image folder (<class>/<image>, optionally under split folders), a Parquet file or "
        "folder, a CIFAR-10 batches folder, a folder of MNIST IDX files, or an archive of one",
    )
    init.add_argument("--out", default="expand.yaml", help="config file to write (default: expand.yaml)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    serve = commands.add_parser(
        "serve", parents=[CONFIG], help="serve the expand flow on a schedule (needs a Prefect server)"
    )
    when = serve.add_mutually_exclusive_group()
    when.add_argument("--cron", help='cron schedule, e.g. "0 3 * * *" (daily at 03:00)')
    when.add_argument("--interval", type=int, help="seconds between runs")
    serve.add_argument("--name", help="deployment name (default: the dataset name)")
    serve.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="KEY",
        help="a config key (fnmatch pattern: 'synthesis.gate.*') a run of the deployment may override; "
        "repeat for more. None by default: runs get the served config and --set overrides only",
    )
    gan = commands.add_parser("train-gan", parents=[CONFIG], help="train the class-conditional GAN alone")
    gan.add_argument("--out", help="checkpoint folder (default: <output.root>/<name>-gan)")
    gan.add_argument("--resume", help="continue from this checkpoint (exactly, on the same device)")


def _run(args: argparse.Namespace) -> int:
    from pipeline.build import load_config

    config = load_config(args.config, args.overrides)  # fail fast, before Prefect starts
    if args.dry_run:
        return _dry_run(config, args)
    quiet = args.quiet or args.json
    started = time.perf_counter()
    if run_mode(config, args.flow) == IN_PROCESS:
        result = _run_in_process(config, quiet)
    else:
        hide_tracebacks_of_expected_errors()
        from flows.expand import run_expand

        with _progress(quiet):
            result = run_expand(config, args.config, args.overrides)
        result["mode"] = FLOW
    result["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return EXIT_OK
    if not args.quiet:
        _print_summary(result)
    print(result["version_dir"])
    return EXIT_OK


def _run_in_process(config, quiet: bool) -> dict:
    """The stages in this process, no Prefect (:func:`pipeline.build.runner.run_stages`).
    On a terminal progress bars, elsewhere timed log lines on stderr; warnings always."""
    from pipeline.build.runner import InProcess, run_result, run_stages
    from pipeline.core.progress import GAN, ProgressLog, reporting

    def warn(message: str) -> None:
        print(f"expand: warning: {message}", file=sys.stderr)

    if quiet or sys.stderr.isatty():
        executor, sink = InProcess(warn=warn), None
    else:
        logger = stderr_logger()
        executor, sink = InProcess(logger.info, warn=logger.warning), ProgressLog(logger, skip=(GAN,))
    with _progress(quiet) if sink is None else reporting(sink):
        context = run_stages(config, executor, {"orchestrator": IN_PROCESS})
    return {**run_result(context), "mode": IN_PROCESS}


def _dry_run(config, args: argparse.Namespace) -> int:
    """``expand run --dry-run``: no Prefect, nothing published (see :mod:`pipeline.build.dry_run`)."""
    from cli.catalog import print_class_rows
    from pipeline.build.dry_run import dry_run

    with _progress(quiet=args.quiet or args.json):
        result = dry_run(config)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return EXIT_OK
    if not args.quiet:
        if result["published"]:
            print(f"dry run: version {result['version_id']} is already published; a run would write nothing")
        else:
            print(f"dry run: a run would publish version {result['version_id']}; nothing was written")
        splits = {
            split: {origin: sum(by_class.values()) for origin, by_class in origins.items()}
            for split, origins in result["rows"].items()
        }
        _print_split_table(splits)
        print_class_rows(result["class_names"], result["rows"])
        for note in result["notes"]:
            print(f"  {note}")
        if not result["published"]:
            _print_source_line(result["source"])
            space = result["space"]
            print(f"  disk: {space['text']}" + ("  (it may not fit)" if space["short"] else ""))
    print(result["version_dir"])
    return EXIT_OK


def _progress(quiet: bool):
    """Progress bars on stderr when it is a terminal (and the command is not quiet);
    otherwise Prefect's log lines tell the progress."""
    if quiet or not sys.stderr.isatty():
        return contextlib.nullcontext()
    from cli.progress import terminal_progress

    return terminal_progress(sys.stderr)


def _print_summary(result: dict) -> None:
    state = "published" if result["created"] else "already published (nothing to do)"
    print(f"version {result['version_id']} {state} in {result['seconds']:.1f}s ({MODES[result['mode']]})")
    print(f"  manifest sha256 {result['manifest_sha256']} (expand verify checks it)")
    _print_split_table(result["splits"])
    _print_source_line(result)
    if result.get("tune"):
        print(f"  augment.tune: {result['tune']['reason']}")
    synthesis = result.get("synthesis") or {}
    if synthesis.get("short"):
        print(f"  synthesis.filter: classes short of their count (kept): {synthesis['short']}")
    if synthesis.get("gate"):
        print(f"  gate: {synthesis['gate']['reason']}")


def _print_source_line(source: dict) -> None:
    """What ingest left out or ignored, when anything (``skipped``, ``duplicate_groups``,
    ``ignored_files``)."""
    if source["skipped"] or source["duplicate_groups"] or source["ignored_files"]:
        print(
            f"  source: {source['skipped']} images left out, {source['duplicate_groups']} groups of "
            f"identical images, {source['ignored_files']} files ignored (not images by their "
            "extension, or hidden; manifest.json: source.skipped, source.duplicates)"
        )


def _print_split_table(splits: dict[str, dict[str, int]]) -> None:
    """Rows per split and origin (``splits``: split -> origin -> rows), with the totals."""
    print(f"  {'split':<10} {'real':>8} {'augmented':>10} {'synthetic':>10} {'rows':>8}")
    for split, by_origin in splits.items():
        counts = [by_origin.get(origin, 0) for origin in ("real", "augmented", "synthetic")]
        print(f"  {split:<10} {counts[0]:>8} {counts[1]:>10} {counts[2]:>10} {sum(counts):>8}")


def _init(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.build import load_config
    from pipeline.build.starter import starter_config

    out = Path(args.out)
    if out.exists() and not args.force:
        raise ConfigError(f"{out} exists; pass --force to overwrite it")
    out.write_text(starter_config(Path(args.source)), encoding="utf-8")
    load_config(out)  # what it wrote must load
    print(out)
    return EXIT_OK


def _preview(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.augment.preview import preview
    from pipeline.build import load_config

    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    print(preview(load_config(args.config, args.overrides), args.n, Path(args.out)))
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    from pipeline.build import load_config

    load_config(args.config, args.overrides)  # fail fast, before Prefect starts
    if args.interval is not None and args.interval < 1:
        raise ConfigError(f"--interval must be at least 1 second, got {args.interval}")
    if not args.cron and not args.interval:
        raise ConfigError("expand serve needs a schedule: --cron or --interval")
    from flows.policy import serve_policy

    serve_policy(args.config, args.overrides, args.allow)  # a bad --allow fails before Prefect loads
    from flows.expand import serve_expand

    serve_expand(
        args.config, args.overrides, cron=args.cron, interval=args.interval, name=args.name, allow=args.allow
    )
    return EXIT_OK


def _train_gan(args: argparse.Namespace) -> int:
    from pipeline.build import load_config

    config = load_config(args.config, args.overrides)
    hide_tracebacks_of_expected_errors()
    from pipeline.gan.distributed import launched_distributed

    if launched_distributed():  # one of torchrun's processes: no Prefect run, rank 0 reports
        result = _train_gan_rank(config, args)
        if result["checkpoint"] is None:
            return EXIT_OK
    else:
        from flows.expand import train_gan
        from flows.settings import one_off_run

        with _progress(quiet=False), one_off_run():
            result = train_gan(
                config_path=args.config, overrides=args.overrides, out_dir=args.out, resume=args.resume
            )
    best = result["best"]
    print(
        f"best checkpoint at step {best.get('step')} (classifier FD {best.get('fd', float('nan')):.3f}),"
        f" sha256 {result['sha256'][:16]}"
    )
    print(result["checkpoint"])
    return EXIT_OK


def _train_gan_rank(config, args: argparse.Namespace) -> dict:
    """``expand train-gan`` as one rank of a torchrun launch (see docs/guide-gan.md)."""
    from pipeline.build.runner import gan_out_dir, train_gan_distributed
    from pipeline.build.stages import gan_progress_line

    def show(metrics: dict[str, float]) -> None:
        print(gan_progress_line(metrics, config.synthesis.train), file=sys.stderr, flush=True)

    resume = Path(args.resume) if args.resume else None
    return train_gan_distributed(config, gan_out_dir(config, args.out), resume=resume, on_metrics=show)


COMMANDS = {
    "run": _run,
    "train-gan": _train_gan,
    "serve": _serve,
    "init": _init,
    "preview": _preview,
}
