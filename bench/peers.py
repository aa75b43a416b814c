"""The frameworks a user might pick instead of nndsl, measured by case 1 when installed
(`pip install -e '.[bench]'`): Keras 3 on its torch backend and Lightning. Neither is a
dependency of nndsl; a peer that is not installed gets a row that says so instead of a time."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.models import Workload

Fit = Callable[[Workload, int, str], Any]


@dataclass(frozen=True)
class Peer:
    """`label` in the table; `module` is what must be importable, `distribution` the package
    that brings it, `runner` the bench module whose `fit(workload, epochs, device)` trains."""

    label: str
    module: str
    distribution: str
    runner: str

    def version(self) -> str | None:
        """The installed version, or None when the peer cannot be imported here."""
        if importlib.util.find_spec(self.module) is None:
            return None
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return None

    def fit(self) -> Fit:
        return importlib.import_module(self.runner).fit


PEERS = (Peer("Keras 3 fit", "keras", "keras", "bench.keras_peer"),
         Peer("Lightning fit", "pytorch_lightning", "pytorch-lightning", "bench.lightning_peer"))
NOT_INSTALLED = "not installed"


def installed() -> dict[str, str]:
    """Package -> version of each peer this environment has."""
    return {p.distribution: v for p in PEERS if (v := p.version()) is not None}
