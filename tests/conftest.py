"""Shared fixtures: specs on disk, and running the CLI in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.nn"))
LANGUAGE_EXAMPLES = sorted((ROOT / "tests" / "language_examples").glob("*.nn"))



@pytest.fixture
def write_spec(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write a spec into a temp dir and return its path."""

    def write(text: str, name: str = "spec.nn") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
