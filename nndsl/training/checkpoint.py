"""Checkpoints: one .npz file, written atomically, read without pickle.

It holds the weights of every model the run trains (`w::MODEL::NAME`), the trainer's state
arrays by slot (`s::SLOT::KEY`: optimizer moments per weight, a persistent Gibbs chain) and a
JSON record (`meta`): where training stands (stage, epoch, step), the trainer's own record
(generator states, the batch reached), the metrics so far and how the run was started —
everything `nndsl train --resume` needs to continue exactly where it stopped.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nndsl.errors import NndslError
from nndsl.files import atomic_write
from nndsl.ir import NUMPY_DTYPE, WeightDecl
from nndsl.training.session import Position

FORMAT = "nndsl-checkpoint-2"
NAME = "checkpoint.npz"


@dataclass
class Checkpoint:
    weights: dict[str, dict[str, np.ndarray]]  # model -> weight name -> array
    state: dict[str, dict[str, Any]]
    meta: dict[str, Any]


def _array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def save(path: Path, weights: dict[str, dict[str, Any]], state: dict[str, dict[str, Any]],
         meta: dict[str, Any]) -> None:
    """Write to a temporary file, flush it to disk, then rename over the old checkpoint."""
    arrays = {f"w::{model}::{k}": _array(v) for model, ws in weights.items()
              for k, v in ws.items()}
    scalars = []
    for wname, entries in state.items():
        for key, value in entries.items():
            arrays[f"s::{wname}::{key}"] = _array(value)
            if isinstance(value, int | float):
                scalars.append(f"{wname}::{key}")
    record = {**meta, "format": FORMAT, "scalars": scalars}
    arrays["meta"] = np.frombuffer(json.dumps(record).encode("utf-8"), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, **arrays), sync=True)


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
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise NndslError(f"{path} is not an nndsl checkpoint", expected=FORMAT,
                         received=str(meta.get("format") if isinstance(meta, dict) else meta))
    _check_meta(path, meta)
    weights: dict[str, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        if key.startswith("w::"):
            model, _, name = key[3:].partition("::")
            weights.setdefault(model, {})[name] = value
    state: dict[str, dict[str, Any]] = {}
    scalars = set(meta.get("scalars", ()))
    for key, value in arrays.items():
        if key.startswith("s::"):
            wname, entry = key[3:].rsplit("::", 1)
            state.setdefault(wname, {})[entry] = value.item() if f"{wname}::{entry}" in \
                scalars else value
    return Checkpoint(weights, state, meta)


# The record's fields and their types: a checkpoint is data from disk and is checked like any.
META: dict[str, type | tuple[type, ...]] = {
    "model": str, "backend": str, "device": str, "rng_mode": str, "base_dir": str,
    "epochs": (int, type(None)), "steps": (int, type(None)), "stage": int, "epoch": int,
    "step": int, "record": dict, "history": list, "scalars": list,
}
# The fields of a trainer's record that the epoch loops read, and their types.
RECORD: dict[str, type | tuple[type, ...]] = {"rng": (dict, type(None)), "batch": int,
                                              "losses": list}


def _check_meta(path: Path, meta: dict[str, Any]) -> None:
    for key, kind in META.items():
        value = meta.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            names = kind if isinstance(kind, tuple) else (kind,)
            raise NndslError(f"{path} is damaged: its record's '{key}' is {value!r}",
                             expected=" or ".join(t.__name__ for t in names),
                             hint="start the run again; checkpoints are written by nndsl only")
    for key, kind in RECORD.items():
        value = meta["record"].get(key)
        if key in meta["record"] and (not isinstance(value, kind) or isinstance(value, bool)):
            raise NndslError(f"{path} is damaged: its trainer record's '{key}' is {value!r}",
                             hint="start the run again; checkpoints are written by nndsl only")
    from nndsl.backend import training_backends

    batch = meta["record"].get("batch", 0)
    if meta["backend"] not in training_backends() or min(meta["stage"], meta["epoch"],
                                                         meta["step"], batch) < 0:
        raise NndslError(f"{path} is damaged: backend {meta['backend']!r}, stage "
                         f"{meta['stage']}, epoch {meta['epoch']}, step {meta['step']}")


def check_weights(saved: Checkpoint, model: str, declared: Sequence[WeightDecl]) -> None:
    """The checkpoint's weights of `model` must be the spec's: same names, shapes, dtypes."""
    names = {w.name for w in declared}
    have = saved.weights.get(model, {})
    missing = sorted(names - set(have))
    extra = sorted(set(have) - names)
    if missing or extra:
        raise NndslError("the checkpoint's weights do not match the spec",
                         expected=", ".join(missing) or "no other weights",
                         received=", ".join(extra) or "none of them",
                         hint="resume with the spec.nn the run was started with")
    for w in declared:
        got, dtype = have[w.name], np.dtype(NUMPY_DTYPE[w.dtype])
        if got.shape != w.shape or got.dtype != dtype:
            raise NndslError(f"the checkpoint's weight '{w.name}' does not match the spec",
                             w.span, expected=f"{dtype}{list(w.shape)}",
                             received=f"{got.dtype}{list(got.shape)}",
                             hint="resume with the spec.nn the run was started with")


def position(saved: Checkpoint) -> Position:
    """Where the checkpointed run stands, for the trainer."""
    meta = saved.meta
    return Position(meta["stage"], meta["epoch"], dict(meta["record"]), saved.state)
