"""The ``expand`` command line.

Exit codes: 0 success, 1 the run failed (unreadable data, I/O, a version that does not
verify), 2 bad usage or config, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM). On a
terminal, ``run`` and ``train-gan`` draw progress bars on stderr (ingest, GAN training,
sampling, the utility gate, writing); elsewhere, and with ``--quiet`` or ``--json``,
progress goes to the log only. ``expand run`` prints the version directory as the last
line of stdout; ``expand evaluate --json`` prints its report as JSON on the last line. The
catalog commands (versions, show, diff, tag, gc, verify, lineage) are in
:mod:`flows.catalog_cli`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time

from flows import catalog_cli
from pipeline.errors import ConfigError, PipelineError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT or SIGTERM, as shells report them


class Terminated(BaseException):
    """SIGTERM (``kill``, a scheduler's stop): raised in the main thread, as Ctrl-C raises
    ``KeyboardInterrupt``, so that the run removes its staging and its temporary server
    and worker processes exit with it instead of outliving it."""


class _UsageParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits with 2 too; keep its message short
        self.print_usage(sys.stderr)
        print(f"expand: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _UsageParser(prog="expand", description="Offline dataset expansion.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_UsageParser)
    run = commands.add_parser("run", help="publish one dataset version from a config")
    run.add_argument("config", help="YAML config file")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key by its dotted path (repeatable)",
    )
    output = run.add_mutually_exclusive_group()
    output.add_argument("--quiet", action="store_true", help="print only the version directory")
    output.add_argument("--json", action="store_true", help="print the run's result as JSON on the last line")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="ingest the source and say what would be published (rows per class, size); write nothing",
    )
    preview = commands.add_parser("preview", help="a PNG of augmented copies per class; publishes nothing")
    preview.add_argument("config", help="YAML config file")
    preview.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
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
    serve = commands.add_parser("serve", help="serve the expand flow on a schedule (needs a Prefect server)")
    serve.add_argument("config", help="YAML config file")
    serve.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    when = serve.add_mutually_exclusive_group()
    when.add_argument("--cron", help='cron schedule, e.g. "0 3 * * *" (daily at 03:00)')
    when.add_argument("--interval", type=int, help="seconds between runs")
    serve.add_argument("--name", help="deployment name (default: the dataset name)")
    gan = commands.add_parser("train-gan", help="train the class-conditional GAN alone")
    gan.add_argument("config", help="YAML config file")
    gan.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    gan.add_argument("--out", help="checkpoint folder (default: <output.root>/<name>-gan)")
    gan.add_argument("--resume", help="continue from this checkpoint (exactly, on the same device)")
    catalog_cli.add_commands(commands)
    evaluate = commands.add_parser("evaluate", help="train the reference classifier on parts of a version")
    evaluate.add_argument("version")
    evaluate.add_argument("--seeds", type=int, default=3, help="classifier seeds per subset (default 3)")
    evaluate.add_argument("--epochs", type=int, default=30, help="classifier epochs (default 30)")
    evaluate.add_argument(
        "--real-per-class", type=int, help="low-data protocol: keep K real images per class and their copies"
    )
    evaluate.add_argument(
        "--device",
        default="auto",
        help="where the classifiers train: auto (default: cuda, then mps, then cpu), cpu, cuda or mps",
    )
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON on the last line")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":  # Prefect's runner handles its own signals
            return _dispatch(args)
        with _sigterm_raises():
            return _dispatch(args)
    except BrokenPipeError:  # e.g. `expand diff A B | head`: the reader left, not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the interpreter's final flush quiet
        return EXIT_OK


def _dispatch(args: argparse.Namespace) -> int:
    try:
        handler = _COMMANDS.get(args.command)
        if handler:
            return handler(args)
        if args.command in catalog_cli.COMMANDS:
            return catalog_cli.dispatch(args)
    except ConfigError as exc:
        print(f"expand: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        raise
    except KeyboardInterrupt:
        _stop_workers()
        print(f"expand: {args.command} interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        _stop_workers()
        print(f"expand: {args.command} terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except (PipelineError, OSError) as exc:  # OSError: a full disk, a lost mount, permissions
        print(f"expand: {args.command} failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_USAGE


def _stop_workers() -> None:
    """Terminate worker processes still busy (they ignore Ctrl-C), rather than wait at exit
    for the calls they hold."""
    from pipeline.workers import stop_workers

    stop_workers()


@contextlib.contextmanager
def _sigterm_raises():
    """SIGTERM raises :class:`Terminated` while the command runs (main thread only).

    During a flow run Prefect's own handler turns SIGTERM into its ``TerminationSignal``,
    records the crash, and sends the signal again to the handler it replaced: this one.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminated(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    from pipeline.config import load_config

    config = load_config(args.config, args.overrides)  # fail fast, before Prefect starts
    if args.dry_run:
        return _dry_run(config, args)
    _hide_tracebacks_of_expected_errors()
    from flows.expand import run_expand

    started = time.perf_counter()
    with _progress(quiet=args.quiet or args.json):
        result = run_expand(config, args.config, args.overrides)
    result["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return EXIT_OK
    if not args.quiet:
        _print_summary(result)
    print(result["version_dir"])
    return EXIT_OK


def _dry_run(config, args: argparse.Namespace) -> int:
    """``expand run --dry-run``: no Prefect, nothing published (see :mod:`pipeline.dry_run`)."""
    from flows.catalog_cli import print_class_rows
    from pipeline.dry_run import dry_run

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
    from flows.progress_bar import terminal_progress

    return terminal_progress(sys.stderr)


def _print_summary(result: dict) -> None:
    state = "published" if result["created"] else "already published (nothing to do)"
    print(f"version {result['version_id']} {state} in {result['seconds']:.1f}s")
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

    from pipeline.config import load_config
    from pipeline.starter import starter_config

    out = Path(args.out)
    if out.exists() and not args.force:
        raise ConfigError(f"{out} exists; pass --force to overwrite it")
    out.write_text(starter_config(Path(args.source)), encoding="utf-8")
    load_config(out)  # what it wrote must load
    print(out)
    return EXIT_OK


def _preview(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.augment import preview
    from pipeline.config import load_config

    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    print(preview(load_config(args.config, args.overrides), args.n, Path(args.out)))
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    from pipeline.config import load_config

    load_config(args.config, args.overrides)  # fail fast, before Prefect starts
    if args.interval is not None and args.interval < 1:
        raise ConfigError(f"--interval must be at least 1 second, got {args.interval}")
    if not args.cron and not args.interval:
        raise ConfigError("expand serve needs a schedule: --cron or --interval")
    from flows.expand import serve_expand

    serve_expand(args.config, args.overrides, cron=args.cron, interval=args.interval, name=args.name)
    return EXIT_OK


def _train_gan(args: argparse.Namespace) -> int:
    from pipeline.config import load_config

    load_config(args.config, args.overrides)
    _hide_tracebacks_of_expected_errors()
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


def _evaluate(args: argparse.Namespace) -> int:
    from pipeline.catalog import resolve_version
    from pipeline.devices import pick_device
    from pipeline.evaluation import EvaluationSettings

    resolve_version(args.version)  # fail fast, before Prefect starts
    EvaluationSettings(
        seeds=args.seeds, epochs=args.epochs, real_per_class=args.real_per_class, device=args.device
    )
    pick_device(args.device, "--device")
    _hide_tracebacks_of_expected_errors()
    from flows.evaluate import evaluate
    from flows.settings import one_off_run
    from pipeline.evaluation import accuracy_text, unbalanced_test

    with one_off_run():
        document = evaluate(
            version=args.version,
            seeds=args.seeds,
            epochs=args.epochs,
            real_per_class=args.real_per_class,
            device=args.device,
        )
    spread = unbalanced_test(document)
    if spread:
        print(f"  the test split is unbalanced ({spread}): accuracy, then balanced accuracy")
    for name, result in document["results"].items():
        same = f"  (the rows of {result['same_rows_as']})" if "same_rows_as" in result else ""
        balanced = f"  {accuracy_text(result, balanced=True)}" if spread and result["rows"] else ""
        print(f"  {name:<26} {result['rows']:>7} rows  {accuracy_text(result)}{balanced}{same}")
    print(f"report: {document['files'][1]}")
    if args.json:
        print(json.dumps(document, sort_keys=True))
    return EXIT_OK


_COMMANDS = {
    "run": _run,
    "train-gan": _train_gan,
    "serve": _serve,
    "init": _init,
    "preview": _preview,
    "evaluate": _evaluate,
}


class _DropExpectedTraceback(logging.Filter):
    """Prefect logs failed runs with a traceback; for bad input or a full disk the message
    is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], PipelineError | OSError):
            record.exc_info = None
            record.exc_text = None
        return True


def _hide_tracebacks_of_expected_errors() -> None:
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        logging.getLogger(name).addFilter(_DropExpectedTraceback())


if __name__ == "__main__":
    sys.exit(main())
