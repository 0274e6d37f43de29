"""The manifest's JSON Schema, generated from :class:`pipeline.version.model.Manifest`.

``python -m pipeline.version.schema > docs/manifest.schema.json`` writes the shipped copy;
a test fails when that copy is stale.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.version.model import SCHEMA_VERSION, Manifest

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def manifest_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) a version's ``manifest.json`` satisfies."""
    schema = Manifest.model_json_schema(mode="validation")
    schema["$schema"] = DIALECT
    schema["title"] = f"dataset-expand manifest.json (schema_version {SCHEMA_VERSION})"
    return schema


def schema_text() -> str:
    """:func:`manifest_schema` as the text of ``docs/manifest.schema.json`` (sorted keys)."""
    return json.dumps(manifest_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(schema_text(), end="")
