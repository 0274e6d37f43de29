"""The code base stays lint-clean and keeps its layering: import contracts hold, the library
never imports Prefect, the reader pulls in no orchestration or GAN code."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    path = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(path).exists():
        pytest.skip(f"{name} is not installed")
    return path


def test_ruff_clean():
    done = subprocess.run(
        [_tool("ruff"), "check", "pipeline", "flows", "cli", "tests", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_import_contracts_hold():
    done = subprocess.run([_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert "0 broken" in done.stdout


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


def test_the_reader_imports_no_orchestration_and_no_gan():
    script = (
        "import json, sys; import pipeline.dataset; "
        "print(json.dumps(sorted({m.split('.')[0] if not m.startswith('pipeline.') else m "
        "for m in sys.modules})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = json.loads(done.stdout)
    assert not [m for m in loaded if m in ("prefect", "prefect_dask", "dask", "distributed", "flows", "cli")]
    assert not [m for m in loaded if m.startswith(("pipeline.gan", "pipeline.build", "pipeline.augment"))]


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


def test_the_configuration_reference_documents_every_key():
    from pipeline.config import Config

    reference = (ROOT / "docs" / "config.md").read_text()
    assert [key for key in _leaf_keys(Config) if f"`{key}`" not in reference] == []
