"""The code base stays lint-clean and keeps its layering (pipeline/ never imports prefect)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    done = subprocess.run(
        [ruff, "check", "pipeline", "flows", "tests", "bench"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_library_does_not_import_prefect():
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "pipeline").rglob("*.py")
        if any(
            line.lstrip().startswith(("import prefect", "from prefect"))
            for line in path.read_text().splitlines()
        )
    ]
    assert offenders == []


def _leaf_keys(model, prefix: str = ""):
    """Dotted names of every config key that holds a value (sections are descended into)."""
    import typing

    from pydantic import BaseModel

    for name, field in model.model_fields.items():
        sections = [
            t
            for t in (field.annotation, *typing.get_args(field.annotation))
            if isinstance(t, type) and issubclass(t, BaseModel)
        ]
        if sections and name != "classes":  # augment.classes maps class names to sections
            yield from _leaf_keys(sections[0], f"{prefix}{name}.")
        else:
            yield prefix + name


def test_readme_documents_every_config_key():
    from pipeline.config import Config

    readme = (ROOT / "README.md").read_text()
    assert [key for key in _leaf_keys(Config) if f"`{key}`" not in readme] == []
