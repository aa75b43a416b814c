"""Predictions written to a file whose extension says the format: .npy (one output), .npz
(every output by name), .csv (one line per row, with a header) or .json. A classifier's
predicted class, label and probability (and the next best, with `top_k`) come first."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nndsl.errors import NndslError
from nndsl.inference import Classes


@dataclass
class Predictions:
    """Every output of a model on some rows, and its classes when it is a classifier."""

    outputs: dict[str, np.ndarray]
    classes: Classes | None
    top_k: int = 1

    @property
    def rows(self) -> int:
        return len(next(iter(self.outputs.values())))

    def ranked(self) -> list[tuple[str, np.ndarray]]:
        """Named columns for the classes: class, label, probability, then class_2, ... ."""
        if self.classes is None:
            return []
        k = min(self.top_k, self.classes.probs.shape[1])
        order, probs = self.classes.top(k)
        names = np.asarray(self.classes.labels, dtype=str)
        out = []
        for rank in range(k):
            suffix = "" if rank == 0 else f"_{rank + 1}"
            out += [(f"class{suffix}", order[:, rank]), (f"label{suffix}", names[order[:, rank]]
                                                         if len(order) else names[:0]),
                    (f"probability{suffix}", probs[:, rank])]
        return out

    def columns(self) -> list[tuple[str, np.ndarray]]:
        """Every value as named flat columns: the ranked classes, then each output's columns
        (NAME for one number per row, NAME_0, NAME_1, ... for several)."""
        out = self.ranked()
        for name, values in self.outputs.items():
            flat = flat_rows(values)
            if flat.shape[1] == 1:
                out.append((name, flat[:, 0]))
            else:
                out += [(f"{name}_{j}", flat[:, j]) for j in range(flat.shape[1])]
        return out


def flat_rows(values: np.ndarray) -> np.ndarray:
    """[rows, ...] as [rows, numbers per row] (also for 0 rows)."""
    return values.reshape(len(values), int(np.prod(values.shape[1:], dtype=np.int64)))


def _npy(p: Predictions) -> bytes:
    if len(p.outputs) > 1:
        raise NndslError(f"a .npy file holds one array; the model has {len(p.outputs)} outputs "
                         f"({', '.join(p.outputs)})", hint="write .npz (every output by name), "
                         ".csv or .json")
    buffer = io.BytesIO()
    np.save(buffer, next(iter(p.outputs.values())))
    return buffer.getvalue()


def _npz(p: Predictions) -> bytes:
    arrays = dict(p.outputs)
    arrays.update({k: v for k, v in p.ranked() if k not in arrays})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if isinstance(value, str | np.str_):
        return value
    if isinstance(value, np.integer | int):
        return str(int(value))
    return f"{float(value):.9g}"


def _csv(p: Predictions) -> bytes:
    import csv

    columns = p.columns()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([name for name, _ in columns])
    for i in range(p.rows):
        writer.writerow([_cell(values[i]) for _, values in columns])
    return buffer.getvalue().encode("utf-8")


def plain(values: np.ndarray) -> Any:
    """Nested lists for JSON; NaN and infinities become null (JSON has no such numbers)."""
    if values.dtype.kind == "f":
        return np.where(np.isfinite(values), values, None).tolist()
    return values.tolist()


def _json(p: Predictions) -> bytes:
    doc: dict[str, Any] = {"rows": p.rows, "outputs": {k: plain(v) for k, v in
                                                        p.outputs.items()}}
    ranked = p.ranked()
    if ranked:
        doc["predictions"] = [{name: values[i].item() for name, values in ranked}
                              for i in range(p.rows)]
    return (json.dumps(doc) + "\n").encode("utf-8")


WRITERS: dict[str, Callable[[Predictions], bytes]] = {
    ".npy": _npy, ".npz": _npz, ".csv": _csv, ".json": _json,
}


def encode(path: Path, predictions: Predictions, form: str | None = None) -> bytes:
    """The file's bytes in the format its extension names (or `form`, for a pipe or device
    such as /dev/stdout); another extension is an error."""
    writer = WRITERS.get(f".{form}" if form else path.suffix.lower())
    if writer is None:
        raise NndslError(f"cannot write predictions to '{path.name}': unknown extension "
                         f"'{path.suffix or '(none)'}'", expected=", ".join(WRITERS),
                         received=path.suffix or "no extension",
                         hint="or name the format with --format npy|npz|csv|json")
    return writer(predictions)
