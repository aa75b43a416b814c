"""One module per trainer; each registers itself on import (nndsl/training/registry.py).
Adding a trainer is adding a module here: every module of this package is imported."""

from __future__ import annotations

import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
