"""expand run --dry-run: what a build would publish, from the source itself, writing nothing."""

import json

from cli.main import main
from pipeline.build import build
from pipeline.build.context import dataset_dir
from pipeline.build.dry_run import dry_run
from pipeline.version.manifest import load_manifest

UNBALANCED = ["augment.copies_per_image=null", "augment.target_per_class=6"]


def nonzero(rows: dict) -> dict:
    return {
        split: {origin: {c: n for c, n in by_class.items() if n} for origin, by_class in origins.items()}
        for split, origins in rows.items()
    }


def test_a_dry_run_says_what_the_build_publishes_and_leaves_nothing(tiny_config):
    config = tiny_config(*UNBALANCED, "augment.classes={dog: {copies_per_image: 3}}")
    planned = dry_run(config)
    assert not planned["published"] and planned["class_names"] == ["cat", "dog", "eel"]
    assert [p.name for p in dataset_dir(config).iterdir()] == [".lock"]  # no staging, no version
    version, created = build(config)
    assert created and version.name == planned["version_id"] and str(version) == planned["version_dir"]
    manifest = load_manifest(version)
    published = {split: info.by_origin_class for split, info in manifest.splits.items()}
    assert nonzero(planned["rows"]) == nonzero(published)
    train = planned["rows"]["train"]
    assert train["augmented"]["dog"] == 3 * train["real"]["dog"]  # its own count
    assert train["augmented"]["cat"] == 6 - train["real"]["cat"]  # filled up to the target
    written = sum(f.bytes for f in manifest.files)
    assert written <= planned["space"]["needed"] and not planned["space"]["short"]
    assert planned["notes"] == []
    again = dry_run(config)
    assert again["published"] and nonzero(again["rows"]) == nonzero(published) and "space" not in again


def test_the_counts_stages_decide_are_given_at_their_most(tiny_config):
    config = tiny_config(
        "augment.tune.enabled=true",
        "augment.tune.copies=[1, 4]",
        "synthesis.enabled=true",
        "synthesis.per_class=3",
        "synthesis.gate.ratios=[0.5]",
    )
    planned = dry_run(config)
    train = planned["rows"]["train"]
    for name, real in train["real"].items():
        assert train["augmented"][name] == 4 * real  # the largest count tune may choose
        assert train["synthetic"][name] == min(3, round(0.5 * real + 1e-9))  # capped by the gate's ratio
    assert [note.split(":")[0] for note in planned["notes"]] == ["augmented rows", "synthetic rows"]
    ungated = dry_run(
        tiny_config("synthesis.enabled=true", "synthesis.per_class=3", "synthesis.gate.enabled=false")
    )
    assert set(ungated["rows"]["train"]["synthetic"].values()) == {3}


def test_the_command_line_dry_run(tiny_config, capsys):
    config = tiny_config(*UNBALANCED)
    args = ["run", "/dev/null", "--dry-run"]
    for key, value in (
        ("source.kind", "imagefolder"),
        ("source.path", config.source.path),
        ("output.root", config.output.root),
        ("augment.target_per_class", 6),
        ("split.test_fraction", 0.34),
    ):
        args += ["--set", f"{key}={value}"]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["published"] is False and result["rows"]["train"]["real"] == {"cat": 4, "dog": 3, "eel": 3}
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"a run would publish version {result['version_id']}; nothing was written" in out
    assert "  cat       2        4/2/0" in out and "disk: this version needs about" in out
    assert out.strip().splitlines()[-1] == result["version_dir"]
    assert not any(p.name.startswith("v-") for p in dataset_dir(config).iterdir())
