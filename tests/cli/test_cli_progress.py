"""The command line's progress bars on a terminal (cli/progress.py)."""

import re

from cli.main import main
from conftest import screen


def test_cli_draws_bars_on_a_terminal_only(prefect_harness, tiny_config, tmp_path, capsys, monkeypatch):
    source = tiny_config().source.path
    args = ["run", "/dev/null", "--set", "source.kind=imagefolder", "--set", f"source.path={source}"]
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    assert main([*args, "--set", f"output.root={tmp_path / 'a'}", "--set", "augment.copies_per_image=2"]) == 0
    lines = screen(capsys.readouterr().err)
    assert any(re.match(r"ingest +\[#+\] +15/15 images +done in \d:\d\d", line) for line in lines)
    assert any(re.match(r"writing +\[#+\] +\d+/\d+ rows", line) for line in lines)
    assert main([*args, "--set", f"output.root={tmp_path / 'b'}", "--quiet"]) == 0
    assert "[####" not in capsys.readouterr().err
