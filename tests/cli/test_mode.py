"""``expand run`` runs in-process without a Prefect API and as a flow run with one (or
``--flow``); both publish the same version."""

import json

import pytest

from cli.main import main
from cli.mode import FLOW, IN_PROCESS, prefect_api_url, run_mode
from pipeline.version.manifest import load_manifest


@pytest.fixture
def no_prefect_api(monkeypatch, tmp_path):
    """No API in the environment, an empty Prefect home, and a working directory without
    prefect.toml."""
    for name in ("PREFECT_API_URL", "PREFECT_PROFILE", "PREFECT_PROFILES_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def test_no_api_configured_runs_in_process(no_prefect_api, tiny_config):
    assert prefect_api_url() is None
    assert run_mode(tiny_config(), flow=False) == IN_PROCESS
    assert run_mode(tiny_config(), flow=True) == FLOW
    assert run_mode(tiny_config("runner.kind=dask"), flow=False) == FLOW  # Prefect's Dask task runner


def test_an_api_url_in_the_environment_profile_or_prefect_toml_means_a_flow_run(
    no_prefect_api, tiny_config, tmp_path, monkeypatch
):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "profiles.toml").write_text(
        'active = "team"\n[profiles.team]\nPREFECT_API_URL = "http://team:4200/api"\n'
    )
    assert prefect_api_url() == "http://team:4200/api"
    assert run_mode(tiny_config(), flow=False) == FLOW
    monkeypatch.setenv("PREFECT_PROFILE", "other")  # another profile, without a URL
    assert prefect_api_url() is None
    (tmp_path / "prefect.toml").write_text('[api]\nurl = "http://local:4200/api"\n')
    assert prefect_api_url() == "http://local:4200/api"
    monkeypatch.setenv("PREFECT_API_URL", "http://env:4200/api")
    assert prefect_api_url() == "http://env:4200/api"


def test_both_modes_publish_the_same_version(prefect_harness, tiny_config, tmp_path, capsys):
    source = tiny_config().source.path
    args = ["run", "/dev/null", "--set", "source.kind=imagefolder", "--set", f"source.path={source}"]
    args += ["--set", "augment.copies_per_image=2", "--json"]
    results = {}
    for mode, extra in ((IN_PROCESS, []), (FLOW, ["--flow"])):
        assert main([*args, "--set", f"output.root={tmp_path / mode}", *extra]) == 0
        results[mode] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {r["mode"] for r in results.values()} == {IN_PROCESS, FLOW}
    assert results[IN_PROCESS]["version_id"] == results[FLOW]["version_id"]
    assert results[IN_PROCESS]["splits"] == results[FLOW]["splits"]
    runs = {mode: load_manifest(r["version_dir"]).run for mode, r in results.items()}
    assert runs[IN_PROCESS].orchestrator == IN_PROCESS
    assert runs[FLOW].orchestrator == "prefect" and runs[FLOW].flow_run_id


def test_the_summary_says_which_mode_ran(no_prefect_api, tiny_config, tmp_path, capsys):
    source = tiny_config().source.path
    args = ["run", "/dev/null", "--set", "source.kind=imagefolder", "--set", f"source.path={source}"]
    assert main([*args, "--set", f"output.root={tmp_path / 'o'}"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("version v-") and first.endswith("(in-process)")
