"""The spec's polycrate.io YAML examples (examples/*.yaml) for tests that use them as inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = REPO_ROOT / "examples"
SANDBOX_DIR = EXAMPLES_DIR.parent / "sandbox" / "manifests"


def documents(directory: Path) -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) for every polycrate.io object in the directory's YAML files."""
    found = []
    for path in sorted(directory.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document and str(document.get("apiVersion", "")).startswith("polycrate.io/"):
                found.append((path.name, document))
    return found


def example(file_name: str) -> dict[str, Any]:
    """The object in one verbatim example file, e.g. `organization-acme-corp.yaml`."""
    return yaml.safe_load((EXAMPLES_DIR / file_name).read_text(encoding="utf-8"))
