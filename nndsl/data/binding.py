"""How a data file became the arrays a run reads, kept so that later files are read the same
way: which CSV columns fill each input and target, the class labels of a text target (class id
= position in the sorted list), and the standardisation of each input (mean and standard
deviation per column, from the training rows only).

A run stores it as data.json in its run directory (`nndsl evaluate` and `--resume` read it
back, so class ids and statistics never change under a run), and the exported model carries
it in its metadata (`nndsl_data`; the labels also as `class_labels`, the standardisation
folded into the graph), so `nndsl predict model.onnx` needs nothing else."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from nndsl.data.stream import Mapped
from nndsl.errors import NndslError

FILE = "data.json"
Arrays = dict[str, np.ndarray]  # what a data op returns: arrays by input or target name
# A parameter the front end fills from free-form keyword arguments, `npz(path, x="X")`: each
# NAME="value" the op's signature does not name becomes one (NAME, value) pair, in order.
Names = Annotated[tuple[tuple[str, str], ...], "names"]


@dataclass
class Binding:
    """Columns per array, labels per text target, (mean, std) per standardised input."""

    columns: dict[str, list[str]] = field(default_factory=dict)
    labels: dict[str, list[str]] = field(default_factory=dict)
    scale: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"columns": self.columns, "labels": self.labels,
                "standardize": {k: {"mean": m, "std": s} for k, (m, s) in self.scale.items()}}

    @classmethod
    def from_json(cls, doc: Any, where: str) -> Binding:
        """A stored binding, checked: a corrupted one is an error naming `where`."""
        try:
            columns = {str(k): [str(c) for c in v] for k, v in doc.get("columns", {}).items()}
            labels = {str(k): [str(c) for c in v] for k, v in doc.get("labels", {}).items()}
            scale = {str(k): ([float(x) for x in v["mean"]], [float(x) for x in v["std"]])
                     for k, v in doc.get("standardize", {}).items()}
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise NndslError(f"{where} is not a data binding nndsl wrote ({e})") from None
        bad = [k for k, (m, s) in scale.items()
               if len(m) != len(s) or not all(np.isfinite(s)) or min(s, default=1) <= 0]
        if bad:
            raise NndslError(f"{where}: the standardisation of '{bad[0]}' is damaged",
                             expected="as many means as standard deviations, each std > 0")
        return cls(columns, labels, scale)

    def empty(self) -> bool:
        return not (self.columns or self.labels or self.scale)

    def raw(self, name: str, x: np.ndarray) -> np.ndarray:
        """Standardised rows of input `name` back in the file's units (x * std + mean)."""
        if name not in self.scale:
            return x
        mean, std = (np.asarray(v, np.float64) for v in self.scale[name])
        return (x * std.reshape(_row_shape(x, std)) +
                mean.reshape(_row_shape(x, mean))).astype(x.dtype)

    def standardized(self, name: str, x: np.ndarray) -> np.ndarray:
        """(x - mean) / std per column, in x's dtype."""
        if name not in self.scale:
            return x
        mean, std = (np.asarray(v, np.float64) for v in self.scale[name])
        return ((x - mean.reshape(_row_shape(x, mean))) /
                std.reshape(_row_shape(x, std))).astype(x.dtype)


def _row_shape(x: np.ndarray, stats: np.ndarray) -> tuple[int, ...]:
    """Statistics per column of [rows, columns], or one for [rows] (a one-column input)."""
    return (1, *x.shape[1:]) if x.ndim > 1 else (1,) if stats.size == 1 else stats.shape


@dataclass(frozen=True)
class Request:
    """What a spec wants from its data call: its model inputs and targets by name, and a
    binding stored earlier (by the run being resumed or evaluated) that must be kept."""

    inputs: tuple[str, ...]
    targets: tuple[str, ...]
    stored: Binding | None = None


class BoundArrays(dict[str, np.ndarray]):
    """A data call's arrays by name, with how they were bound and which inputs to standardise
    (once the training rows are known: see `fit_scale`)."""

    def __init__(self, arrays: dict[str, np.ndarray], binding: Binding,
                 standardize: tuple[str, ...] = ()) -> None:
        super().__init__(arrays)
        self.binding = binding
        self.standardize = standardize


def standardizing(arrays: dict[str, Any], request: Request | None,
                  standardize: bool) -> dict[str, Any]:
    """A data call's arrays, marked so that the model inputs among them are standardised once
    the training rows are known (`standardize=true` of npz and npy; csv binds its own). An
    input read from disk batch by batch cannot be: its statistics and rescaled copy would load
    it whole."""
    if not standardize or request is None:
        return arrays
    names = tuple(n for n in request.inputs if n in arrays)
    mapped = [n for n in names if isinstance(arrays[n], Mapped)]
    if mapped:
        raw = arrays[mapped[0]].raw
        size = raw.size * raw.dtype.itemsize / 2**30
        raise NndslError(f"standardize = true would load input '{mapped[0]}' ({size:.1f} GiB) "
                         "into memory; it is read from disk batch by batch",
                         hint="standardise the file once, (x - mean) / std, and train on that")
    return BoundArrays(arrays, Binding(), names)


def fit_scale(names: tuple[str, ...], train: dict[str, np.ndarray],
              stored: Binding | None) -> dict[str, tuple[list[float], list[float]]]:
    """Mean and population standard deviation per column of each input, over the training rows
    only (a constant column gets std 1, so it becomes 0); a stored run's are kept as they are."""
    out = {}
    for name in names:
        if stored is not None and name in stored.scale:
            out[name] = stored.scale[name]
            continue
        x = np.asarray(train[name], np.float64)
        if x.dtype.kind not in "f" or not len(x):
            continue
        mean, std = x.mean(axis=0), x.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        out[name] = (np.ravel(mean).tolist(), np.ravel(std).tolist())
    return out


def save(run_dir: Path, binding: Binding) -> None:
    """data.json in the run directory, when there is something to keep (an earlier run's,
    overwritten by one on other data, is removed: evaluate would read it)."""
    from nndsl.files import atomic_write_text

    if binding.empty():
        (run_dir / FILE).unlink(missing_ok=True)
    else:
        atomic_write_text(run_dir / FILE, json.dumps(binding.as_json(), indent=2) + "\n")


def load(run_dir: Path) -> Binding | None:
    """The run's stored binding (None for a run without one: npz or built-in data)."""
    file = run_dir / FILE
    if not file.exists():
        return None
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise NndslError(f"cannot read {file}: {e}") from None
    return Binding.from_json(doc, str(file))


def from_metadata(model: Any, where: str) -> Binding | None:
    """The binding an exported ONNX model carries as `nndsl_data` metadata (None without)."""
    text = next((p.value for p in model.metadata_props if p.key == "nndsl_data"), None)
    if not text:
        return None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        raise NndslError(f"{where}: its nndsl_data metadata is not JSON") from None
    return Binding.from_json(doc, f"{where}'s nndsl_data metadata")
