"""What a run directory holds, each file written whole or not at all: metrics.csv, loss.png,
weights.npz, config.json, and model.onnx checked against NumPy on held-out rows."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from nndsl.errors import NndslError
from nndsl.files import atomic_write, atomic_write_text
from nndsl.ir import Call, Graph, Program
from nndsl.trainer import History, NumpyEngine, Trainer


def save_history(path: Path, history: History) -> None:
    """metrics.csv and loss.png: also written when a run stops early, to show how far it got."""
    from nndsl.plot import plot_losses

    atomic_write_text(path / "metrics.csv", history.csv())
    atomic_write(path / "loss.png", plot_losses({k: history.series(k)
                                                 for k in ("loss", "val_loss")}))


def save_run(path: Path, trainer: Trainer) -> None:
    """The history, weights.npz (one array per `<label>.<param>`) and the run's config."""
    save_history(path, trainer.history)
    atomic_write(path / "weights.npz", lambda f: np.savez(
        f, **{k: np.asarray(v) for k, v in trainer.weights.items()}), sync=True)
    config = {key: str(value) if isinstance(value, Call) else value
              for key, value in trainer.spec.settings}
    atomic_write_text(path / "config.json", json.dumps({"model": trainer.model.name, **config},
                                                       indent=2, default=str))


def class_labels(graph: Graph, data: Any) -> list[str] | None:
    """The classes a classifier's first output ranks, when its first target holds class ids."""
    targets = [k for k in data.train if k not in dict(graph.inputs)]
    out = graph.types()[graph.outputs[0]]
    if not targets or not out.shape or not isinstance(out.shape[-1], int):
        return None
    y = np.concatenate([part[targets[0]] for part in (data.train, data.val) if part])
    if y.ndim != 1 or not np.all(y == np.round(y)):
        return None
    classes = np.unique(y.astype(np.int64))
    if classes.min() < 0 or classes.max() >= out.shape[-1] or out.shape[-1] < 2:
        return None
    return [str(c) for c in range(out.shape[-1])]


def export_run(program: Program, spec_file: str, graph: Graph, weights: dict[str, np.ndarray],
               data: Any, path: Path, quiet: bool) -> None:
    """model.onnx of the trained weights, checked against NumPy on held-out rows first.

    A few held-out input rows are saved as heldout_x.npy, for `nndsl predict`.
    """
    from nndsl.errors import SourceMap
    from nndsl.export import export_onnx

    rows = data.val or data.train
    feeds = {n: rows[n][:64] for n, _ in graph.inputs}
    try:
        model = export_onnx(program, SourceMap({program.file: Path(spec_file).read_text(
            encoding="utf-8")}), graph, weights)
    except NndslError as e:
        if not quiet:
            print(f"model.onnx not written: {e.message}", file=sys.stderr)
        return
    from nndsl.backends.onnx.runtime import run_onnx

    want = NumpyEngine(graph).predict(feeds, weights)
    got = run_onnx(model, feeds)
    for name, value in zip(graph.outputs, got, strict=True):
        worst = float(np.max(np.abs(value - want[name]))) if value.size else 0.0
        if worst > 1e-4:
            raise NndslError(f"the exported model disagrees with NumPy on '{name}' by {worst:.3g}")
    labels = class_labels(graph, data)
    if labels is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = "class_labels", ",".join(labels)
    atomic_write(path / "model.onnx", model.SerializeToString())
    if len(graph.inputs) == 1:
        atomic_write(path / "heldout_x.npy",
                     lambda f: np.save(f, feeds[graph.inputs[0][0]][:5]))
