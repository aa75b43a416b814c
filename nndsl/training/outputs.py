"""What a run directory holds, each file written whole or not at all: metrics.csv, loss.png,
weights.npz, config.json, and model.onnx checked against NumPy on held-out rows."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from nndsl.errors import NndslError
from nndsl.files import atomic_write, atomic_write_text
from nndsl.ir import NUMPY_DTYPE, Call, Graph, Program
from nndsl.npz import write_npz
from nndsl.training.session import Session
from nndsl.training.stages import History


def save_tables(path: Path, history: History, diagnostics: History | None = None) -> None:
    """metrics.csv, and diagnostics.csv when diagnostics were measured: also written when a
    run stops early, to show how far it got."""
    atomic_write_text(path / "metrics.csv", history.csv())
    if diagnostics is not None and diagnostics.rows:
        atomic_write_text(path / "diagnostics.csv", diagnostics.csv())


def save_plots(path: Path, history: History, diagnostics: History | None = None) -> None:
    """loss.png, plots/METRIC.png and, with diagnostics, plots/diagnostics.png."""
    for file, draw in plot_jobs(history, diagnostics):
        save_plot(path, file, draw)


def plot_jobs(history: History, diagnostics: History | None = None
              ) -> list[tuple[str, Callable[[], bytes]]]:
    """Each plot of `save_plots`: its file, and what draws it (each one on its own, so that
    several can be drawn at once)."""
    from nndsl.plot import diagnostics_plot, history_files, history_plot

    rows = history.rows
    jobs: list[tuple[str, Callable[[], bytes]]] = [
        (file, partial(history_plot, rows, name, keys))
        for file, (name, keys) in history_files(rows).items()]
    if diagnostics is not None and diagnostics.rows:
        jobs.append(("plots/diagnostics.png", partial(diagnostics_plot, diagnostics.rows)))
    return jobs


def save_plot(path: Path, file: str, draw: Callable[[], bytes]) -> None:
    (path / file).parent.mkdir(exist_ok=True)
    atomic_write(path / file, draw())


def weights_file(model: str, main: str) -> str:
    """weights.npz holds the exported model's weights; another trained model's (a GAN's
    discriminator) go to MODEL.weights.npz beside it."""
    return "weights.npz" if model == main else f"{model}.weights.npz"


def save_run(path: Path, session: Session, weights: dict[str, dict[str, np.ndarray]],
             config: dict[str, Any] | None = None) -> None:
    """The weights (one array per `<label>.<param>`) and the run's config
    (nndsl/training/records.py makes it; without one, the train block's settings). The
    history is the painter's (nndsl/training/painter.py): its tables at once, its plots beside
    the rest of the run's files."""
    for model, arrays in weights.items():
        atomic_write(path / weights_file(model, session.spec.model), lambda f, a=arrays:
                     write_npz(f, {k: np.asarray(v) for k, v in a.items()}), sync=True)
    config = config or {"model": session.spec.model, **{
        key: str(value) if isinstance(value, Call) else value
        for key, value in session.spec.settings}}
    atomic_write_text(path / "config.json", json.dumps(config, indent=2, default=str))


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


def sample_feeds(graph: Graph, data: Any, rows: int = 64) -> dict[str, np.ndarray]:
    """Inputs to check an export on: held-out rows where the data has the model's inputs, else
    draws from N(0, 1) (a generator's latent z) in the declared shape."""
    from nndsl.check import concrete

    part = data.val or data.train
    n = min(rows, data.rows)
    rng = np.random.default_rng(0)
    return {name: part[name][:n] if name in part else
            rng.standard_normal(concrete(ty.shape, {"batch": n})).astype(NUMPY_DTYPE[ty.dtype])
            for name, ty in graph.inputs}


def export_run(program: Program, spec_file: str, run: Any, weights: dict[str, dict[str, Any]],
               data: Any, path: Path, quiet: bool) -> None:
    """model.onnx of the trained model (and NAME.onnx for each other model its trainers
    export), each checked against NumPy first. A few held-out input rows are saved as
    heldout_x.npy, for `nndsl predict`."""
    main = program.model(run.spec.model)
    exports = [run.spec.model, *(m for t in run.trainers for m in t.exports())]
    for name in dict.fromkeys(exports):
        graph = program.model(name)
        file = "model.onnx" if name == main.name else f"{name}.onnx"
        feeds = sample_feeds(graph, data)
        if _export(program, spec_file, graph, weights[name], feeds, data, path / file, quiet) \
                and name == main.name and len(graph.inputs) == 1:
            rows = data.binding.raw(graph.inputs[0][0], feeds[graph.inputs[0][0]][:5])
            atomic_write(path / "heldout_x.npy", lambda f, x=rows: np.save(f, x))  # file units


def _export(program: Program, spec_file: str, graph: Graph, weights: dict[str, np.ndarray],
            feeds: dict[str, np.ndarray], data: Any, file: Path, quiet: bool) -> bool:
    from nndsl.errors import SourceMap
    from nndsl.export import export_onnx

    try:
        model = export_onnx(program, SourceMap({program.file: Path(spec_file).read_text(
            encoding="utf-8")}), graph, weights)
    except NndslError as e:
        if not quiet:
            print(f"{file.name} not written: {e.message}", file=sys.stderr)
        return False
    from nndsl.backends.numpy.engine import NumpyEngine
    from nndsl.backends.onnx.runtime import run_onnx

    want = NumpyEngine().predict(graph, feeds, weights)
    got = run_onnx(model, feeds)
    for name, value in zip(graph.outputs, got, strict=True):
        worst = float(np.max(np.abs(value - want[name]))) if value.size else 0.0
        if worst > 1e-4:
            raise NndslError(f"the exported model disagrees with NumPy on '{name}' by {worst:.3g}")
    from nndsl.export import describe_data  # labels, columns, standardisation folded in

    target = next((k for k in data.train if k not in dict(graph.inputs)), None)
    describe_data(model, data.binding, class_labels(graph, data), target)
    atomic_write(file, model.SerializeToString())
    return True


def network_picture(program: Program, model: str, path: Path) -> str | None:
    """Draw network.svg; returns why it was not drawn (a model too big to draw, a folder it
    cannot write to), else None."""
    from nndsl.graph_picture import draw_network

    drawing = path / "network.tmp.svg"
    try:
        draw_network(program, program.model(model), drawing)
    except NndslError as e:
        drawing.unlink(missing_ok=True)
        return e.message
    drawing.replace(path / "network.svg")
    return None
