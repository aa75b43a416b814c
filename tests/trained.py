"""A spec trained by `nndsl train` into a run directory, read back: its weights and the loss
of every epoch (shared by the tests that check what training computed)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from nndsl.cli import main


def train_run(spec: Path, run: Path, *options: str) -> tuple[dict[str, np.ndarray],
                                                             list[float]]:
    """`nndsl train SPEC --run-dir RUN --quiet OPTIONS...` (on the CPU), then weights.npz by
    name and metrics.csv's epoch losses (none for a trainer that records other columns)."""
    assert main(["train", str(spec), "--device", "cpu", "--run-dir", str(run), "--quiet",
                 *options]) == 0
    with np.load(run / "weights.npz") as archive:
        weights = {k: archive[k] for k in archive.files}
    with (run / "metrics.csv").open(encoding="utf-8") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)
                  if r["kind"] == "epoch" and r.get("loss")]  # a GAN records its own
    return weights, losses
