"""Checkpoints: one .npz file, written atomically after every epoch, read without pickle.

It holds the weights (`w::NAME`), the optimizer state (`s::WEIGHT::KEY`) and a JSON record
(`meta`): where training stands (stage, epoch, step), the batch-order generator's state, the
metrics so far and how the run was started — everything `nndsl train --resume` needs to continue
exactly where it stopped.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nndsl.errors import NndslError

FORMAT = "nndsl-checkpoint-1"
NAME = "checkpoint.npz"


@dataclass
class Checkpoint:
    weights: dict[str, np.ndarray]
    state: dict[str, dict[str, Any]]
    meta: dict[str, Any]


def _array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def save(path: Path, weights: dict[str, Any], state: dict[str, dict[str, Any]],
         meta: dict[str, Any]) -> None:
    """Write to a temporary file, flush it to disk, then rename over the old checkpoint."""
    arrays = {f"w::{k}": _array(v) for k, v in weights.items()}
    scalars = []
    for wname, entries in state.items():
        for key, value in entries.items():
            arrays[f"s::{wname}::{key}"] = _array(value)
            if isinstance(value, int | float):
                scalars.append(f"{wname}::{key}")
    record = {**meta, "format": FORMAT, "scalars": scalars}
    arrays["meta"] = np.frombuffer(json.dumps(record).encode("utf-8"), dtype=np.uint8)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: Path) -> Checkpoint:
    """Read a checkpoint; anything else (a pickle, a truncated file) is a clear error."""
    if not path.exists():
        raise NndslError(f"no checkpoint at {path}", hint="resume a run directory written by "
                         "`nndsl train` (it holds checkpoint.npz after the first epoch)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode("utf-8"))
    except (ValueError, OSError, zipfile.BadZipFile, KeyError, EOFError,
            UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NndslError(f"{path} is not a valid nndsl checkpoint ({type(e).__name__})",
                         hint="it may be truncated or not written by nndsl; checkpoints are "
                         "never unpickled") from None
    if meta.get("format") != FORMAT:
        raise NndslError(f"{path} is not an nndsl checkpoint", expected=FORMAT,
                         received=str(meta.get("format")))
    weights = {k[3:]: v for k, v in arrays.items() if k.startswith("w::")}
    state: dict[str, dict[str, Any]] = {}
    scalars = set(meta.get("scalars", ()))
    for key, value in arrays.items():
        if key.startswith("s::"):
            wname, entry = key[3:].rsplit("::", 1)
            state.setdefault(wname, {})[entry] = value.item() if f"{wname}::{entry}" in \
                scalars else value
    return Checkpoint(weights, state, meta)
