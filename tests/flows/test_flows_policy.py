"""flows/policy.py: what a run of an ``expand serve`` deployment may change."""

from __future__ import annotations

import json

import pytest

from cli.main import main
from flows.policy import POLICY_ENV, serve_policy, served_parameters
from pipeline.core.errors import ConfigError


@pytest.fixture
def served(tmp_path, monkeypatch):
    config = tmp_path / "nightly.yaml"
    config.write_text("seed: 1\n")
    policy = serve_policy(str(config), ["augment.copies_per_image=1"], ["synthesis.gate.*", "seed"])
    monkeypatch.setenv(POLICY_ENV, json.dumps(policy))
    return config


def test_outside_a_served_deployment_parameters_pass_as_given(monkeypatch):
    monkeypatch.delenv(POLICY_ENV, raising=False)
    assert served_parameters("any.yaml", ["output.root=/x"]) == ("any.yaml", ["output.root=/x"])


def test_a_served_run_gets_the_served_config_and_overrides_plus_allowed_ones(served):
    assert served_parameters(None, []) == (str(served), ["augment.copies_per_image=1"])
    assert served_parameters(str(served), ["augment.copies_per_image=1", "seed=3"]) == (
        str(served),
        ["augment.copies_per_image=1", "seed=3"],
    )
    assert served_parameters(None, ["synthesis.gate.min_gain=0.01"])[1][-1] == "synthesis.gate.min_gain=0.01"


@pytest.mark.parametrize(
    "config_path, overrides, said",
    [
        ("/etc/other.yaml", [], "may not name another"),
        (None, ["source.path=/etc"], "'source.path'"),
        (None, ["output.root=/tmp/elsewhere"], "'output.root'"),
        (None, ["output.remote=s3://theirs"], "'output.remote'"),
        (None, ["augment.copies_per_image=9"], "'augment.copies_per_image'"),  # fixed, not allowed
        (None, ["synthesis.gate=null"], "'synthesis.gate'"),  # a whole section: more than allowed
    ],
)
def test_a_served_run_cannot_change_what_it_reads_or_writes(served, config_path, overrides, said):
    with pytest.raises(ConfigError, match=said):
        served_parameters(config_path, overrides)


def test_keys_that_import_code_are_never_taken_from_a_run(tmp_path, monkeypatch):
    policy = serve_policy(str(tmp_path / "c.yaml"), [], ["*"])  # a wildcard may cover them...
    monkeypatch.setenv(POLICY_ENV, json.dumps(policy))
    for override in (
        "synthesis.features=evil:extract",
        "augment.custom_transforms=['evil:T']",
        'synthesis={"features": "evil:extract"}',
        "augment={}",
    ):
        with pytest.raises(ConfigError, match="does not let a run set"):  # ...but they are refused
            served_parameters(None, [override])
    assert served_parameters(None, ["seed=2"])[1] == ["seed=2"]
    for pattern in ("synthesis.features", "augment", "augment.custom_transforms"):
        with pytest.raises(ConfigError, match="import code"):
            serve_policy("c.yaml", [], [pattern])


def test_expand_serve_refuses_an_allow_naming_code_before_prefect_starts(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("seed: 1\n")
    assert main(["serve", str(config), "--cron", "0 3 * * *", "--allow", "synthesis.features"]) == 2
    assert "runs may never set" in capsys.readouterr().err


def test_the_expand_flow_applies_the_policy(prefect_harness, served, tmp_path):
    from flows.expand import expand

    with pytest.raises(ConfigError, match="'source.path'"):
        expand(config_path=None, overrides=["source.path=/etc"])
    assert not (tmp_path / "out").exists()


def test_a_run_cannot_replace_what_the_deployment_sets(tmp_path, monkeypatch):
    policy = serve_policy(str(tmp_path / "c.yaml"), ["seed=1"], ["seed", "augment.*"])
    monkeypatch.setenv(POLICY_ENV, json.dumps(policy))
    with pytest.raises(ConfigError, match="this deployment sets 'seed' itself"):
        served_parameters(None, ["seed=2"])
    assert served_parameters(None, ["seed=1", "augment.copies_per_image=2"])[1] == [
        "seed=1",
        "augment.copies_per_image=2",
    ]
