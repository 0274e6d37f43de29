"""Arguments several ``expand`` commands share, each declared once, as argparse parents."""

from __future__ import annotations

import argparse


def _parent() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


CONFIG = _parent()
CONFIG.add_argument("config", help="YAML config file")
CONFIG.add_argument(
    "--set",
    dest="overrides",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="override a config key by its dotted path (repeatable)",
)

JSON = _parent()
JSON.add_argument("--json", action="store_true", help="print the result as JSON")

VERSION = _parent()
VERSION.add_argument("version", help="version folder (or its 'latest' or tags/<name> link)")

ROOT = _parent()
ROOT.add_argument("root", help="output.root, or one dataset folder in it")
