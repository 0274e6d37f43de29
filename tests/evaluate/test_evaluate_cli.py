"""cli/evaluate.py: the options of ``expand evaluate`` and their check before Prefect starts."""

import argparse
import json

import pytest
import torch

from cli import evaluate as cli_evaluate
from cli.main import main
from pipeline.build import build


def parser():
    top = argparse.ArgumentParser(prog="expand")
    cli_evaluate.add_commands(top.add_subparsers(dest="command"))
    return top


def test_options_and_their_defaults():
    args = parser().parse_args(["evaluate", "v-1"])
    assert cli_evaluate._options(args) == {
        "seeds": 3,
        "epochs": 30,
        "real_per_class": None,
        "device": "auto",
        "grid": 2,
    }
    assert cli_evaluate._options(parser().parse_args(["evaluate", "v-1", "--grid", "1"]))["grid"] == 1
    help_text = parser()._subparsers._group_actions[0].choices["evaluate"].format_help()
    assert "(default 3)" in help_text and "(default 30)" in help_text


@pytest.mark.parametrize(
    "option, message",
    [
        (["--epochs", "0"], "evaluation needs seeds >= 1 and epochs >= 1, got 3, 0"),
        (["--real-per-class", "0"], "real_per_class must be at least 1, got 0"),
        (["--device", "tpu"], "device must be auto, cpu, cuda or mps, got 'tpu'"),
        (["--grid", "0"], "grid"),
    ],
)
def test_a_bad_option_is_a_usage_error(tiny_config, capsys, option, message):
    from pipeline.build import build

    version, _ = build(tiny_config("augment.copies_per_image=0"))
    assert main(["evaluate", str(version), *option]) == 2
    assert message in capsys.readouterr().err


def test_evaluate_cli_runs_the_flow(prefect_harness, tiny_config, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same figures on a GPU host
    version, _ = build(tiny_config())
    code = main(
        [
            "evaluate",
            str(version),
            "--seeds",
            "1",
            "--epochs",
            "1",
            "--real-per-class",
            "2",
            "--grid",
            "1",
            "--json",
        ]
    )
    assert code == 0
    document = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert document["settings"]["real_per_class"] == 2
    assert document["settings"]["grid"] == document["classifier"]["grid"] == 1  # through the flow
    assert (document["settings"]["device"], document["classifier"]["device"]) == ("auto", "cpu")
    assert document["classifier"]["cpu_threads"] == torch.get_num_threads()
    assert document["results"]["real"]["rows"] == 6  # 2 per class, 3 classes
    assert document["results"]["real+augmented"]["rows"] == 18
    assert document["results"]["synthetic only (CAS)"] == {"rows": 0}
    # No synthetic rows: that subset is real+augmented, trained once.
    same = document["results"]["real+augmented+synthetic"]
    assert same == {**document["results"]["real+augmented"], "same_rows_as": "real+augmented"}
    assert (version / "attachments" / "evaluation-k2.md").is_file()
    capsys.readouterr()
    assert main(["show", str(version)]) == 0
    assert "attachments/evaluation-k2.json" in capsys.readouterr().out
    assert main(["evaluate", str(version), "--seeds", "0"]) == 2
    assert main(["evaluate", str(version), "--device", "mps"]) == 2  # none here: said before Prefect starts
    assert "--device: mps is not available on this machine" in capsys.readouterr().err
