"""``expand evaluate``: train the reference classifier on parts of a version and report
test accuracy per subset; ``--json`` prints the report as JSON on the last line."""

from __future__ import annotations

import argparse
import json

from cli.errors import EXIT_OK, hide_tracebacks_of_expected_errors
from cli.options import JSON, VERSION


def add_commands(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "evaluate", parents=[VERSION, JSON], help="train the reference classifier on parts of a version"
    )
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


def _evaluate(args: argparse.Namespace) -> int:
    from pipeline.core.devices import pick_device
    from pipeline.evaluate.evaluation import EvaluationSettings
    from pipeline.version.catalog import resolve_version

    resolve_version(args.version)  # fail fast, before Prefect starts
    EvaluationSettings(
        seeds=args.seeds, epochs=args.epochs, real_per_class=args.real_per_class, device=args.device
    )
    pick_device(args.device, "--device")
    hide_tracebacks_of_expected_errors()
    from flows.evaluate import evaluate
    from flows.settings import one_off_run
    from pipeline.evaluate.evaluation import accuracy_text, unbalanced_test

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


COMMANDS = {"evaluate": _evaluate}
