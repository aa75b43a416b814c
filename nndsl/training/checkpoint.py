"""Checkpoints: one .npz file, written atomically, read without pickle.

It holds the weights of every model the run trains (`w::MODEL::NAME`), the trainer's state
arrays by slot (`s::SLOT::KEY`: optimizer moments per weight, a persistent Gibbs chain) and a
JSON record (`meta`): where training stands (stage, epoch, step), the trainer's own record
(generator states, the batch reached), the metrics so far and how the run was started —
everything `nndsl train --resume` needs to continue exactly where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nndsl.errors import NndslError
from nndsl.files import atomic_write
from nndsl.ir import NUMPY_DTYPE, Graph, WeightDecl
from nndsl.npz import open_npz, write_npz
from nndsl.training import checkpoint_schema as schema
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
    """Write to a temporary file, flush it to disk, then rename over the old checkpoint. State
    the loader would refuse (non-finite) is an error instead: the last good checkpoint stays."""
    arrays = {f"w::{model}::{k}": _array(v) for model, ws in weights.items()
              for k, v in ws.items()}
    scalars = []
    for wname, entries in state.items():
        for key, value in entries.items():
            array = arrays[f"s::{wname}::{key}"] = _array(value)
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise NndslError(f"the trainer's state '{wname}::{key}' became non-finite",
                                 hint="lower the learning rate or add `clip = norm(1.0)`")
            if isinstance(value, int | float):
                scalars.append(f"{wname}::{key}")
    record = {**meta, "format": FORMAT, "scalars": scalars}
    arrays["meta"] = np.frombuffer(json.dumps(record).encode("utf-8"), dtype=np.uint8)
    atomic_write(path, lambda f: write_npz(f, arrays), sync=True)


def load(path: Path) -> Checkpoint:
    """Read a checkpoint; anything else (a pickle, a truncated file, a damaged record) is a
    clear error naming the file and the field."""
    if not path.exists():
        raise NndslError(f"no checkpoint at {path}", hint="resume a run directory written by "
                         "`nndsl train` (it holds checkpoint.npz after the first epoch)")
    try:
        with open_npz(path, "checkpoint") as archive:
            arrays = archive.read_all()
    except NndslError as e:
        raise NndslError(f"{path} is not a valid nndsl checkpoint: {e.message}",
                         hint="it may be truncated or not written by nndsl; checkpoints are "
                         "never unpickled") from None
    return parse(arrays, str(path))


def parse(arrays: dict[str, np.ndarray], where: str) -> Checkpoint:
    """A checkpoint from its arrays (as stored), every field checked (checkpoint_schema.py)."""
    meta = _meta(arrays.pop("meta", None), where)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise NndslError(f"{where} is not an nndsl checkpoint", expected=FORMAT,
                         received=repr(meta.get("format") if isinstance(meta, dict) else meta))
    try:
        schema.check_meta(meta)
        weights, state = _entries(arrays, set(meta["scalars"]))
        schema.check_weights_finite(weights)
        schema.check_state_arrays(state)
    except schema.Damaged as e:
        raise e.error(where) from None
    return Checkpoint(weights, state, meta)


def _meta(array: np.ndarray | None, where: str) -> Any:
    if array is None or array.dtype != np.uint8 or array.ndim != 1:
        raise NndslError(f"{where} is not an nndsl checkpoint: it has no record",
                         expected="a 'meta' array of UTF-8 JSON bytes",
                         received="none" if array is None else f"{array.dtype}{list(array.shape)}")
    try:
        return json.loads(array.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # ValueError: JSON's
        raise NndslError(f"{where} is damaged: its record is not JSON ({type(e).__name__})",
                         hint=schema.HINT) from None


def _entries(arrays: dict[str, np.ndarray], scalars: set[str]) -> \
        tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, Any]]]:
    """Weights `w::MODEL::NAME` by model, state `s::SLOT::KEY` by slot (entries listed in
    `scalars` as Python numbers); any other array is refused."""
    weights: dict[str, dict[str, np.ndarray]] = {}
    state: dict[str, dict[str, Any]] = {}
    for key, value in arrays.items():
        kind, _, rest = key.partition("::")
        first, _, second = rest.rpartition("::") if kind == "s" else rest.partition("::")
        schema.require(kind in ("w", "s") and first != "" and second != "", f"array '{key}'",
                       "an unknown entry", "w::MODEL::WEIGHT, s::SLOT::KEY or meta")
        table = weights if kind == "w" else state
        table.setdefault(first, {})[second] = value
    for entry in scalars:
        slot, _, key = entry.rpartition("::")
        value = state.get(slot, {}).get(key)
        schema.require(isinstance(value, np.ndarray) and value.ndim == 0
                       and value.dtype.kind in "fiu", f"scalar '{entry}'", value,
                       "a state entry holding one number")
        state[slot][key] = value.item()
    return weights, state


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


def ended(saved: Checkpoint, stages: int) -> Position | None:
    """Where a finished run's last phase ended (kept in its final checkpoint so that
    `--extend` continues exactly), or None when the checkpoint does not say."""
    last = saved.meta.get("ended")
    if saved.meta["stage"] != stages or last is None:
        return None
    return Position(stages - 1, last["epoch"], dict(last["record"]), saved.state)


def validate(saved: Checkpoint, where: str, model: str, stages: Sequence[Any],
             trainers: Sequence[Any], graphs: Mapping[str, Graph], rows: int,
             epochs_for: Callable[[Any], float]) -> None:
    """What the file cannot say alone, against the run it resumes: the model, the weights of
    every trained model (names, shapes, dtypes), the position within the spec's phases, and
    the state the stage's trainer kept (`Trainer.check_state`)."""
    if saved.meta["model"] != model:
        raise NndslError(f"{where} is a run of model '{saved.meta['model']}', not '{model}'",
                         hint="resume with the spec.nn the run was started with")
    for name in saved.weights:
        if name not in graphs:
            raise schema.Damaged(f"model '{name}'", name, "weights of the models this run "
                                 "trains: " + ", ".join(graphs),
                                 problem="has weights, but this run does not train it")\
                .error(where)
    for name, graph in graphs.items():
        check_weights(saved, name, graph.weights)
    try:
        schema.check_position(saved.meta, stages, epochs_for, rows)
        last = min(saved.meta["stage"], len(stages) - 1)
        trainers[last].check_state(position(saved), graphs)
    except schema.Damaged as e:
        raise e.error(where) from None
