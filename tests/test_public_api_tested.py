"""Every public function and class of the library has at least one direct test: its name
appears in a test module of its package's folder (``tests/<package>/``)."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def public_names(module: Path) -> list[str]:
    """Top-level functions and classes not named with a leading underscore; the pydantic
    models of the manifest and the config are data, checked by their schema tests."""
    tree = ast.parse(module.read_text())
    return [
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.ClassDef))
        and not node.name.startswith("_")
        and not (isinstance(node, ast.ClassDef) and _is_model(node))
    ]


def _is_model(node: ast.ClassDef) -> bool:
    bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
    return bool(bases & {"BaseModel", "Strict", "_Strict", "_Open"})


def untested() -> dict[str, list[str]]:
    missing: dict[str, list[str]] = {}
    for module in sorted((ROOT / "pipeline").rglob("*.py")):
        relative = module.relative_to(ROOT / "pipeline")
        package = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        folder = ROOT / "tests" / package
        text = "\n".join(p.read_text() for p in folder.rglob("test_*.py")) if folder.is_dir() else ""
        names = [n for n in public_names(module) if not re.search(rf"\b{re.escape(n)}\b", text)]
        if names:
            missing[str(relative)] = names
    return missing


def test_every_public_function_has_a_direct_test():
    assert untested() == {}


if __name__ == "__main__":
    for module, names in untested().items():
        print(f"{module}: {', '.join(names)}")
