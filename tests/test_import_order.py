"""Each data module imports on its own, first, in a fresh interpreter: the data sources and the
op catalog import each other (the catalog registers the sources), and an API user may start
from either end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DATA = sorted(f"nndsl.data.{p.stem}" for p in
              (Path(__file__).resolve().parents[1] / "nndsl" / "data").glob("*.py")
              if p.stem != "__init__")


@pytest.mark.parametrize("module", [*DATA, "nndsl.ops", "nndsl.errors"])
def test_a_module_imports_first(module: str) -> None:
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
