"""``expand evaluate``: train the reference classifier on parts of a version and report
test accuracy per subset; ``--json`` prints the report as JSON on the last line."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cli.errors import EXIT_OK, hide_tracebacks_of_expected_errors
from cli.options import JSON, VERSION
from pipeline.config import EvaluateConfig

_DEFAULTS = EvaluateConfig()  # the one place the defaults live: pipeline/config/evaluate.py


def add_commands(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "evaluate", parents=[VERSION, JSON], help="train the reference classifier on parts of a version"
    )
    evaluate.add_argument(
        "--seeds",
        type=int,
        default=_DEFAULTS.seeds,
        help=f"classifier seeds per subset (default {_DEFAULTS.seeds})",
    )
    evaluate.add_argument(
        "--epochs", type=int, default=_DEFAULTS.epochs, help=f"classifier epochs (default {_DEFAULTS.epochs})"
    )
    evaluate.add_argument(
        "--real-per-class", type=int, help="low-data protocol: keep K real images per class and their copies"
    )
    evaluate.add_argument(
        "--device",
        default=_DEFAULTS.device,
        help="where the classifiers train: auto (default: cuda, then mps, then cpu), cpu, cuda or mps",
    )
    evaluate.add_argument(
        "--grid",
        type=int,
        default=_DEFAULTS.grid,
        help=f"the classifier's head reads its last map pooled to GRID x GRID (default {_DEFAULTS.grid}; "
        "1: global pooling)",
    )


def _evaluate(args: argparse.Namespace) -> int:
    from pipeline.config import validate_section
    from pipeline.core.devices import pick_device
    from pipeline.version.catalog import resolve_version

    resolve_version(args.version)  # fail fast, before Prefect starts
    settings = validate_section(EvaluateConfig, _options(args))
    pick_device(settings.device, "--device")
    hide_tracebacks_of_expected_errors()
    from flows.evaluate import evaluate
    from flows.settings import one_off_run
    from pipeline.evaluate.evaluation import accuracy_text, unbalanced_test
    from pipeline.evaluate.stats import interval_text

    with one_off_run():
        document = evaluate(version=args.version, **_options(args))
    spread = unbalanced_test(document)
    if spread:
        print(f"  the test split is unbalanced ({spread}): accuracy, then balanced accuracy")
    for name, result in document["results"].items():
        same = f"  (the rows of {result['same_rows_as']})" if "same_rows_as" in result else ""
        balanced = f"  {accuracy_text(result, balanced=True)}" if spread and result["rows"] else ""
        print(f"  {name:<26} {result['rows']:>7} rows  {accuracy_text(result)}{balanced}{same}")
        gain = document["comparisons"].get(name)
        if gain:
            print(
                f"  {'':<26} gain over {gain['baseline']}: {interval_text(gain['accuracy'])} (95 % interval)"
            )
        elif result.get("left_out"):
            print(f"  {'':<26} {result['left_out']}")
    print(f"report: {document['files'][1]}")
    if args.json:
        print(json.dumps(document, sort_keys=True))
    return EXIT_OK


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The evaluation settings the command line gives (the keys of ``EvaluateConfig``)."""
    return {
        "seeds": args.seeds,
        "epochs": args.epochs,
        "real_per_class": args.real_per_class,
        "device": args.device,
        "grid": args.grid,
    }


COMMANDS = {"evaluate": _evaluate}
