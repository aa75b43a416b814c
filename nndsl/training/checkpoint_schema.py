"""What a checkpoint must hold, checked field by field before training resumes.

A checkpoint is data from disk: a valid zip with valid JSON and arrays of the right shapes can
still hold records that would resume a different run (a stage or epoch out of range, a step
budget of 0, optimizer moments replaced by scalars that broadcast, state for a weight that does
not exist, NaN weights, a generator state of another kind). Every such field is refused here
with its name, before anything is written, so a damaged run never passes as finished and never
ends in an internal error.

Two passes: `check_structure` needs only the file (types, ranges, dtypes, finiteness);
`check_position` needs the run it resumes (the stages, the models, the data's rows) and then
asks the stage's trainer to check its own state (`Trainer.check_state`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from nndsl.errors import NndslError
from nndsl.ir import NUMPY_DTYPE, Graph

HINT = ("checkpoints are written by nndsl only: this one was damaged or changed since; resume "
        "from a copy, or start the run again")
PCG64_KEYS = {"bit_generator", "state", "has_uint32", "uinteger"}
ROW_KINDS = ("epoch", "step")
NUMERIC_KINDS = "fiub"  # float, signed and unsigned integers, bool: what state arrays may be
MAX_COUNT = 2**62  # epochs, steps, batches: far beyond any run, within every seed's range


class Damaged(Exception):
    """One field that fails the schema: its name, what it holds and what it should."""

    def __init__(self, field: str, value: Any, expected: str, problem: str | None = None) -> None:
        super().__init__(field)
        self.field, self.value, self.expected = field, value, expected
        self.problem = problem or f"is {_show(value)}"

    def error(self, where: str) -> NndslError:
        field = self.field if " " in self.field else f"its record's '{self.field}'"
        return NndslError(f"{where} is damaged: {field} {self.problem}", expected=self.expected,
                          hint=HINT)


def _show(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of {value.dtype}{list(value.shape)}"
    try:
        text = repr(value)
    except RecursionError:  # JSON nested as deep as the parser allows
        return f"a deeply nested {type(value).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    """A JSON number a float can hold (JSON integers have no bound; NaN is a float here)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, float) or (isinstance(value, int) and abs(value) <= MAX_COUNT)


def _finite(value: Any) -> bool:
    return _number(value) and math.isfinite(value)


def require(ok: bool, field: str, value: Any, expected: str) -> None:
    if not ok:
        raise Damaged(field, value, expected)


def count(field: str, value: Any, low: int = 0) -> int:
    require(_int(value) and low <= value <= MAX_COUNT, field, value,
            f"a whole number in [{low}, 2**62]")
    return int(value)


# -- the record (JSON) --------------------------------------------------------------------------

META_TEXT = ("model", "device", "base_dir")


def check_meta(meta: Any) -> None:
    """The record's fields: types and ranges that hold for any run."""
    from nndsl.backend import RNG_MODES, training_backends

    require(isinstance(meta, dict), "the record", meta, "a JSON object")
    for key in META_TEXT:
        require(isinstance(meta.get(key), str) and meta.get(key) != "", key, meta.get(key),
                "a non-empty string")
    backends = sorted(training_backends())
    require(meta.get("backend") in backends, "backend", meta.get("backend"), " or ".join(backends))
    require(meta.get("rng_mode") in RNG_MODES, "rng_mode", meta.get("rng_mode"),
            " or ".join(RNG_MODES))
    for key in ("epochs", "steps"):  # the --epochs / --steps the run was started with
        if meta.get(key) is not None:
            count(key, meta.get(key), 1)
    require("epochs" in meta and "steps" in meta, "the record", sorted(meta),
            "epochs and steps (null when not given)")
    for key in ("stage", "epoch", "step"):
        count(key, meta.get(key))
    count("world", meta.get("world", 1), 1)  # the ranks that wrote it (data-parallel runs)
    every = meta.get("checkpoint_every", 0.0)
    require(_finite(every) and every >= 0, "checkpoint_every", every,
            "a number of seconds >= 0")
    check_record("record", meta.get("record"))
    require(isinstance(meta.get("scalars"), list) and all(isinstance(s, str)
                                                          for s in meta["scalars"]),
            "scalars", meta.get("scalars"), "a list of state entry names")
    check_history(meta.get("history"), meta["step"])
    if "ended" in meta:
        ended = meta["ended"]
        require(isinstance(ended, dict) and set(ended) == {"epoch", "record"}, "ended", ended,
                'an object {"epoch": ..., "record": {...}}')
        count("ended.epoch", ended["epoch"])
        check_record("ended.record", ended["record"])


def check_record(field: str, record: Any) -> None:
    """The parts of a trainer's record the epoch loops read: generator, batch, losses."""
    require(isinstance(record, dict), field, record, "a JSON object")
    if record.get("rng") is not None:
        check_generator(f"{field}.rng", record["rng"])
    if "batch" in record:
        count(f"{field}.batch", record["batch"])
    losses = record.get("losses", [])
    require(isinstance(losses, list) and all(_finite(x) for x in losses),
            f"{field}.losses", losses, "a list of finite numbers")


def check_generator(field: str, state: Any) -> None:
    """A NumPy PCG64 state (what `default_rng` makes), exactly as `bit_generator.state` gives
    it: any other generator or structure would resume a different batch order."""
    require(isinstance(state, dict) and set(state) == PCG64_KEYS, field, state,
            "a PCG64 state {bit_generator, state, has_uint32, uinteger}")
    require(state["bit_generator"] == "PCG64", f"{field}.bit_generator",
            state["bit_generator"], "'PCG64'")
    inner = state["state"]
    require(isinstance(inner, dict) and set(inner) == {"state", "inc"}, f"{field}.state",
            inner, "an object {state, inc}")
    for key in ("state", "inc"):
        value = inner[key]
        require(_int(value) and 0 <= value < 2**128, f"{field}.state.{key}", value,
                "a whole number in [0, 2**128)")
    require(inner["inc"] % 2 == 1, f"{field}.state.inc", inner["inc"],
            "an odd number (PCG64 streams have odd increments)")
    require(state["has_uint32"] in (0, 1) and _int(state["has_uint32"]),
            f"{field}.has_uint32", state["has_uint32"], "0 or 1")
    require(_int(state["uinteger"]) and 0 <= state["uinteger"] < 2**32, f"{field}.uinteger",
            state["uinteger"], "a whole number in [0, 2**32)")


def check_history(rows: Any, step: int) -> None:
    """metrics.csv so far: rows of numbers with a kind, in update order, none after `step`."""
    require(isinstance(rows, list), "history", rows, "a list of rows")
    last = 0
    for i, row in enumerate(rows):
        field = f"history[{i}]"
        require(isinstance(row, dict) and row.get("kind") in ROW_KINDS, f"{field}.kind",
                row.get("kind") if isinstance(row, dict) else row, "'epoch' or 'step'")
        for key, value in row.items():
            if key == "kind":
                continue
            if key == "phase":
                require(isinstance(value, str), f"{field}.phase", value, "a phase name")
            elif key in ("step", "epoch"):
                count(f"{field}.{key}", value)
            else:
                require(_number(value), f"{field}.{key}", value, "a number")
        at = row.get("step", last)
        require(last <= at <= step, f"{field}.step", at,
                f"a step in [{last}, {step}] (rows in update order, none after the record's)")
        last = at


# -- the arrays -------------------------------------------------------------------------------

def check_weights_finite(weights: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    for model, arrays in weights.items():
        for name, value in arrays.items():
            field = f"weight '{name}' of model '{model}'"
            require(value.dtype.kind == "f", field, value, "an array of floats")
            if not np.isfinite(value).all():
                raise Damaged(field, value, "finite values", problem="holds NaN or infinity")


def check_state_arrays(state: Mapping[str, Mapping[str, Any]]) -> None:
    """Numbers only, finite: whatever a trainer keeps, it is arithmetic state."""
    for slot, entries in state.items():
        for key, value in entries.items():
            field = f"state '{slot}::{key}'"
            array = np.asarray(value)
            require(array.dtype.kind in NUMERIC_KINDS, field, array,
                    "numbers (float, integer or bool)")
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise Damaged(field, array, "finite values", problem="holds NaN or infinity")


def check_weight_slots(state: Mapping[str, Mapping[str, Any]],
                       models: Mapping[str, Graph]) -> None:
    """The default state check (`Trainer.check_state`): a slot named after a weight (or
    ROLE/WEIGHT, as a trainer with one updater per model names them) holds arrays of that
    weight's shape and dtype, as every optimizer's moments do; a slot named without a '.' is a
    trainer's own (weight names always hold one); any other slot names no weight."""
    decls = {}
    for graph in models.values():
        for w in graph.weights:
            decls.setdefault(w.name, []).append(w)
    for slot, entries in state.items():
        name = slot.partition("/")[2] if "/" in slot else slot
        if "." not in name:
            continue
        if name not in decls:
            raise Damaged(f"state slot '{slot}'", slot, "the name of a weight of the trained "
                          "models", problem="names no weight")
        for key, value in entries.items():
            array = np.asarray(value)
            kinds = [f"{np.dtype(NUMPY_DTYPE[w.dtype])}{list(w.shape)}" for w in decls[name]]
            got = f"{array.dtype}{list(array.shape)}"
            require(got in kinds, f"state '{slot}::{key}'", array,
                    f"{' or '.join(kinds)} (the weight's shape and dtype)")


# -- against the run it resumes -------------------------------------------------------------------

def check_position(meta: Mapping[str, Any], stages: Sequence[Any],
                   epochs_for: Callable[[Any], float], rows: int) -> None:
    """The position against the spec: stage < the number of stages (= when the run is done),
    epoch <= the stage's epochs, the batch reached within one epoch, the history of this
    stage ending at this epoch."""
    n = len(stages)
    stage = meta["stage"]
    require(stage <= n, "stage", stage, f"at most {n} (the spec has {n} phase(s))")
    record = meta["record"]
    if stage == n:
        require(meta["epoch"] == 0 and not record.get("batch"), "epoch", meta["epoch"],
                "0 once every phase is done")
        return
    require("ended" not in meta, "ended", meta.get("ended"), "absent before the last phase ends")
    limit = epochs_for(stages[stage])
    require(meta["epoch"] <= limit, "epoch", meta["epoch"],
            f"at most {limit} (phase '{stages[stage].name}' runs {limit} epochs)")
    require(record.get("batch", 0) <= rows, "record.batch", record.get("batch"),
            f"at most {rows} (batches in one epoch of {rows} rows)")
    require(len(record.get("losses", [])) <= max(record.get("batch", 0), 0), "record.losses",
            f"{len(record.get('losses', []))} losses", "one per batch reached, at most")
    done = [r["epoch"] for r in meta["history"] if r["kind"] == "epoch"
            and r.get("phase") == stages[stage].name and "epoch" in r]
    if done:
        require(done[-1] == meta["epoch"], "epoch", meta["epoch"],
                f"{done[-1]}, the last epoch metrics.csv records for phase "
                f"'{stages[stage].name}'")
    if meta["steps"] is not None:
        require(meta["step"] <= meta["steps"], "step", meta["step"],
                f"at most the run's --steps ({meta['steps']})")
