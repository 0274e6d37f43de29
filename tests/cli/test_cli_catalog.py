"""cli/catalog.py: ``verify``, ``show`` and ``push`` from the command line."""

import json

import fsspec

from cli.main import main
from pipeline.build import build
from pipeline.version import remote
from pipeline.version.manifest import load_manifest


def test_verify_cli_exit_codes(tiny_config, capsys):
    version, _ = build(tiny_config())
    assert main(["verify", str(version)]) == 0
    assert "OK" in capsys.readouterr().out
    (version / "extra.txt").write_text("smuggled")
    assert main(["verify", str(version)]) == 1
    assert "extra.txt: present but not listed" in capsys.readouterr().out
    assert main(["verify", str(version.parent)]) == 1
    assert "not a dataset version" in capsys.readouterr().err


def test_show_lists_the_rows_of_each_class(tiny_config, capsys, monkeypatch):
    version, _ = build(tiny_config("augment.classes={dog: {copies_per_image: 4}}"))
    assert main(["show", str(version)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines.index("  class  test  train r/a/s")
    per_class = load_manifest(version).splits
    for line in lines[header + 1 :]:
        name, test, train = line.split()
        assert int(test) == per_class["test"].by_origin_class["real"][name]
        real, augmented, synthetic = map(int, train.split("/"))
        assert augmented == (4 if name == "dog" else 2) * real and synthetic == 0
    assert [line.split()[0] for line in lines[header + 1 :]] == ["cat", "dog", "eel"]
    assert main(["show", str(version), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["rows_per_class"]
    assert shown == {split: info.by_origin_class for split, info in per_class.items()}
    from cli import catalog as catalog_cli

    monkeypatch.setattr(catalog_cli, "_CLASS_LIMIT", 2)  # more classes than a screen: a pointer
    assert main(["show", str(version)]) == 0
    out = capsys.readouterr().out
    assert "classes   3: rows per class in --json and the version's README.md" in out and " r/a/s" not in out


def test_push_and_verify_from_the_command_line(tiny_config, bucket, capsys):
    version, _ = build(tiny_config())
    fs = fsspec.filesystem("memory")
    name = load_manifest(version).name
    latest = f"{fsspec.core.url_to_fs(bucket)[1]}/{name}/latest"
    assert main(["push", str(version), bucket]) == 0
    url = capsys.readouterr().out.strip()
    assert url == remote.remote_url(bucket, name, version.name) and not fs.exists(latest)
    assert main(["verify", url]) == 0 and "OK:" in capsys.readouterr().out
    assert main(["push", str(version), bucket, "--latest"]) == 0
    assert fs.cat_file(latest).decode().strip() == version.name
    assert main(["push", str(version), "nosuch://bucket"]) == 1
    assert "push failed" in capsys.readouterr().err
