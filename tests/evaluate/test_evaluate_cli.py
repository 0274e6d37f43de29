"""cli/evaluate.py: the options of ``expand evaluate`` and their check before Prefect starts."""

import argparse

import pytest

from cli import evaluate as cli_evaluate
from cli.main import main


def parser():
    top = argparse.ArgumentParser(prog="expand")
    cli_evaluate.add_commands(top.add_subparsers(dest="command"))
    return top


def test_options_and_their_defaults():
    args = parser().parse_args(["evaluate", "v-1"])
    assert cli_evaluate._options(args) == {"seeds": 3, "epochs": 30, "real_per_class": None, "device": "auto"}
    help_text = parser()._subparsers._group_actions[0].choices["evaluate"].format_help()
    assert "(default 3)" in help_text and "(default 30)" in help_text


@pytest.mark.parametrize(
    "option, message",
    [
        (["--epochs", "0"], "evaluation needs seeds >= 1 and epochs >= 1, got 3, 0"),
        (["--real-per-class", "0"], "real_per_class must be at least 1, got 0"),
        (["--device", "tpu"], "device must be auto, cpu, cuda or mps, got 'tpu'"),
    ],
)
def test_a_bad_option_is_a_usage_error(tiny_config, capsys, option, message):
    from pipeline.build import build

    version, _ = build(tiny_config("augment.copies_per_image=0"))
    assert main(["evaluate", str(version), *option]) == 2
    assert message in capsys.readouterr().err
