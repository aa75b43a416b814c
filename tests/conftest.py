"""Shared fixtures: specs on disk, and running the CLI in-process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
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


def assert_arrays_match(got: Any, want: Any, tolerance: dict[str, float], what: str) -> None:
    """A backend's array against NumPy's: same shape and dtype; integers exactly, floats within
    `tolerance` (rtol, atol) — each parity suite states its own."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, NumPy gives {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, NumPy gives {want.dtype}"
    if want.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want, err_msg=what)
    else:
        np.testing.assert_allclose(got, want, **tolerance, err_msg=what)
