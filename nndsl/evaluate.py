"""`nndsl evaluate`: score a trained model on labelled rows — the loss (when a run directory
gives the spec), every metric that fits the model's output, and for classifiers the confusion
matrix and per-class precision, recall and F1.

A run directory is evaluated as it trained: its spec.nn binds the file to the inputs and
targets as its train block binds its data (a CSV's `target` columns, an .npz's arrays by
name), and the NumPy reference runs the model with weights.npz, so the loss is the one
metrics.csv records as val_loss. A bare ONNX file is run by onnxruntime: its inputs are read
by their ONNX names and the target is `--target NAME` (a CSV column or an .npz array)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from nndsl import ops
from nndsl.errors import NndslError
from nndsl.ir import Call, Graph, TensorType, TrainSpec
from nndsl.ops.metrics import (
    class_scores,
    confusion,
    metric_call,
    metric_column,
    metrics_for,
    task_of,
)


@dataclass
class Report:
    """What `nndsl evaluate` prints and writes as JSON."""

    model: str
    data: str
    rows: int
    task: str
    loss: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    labels: list[str] | None = None
    confusion: np.ndarray | None = None  # [actual, predicted] counts
    per_class: dict[str, np.ndarray] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        from nndsl.predictions import plain

        out: dict[str, Any] = {"model": self.model, "data": self.data, "rows": self.rows,
                               "task": self.task, "loss": _finite(self.loss),
                               "metrics": {k: _finite(v) for k, v in self.metrics.items()}}
        if self.confusion is not None:
            out["classes"] = {"labels": self.labels, "confusion": plain(self.confusion),
                              **{k: plain(v) for k, v in self.per_class.items()}}
        return out


def _finite(value: float | None) -> float | None:
    return value if value is not None and np.isfinite(value) else None


# ---- scoring -------------------------------------------------------------------------------

def score(report: Report, y: np.ndarray, t: np.ndarray, extra: tuple[Any, ...] = (),
          top_k: int = 5) -> Report:
    """Fill in every metric whose shape rule accepts (y, t), and the per-class table. `extra`
    are the train block's metrics (`top_k_accuracy(k=3)` under its column name)."""
    from nndsl.backends.numpy.prims import make_numpy_prims

    P = make_numpy_prims()
    y = np.asarray(y, np.float64)
    if report.task == "binary" and not _zero_one(y, np.asarray(t)):
        report.task = "values"  # one output, not probabilities of 0/1 targets: a regression
    t = _as_target(np.asarray(t), y, report.task)
    calls = [metric_call(name) for name in metrics_for(report.task)]
    calls = [replace(c, kwargs=(("k", top_k),)) if c.name == "top_k_accuracy" else c
             for c in calls]
    wanted = {metric_column(c): c for c in [*calls, *map(metric_call, extra)]}
    for column, call in wanted.items():
        opdef = ops.get(call.name, "metric")
        try:  # e.g. one-hot metrics on a regression output; top_k with k >= the classes
            opdef.output_type(TensorType(y.shape), TensorType(t.shape), **dict(call.kwargs))
        except NndslError:
            continue
        with np.errstate(all="ignore"):
            report.metrics[column] = float(opdef.compute(P, y, t, **dict(call.kwargs)))
    if report.task in ("classes", "binary") and report.rows and _class_targets(y, t):
        report.confusion = np.asarray(confusion(P, y, t)).astype(np.int64)
        k = report.confusion.shape[0]
        labels = report.labels if report.labels and len(report.labels) == k else None
        report.labels = labels or [str(c) for c in range(k)]
        report.per_class = {key: np.asarray(v) for key, v in class_scores(P, y, t).items()
                            if key != "present"}
    return report


def _as_target(t: np.ndarray, y: np.ndarray, task: str) -> np.ndarray:
    """Targets in the shape the metrics read: class ids one rank below class scores, else
    the output's own shape (a CSV column [rows, 1] or [rows] alike)."""
    if task == "classes" and t.ndim == y.ndim and t.shape[-1] == 1:
        t = t[..., 0]
    if task == "classes" and t.ndim == y.ndim - 1:
        return t.astype(np.int64)
    return (t.reshape(y.shape) if t.size == y.size else t).astype(np.float64)


def _zero_one(y: np.ndarray, t: np.ndarray) -> bool:
    return bool(np.all((y >= 0) & (y <= 1)) and np.all((t == 0) | (t == 1)))


def _class_targets(y: np.ndarray, t: np.ndarray) -> bool:
    """Targets a confusion matrix can count: class ids in range, 0/1, or one-hot rows."""
    if t.ndim == y.ndim - 1:
        return bool(np.all((t >= 0) & (t < y.shape[-1])))
    return bool(np.all((t == 0) | (t == 1)))


# ---- a run directory -----------------------------------------------------------------------

def _data_call(spec: TrainSpec, file: Path, target: str | None) -> Call:
    """The train block's data call pointed at `file`: the same binding for the same kind of
    file; a CSV for a spec trained on other data takes its targets by column name."""
    kind = {".csv": "csv", ".npz": "npz"}.get(file.suffix.lower())
    if kind is None:
        raise NndslError(f"cannot evaluate on '{file.name}'", expected=".csv or .npz",
                         received=file.suffix or "no extension")
    given = spec.get("data")
    kwargs = dict(given.kwargs) if given is not None and given.name == kind else {}
    kwargs["path"] = str(file.resolve())
    if kind == "csv" and (target is not None or "target" not in kwargs):
        names = tuple(target.split(",")) if target else tuple(n for n, _ in spec.targets)
        kwargs["target"] = names[0] if len(names) == 1 else names or None
    return Call(kind, tuple(kwargs.items()), given.span if given is not None else None)


def _last_loss(spec: TrainSpec) -> Graph | None:
    """The loss the exported model was trained with last (its last phase's, else the block's)."""
    from nndsl.training.stages import stages

    return stages(spec)[-1].loss


def evaluate_run(run_dir: Path, file: Path, target: str | None, top_k: int) -> Report:
    from nndsl.backends.numpy.engine import NumpyEngine
    from nndsl.backends.numpy.prims import make_numpy_prims
    from nndsl.data.dataset import load_dataset
    from nndsl.program import load
    from nndsl.training.core import loss_value
    from nndsl.training.run import pick_train

    for need in ("spec.nn", "weights.npz"):
        if not (run_dir / need).exists():
            raise NndslError(f"the run directory {run_dir} has no {need}",
                             hint="evaluate a finished run, or its model.onnx with --target")
    program, _ = load(run_dir / "spec.nn")
    spec = pick_train(program, _config_model(run_dir))
    graph = program.model(spec.model)
    settings = {**dict(spec.settings), "data": _data_call(spec, file, target), "split": 0.0}
    spec = replace(spec, settings=tuple(settings.items()))
    wanted = {**dict(graph.inputs), **dict(spec.targets)}
    data = load_dataset(wanted, [graph], spec, Path.cwd(), run_dir).train  # its labels, statistics
    with np.load(run_dir / "weights.npz", allow_pickle=False) as archive:
        weights = {k: archive[k] for k in archive.files}
    env = NumpyEngine().predict(graph, data, weights)
    y = env[graph.outputs[0]]
    report = Report(str(run_dir), str(file), len(y), task_of(tuple(y.shape)),
                    labels=_onnx_labels(run_dir / "model.onnx") or _run_labels(run_dir, spec))
    loss = _last_loss(spec)
    if loss is not None:
        with np.errstate(all="ignore"):
            report.loss = float(loss_value(make_numpy_prims(), loss, env, data, weights))
    if spec.targets:
        score(report, y, data[spec.targets[0][0]], tuple(spec.get("metrics") or ()), top_k)
    return report


def _run_labels(run_dir: Path, spec: TrainSpec) -> list[str] | None:
    """The first target's text labels from the run's data.json (a run without model.onnx)."""
    from nndsl.data.binding import load

    stored = load(run_dir)
    first = spec.targets[0][0] if spec.targets else None
    return stored.labels.get(first) if stored is not None and first else None


def _config_model(run_dir: Path) -> str | None:
    import json

    try:
        model = json.loads((run_dir / "config.json").read_text(encoding="utf-8")).get("model")
    except (OSError, ValueError, AttributeError):
        return None  # a run without a readable config: its spec's only train block
    return model if isinstance(model, str) else None


def _onnx_labels(file: Path) -> list[str] | None:
    from nndsl.inference import open_model

    return open_model(file).labels if file.exists() else None


# ---- an ONNX file --------------------------------------------------------------------------

def evaluate_onnx(file: Path, data: Path, target: str | None, top_k: int) -> Report:
    from nndsl.inference import open_model, run_model

    model = open_model(file)
    feeds, t = _labelled_rows(model, data, target)
    y = run_model(model, feeds)[model.outputs[0].name]
    report = Report(str(file), str(data), len(y), task_of(tuple(y.shape)), labels=model.labels)
    return score(report, y, t, (), top_k)


def _labelled_rows(model: Any, data: Path, target: str | None) -> \
        tuple[dict[str, np.ndarray], np.ndarray]:
    """The model's inputs by name and the target column or array named by --target."""
    from nndsl.inference import read_rows

    target = target or _stored_target(model)
    if target is None:
        raise NndslError(f"which of {data.name}'s columns or arrays is the target?",
                         hint="name it with --target NAME (a CSV column or an .npz array)")
    if data.suffix.lower() == ".csv":
        from nndsl.table_files import read_table

        table = read_table(data)
        column = table.index(target)
        labels = _target_ids(table, column, model.labels, target)
        skipped = replace(model, skip_columns=model.skip_columns | {table.names[column]})
        return read_rows(data, skipped), labels
    if data.suffix.lower() != ".npz":
        raise NndslError(f"cannot evaluate on '{data.name}'", expected=".csv or .npz",
                         received=data.suffix or "no extension")
    feeds = read_rows(data, model)
    with np.load(data, allow_pickle=False) as archive:
        if target not in archive.files:
            raise NndslError(f"{data.name} has no array '{target}'",
                             expected=", ".join(archive.files), received=target)
        return feeds, np.asarray(archive[target])


def _stored_target(model: Any) -> str | None:
    """The target column the model was trained on, from its `nndsl_data` metadata: the bound
    column that feeds no input (when there is exactly one)."""
    inputs = {p.name for p in model.inputs}
    columns = [c for name, cols in model.binding.columns.items() if name not in inputs
               for c in cols] if model.binding is not None else []
    return columns[0] if len(columns) == 1 else None


def _target_ids(table: Any, column: int, labels: list[str] | None, target: str) -> np.ndarray:
    """Numbers as they are; text class labels mapped to class ids by the model's labels (a
    label it does not know is an error at the cell's line)."""
    cells = table.column(column)
    try:
        return np.asarray([float(c) for c in cells])
    except ValueError:
        pass
    if labels is None:
        raise NndslError(f"column '{target}' of {table.file.name} holds text, and the model "
                         "stores no class labels to map it to class ids",
                         hint="give class ids (0, 1, ...) in the target column")
    from nndsl.errors import did_you_mean
    from nndsl.table_files import unknown_label

    for i, cell in enumerate(cells):
        if cell not in labels:
            what, details = unknown_label(cell, labels, "model")
            raise table.cell_error(i, column, what, **details, hint=did_you_mean(cell, labels))
    return np.asarray([labels.index(c) for c in cells])


def evaluate_path(model: Path, data: Path, target: str | None, top_k: int) -> Report:
    """A run directory or an ONNX file, on the labelled rows in `data`."""
    if not data.exists():
        raise NndslError(f"no such data file: {data}")
    if model.is_dir():
        return evaluate_run(model, data, target, top_k)
    return evaluate_onnx(model, data, target, top_k)


def confusion_png(report: Report) -> bytes:
    """The confusion matrix as a PNG (matplotlib): counts in the cells, rows the actual
    classes, columns the predicted ones, and the per-class recall beside each row."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix, labels = report.confusion, report.labels or []
    assert matrix is not None
    k = len(labels)
    fig, ax = plt.subplots(figsize=(2.0 + 0.6 * k, 1.6 + 0.6 * k), dpi=100)
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), labels=labels, rotation=45 if k > 6 else 0, ha="right" if k > 6
                  else "center")
    ax.set_yticks(range(k), labels=labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("actual class")
    ax.set_title(f"{Path(report.data).name}: accuracy "
                 f"{report.metrics.get('accuracy', float('nan')):.3f} ({report.rows} rows)")
    dark = matrix.max() / 2 if matrix.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > dark else "black")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
