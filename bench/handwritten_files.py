"""The indexed hand-written loop of bench/handwritten.py as a script that also writes what
`nndsl train` writes, the way a user would write it: checkpoints when `nndsl train` writes them
(before the first epoch, after an epoch once 10 s have passed since the last, after the last
epoch: model and optimizer state_dicts to a temporary file, fsynced and renamed into place);
at the end metrics.csv, a matplotlib PNG per metric (training and validation together), the
weights, and an ONNX export (`torch.onnx.export`, dynamo=False) checked against eager on the
held-out rows with onnxruntime. It draws no picture of the network: a hand-written script has
none.

Case 1 sets `nndsl train` beside it without a goal: the difference from the bare indexed loop
is what the files cost when a script writes them by hand.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench import handwritten
from bench.inference import torch_model
from bench.models import Workload
from nndsl.training.run import CHECKPOINT_SECONDS


def indexed_script(w: Workload, epochs: int, device: str, out: Path) -> list[float]:
    """The indexed loop with its checkpoints, then metrics, plots, weights and the checked
    export; returns the epoch losses."""
    out.mkdir(parents=True, exist_ok=True)
    s = handwritten.setup(w, device)
    rows: list[dict[str, float]] = []
    _checkpoint(s, 0, out / "checkpoint.pt")
    saved = time.monotonic()

    def after(epoch: int, row: dict[str, float]) -> None:
        nonlocal saved
        rows.append({"epoch": epoch, **row})
        if epoch == epochs or time.monotonic() - saved >= CHECKPOINT_SECONDS:
            _checkpoint(s, epoch, out / "checkpoint.pt")
            saved = time.monotonic()

    losses = handwritten.indexed_loop(w, epochs, device, s, after)
    _metrics(rows, out / "metrics.csv")
    _plots(rows, out)
    torch.save(s.model.state_dict(), out / "weights.pt")
    _export(s, w.recipe.classifier, out / "model.onnx")
    return losses


def _checkpoint(s: handwritten.Setup, epoch: int, path: Path) -> None:
    part = path.with_suffix(".part")
    with open(part, "wb") as f:
        torch.save({"epoch": epoch, "model": s.model.state_dict(),
                    "optimizer": s.optimizer.state_dict()}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, path)


def _metrics(rows: list[dict[str, float]], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _plots(rows: list[dict[str, float]], out: Path) -> None:
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in rows]
    for name in dict.fromkeys(k.removeprefix("val_") for k in rows[0] if k != "epoch"):
        fig = Figure(figsize=(6.4, 4.0))
        ax = fig.subplots()
        for key in (name, f"val_{name}"):
            if key in rows[0]:
                ax.plot(epochs, [r[key] for r in rows], label=key)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(True)
        ax.legend()
        fig.savefig(out / f"{name}.png")


def _export(s: handwritten.Setup, classifier: bool, path: Path) -> None:
    import onnxruntime as ort

    model = (nn.Sequential(s.model, nn.Softmax(dim=-1)) if classifier else s.model).eval()
    rows = s.val[0] if s.val is not None else s.train[0]
    onnx = torch_model(model, rows[:1].cpu())
    path.write_bytes(onnx)
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": rows.cpu().numpy()})
    with torch.no_grad():
        want = model(rows).cpu().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
