"""Checkpoints are checked field by field before a run resumes: every kind of damage the outside
review found (records out of range, moments replaced by scalars, state for a weight that does
not exist, NaN weights, a foreign generator state, mistyped history, state of the wrong shape
or dtype) is refused naming the field, and thousands of random mutations of a real checkpoint
end in either a clear error or a resume that runs — never an internal error."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nndsl.backend import make_engine
from nndsl.cli import main
from nndsl.data.dataset import load_dataset
from nndsl.errors import NndslError
from nndsl.program import load
from nndsl.training import checkpoint
from nndsl.training.resume import start_position
from nndsl.training.run import _run_stages, pick_train, plan
from nndsl.training.session import Session

from .conftest import stop_after_step

SPEC = """
model xor {
  input x: f32[batch, 2]
  h = x -> dense(3) -> tanh
  out = h -> dense(1) -> sigmoid
  output out
}

train xor {
  data      = builtin("xor")
  target y: [batch, 1]
  loss      = mse(out, y)
  optimizer = adam(lr=0.05)
  metrics   = [accuracy]
  batch     = 2
  epochs    = 6
  seed      = 3
}
"""
STOP_AT = 5  # epoch 3 of 6, its second batch: a mid-epoch record with losses and moments


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run stopped (as by Ctrl-C) after step 5: its checkpoint holds every kind of field."""
    folder = tmp_path_factory.mktemp("stopped")
    spec = folder / "xor.nn"
    spec.write_text(SPEC, encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        stop_after_step(patch, STOP_AT)
        code = main(["train", str(spec), "--backend", "numpy", "--run-dir",
                     str(folder / "run"), "--quiet", "--checkpoint-every", "0"])
    assert code == 130
    return folder / "run"


def _arrays(run_dir: Path) -> dict[str, np.ndarray]:
    with np.load(run_dir / checkpoint.NAME, allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files}


def _meta(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    return json.loads(arrays["meta"].tobytes())


def _with_meta(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> dict[str, np.ndarray]:
    return {**arrays, "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}


# -- each kind of damage (tests/test_hardening.py resumes each through the CLI) ------------------

def _set(path: str, value: Any) -> Callable[[dict[str, np.ndarray]], None]:
    """Damage one field of the record (a dotted path; digits index lists)."""

    def change(arrays: dict[str, np.ndarray]) -> None:
        meta = _meta(arrays)
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        holder = meta
        for key in parents:
            holder = holder[key]
        holder[last] = value
        arrays.update(_with_meta(arrays, meta))

    return change


def _array(key: str, value: Callable[[np.ndarray], np.ndarray] | None) -> \
        Callable[[dict[str, np.ndarray]], None]:
    def change(arrays: dict[str, np.ndarray]) -> None:
        if value is None:
            arrays[key] = arrays["s::dense_1.weight::m"]  # a slot for a weight that is not
        else:
            arrays[key] = value(arrays[key])

    return change


def _nan(a: np.ndarray) -> np.ndarray:
    out = a.copy()
    out.flat[0] = np.nan
    return out


DAMAGE = [
    ("stage out of range", _set("stage", 3), ["its record's 'stage' is 3", "at most 1"]),
    ("epoch out of range", _set("epoch", 9), ["its record's 'epoch' is 9", "at most 6"]),
    ("epoch behind the history", _set("epoch", 1),
     ["its record's 'epoch' is 1", "the last epoch metrics.csv records"]),
    ("negative epochs", _set("epochs", -3), ["its record's 'epochs' is -3"]),
    ("zero steps", _set("steps", 0), ["its record's 'steps' is 0", "in [1, 2**62]"]),
    ("step before the history", _set("step", 0), ["its record's 'history[0].step' is 2"]),
    ("moments replaced by a scalar", _array("s::dense_1.weight::m",
                                            lambda a: np.float32(0.5)),
     ["state 'dense_1.weight::m' is an array of float32[]", "float32[3, 2]"]),
    ("state for a weight that does not exist", _array("s::ghost.weight::m", None),
     ["state slot 'ghost.weight' names no weight", "the name of a weight of the trained"]),
    ("NaN weights", _array("w::xor::dense_2.weight", _nan),
     ["weight 'dense_2.weight' of model 'xor' holds NaN or infinity"]),
    ("NaN moments", _array("s::dense_1.bias::v", _nan),
     ["state 'dense_1.bias::v' holds NaN or infinity"]),
    ("another generator", _set("record.rng.bit_generator", "MT19937"),
     ["its record's 'record.rng.bit_generator' is 'MT19937'", "'PCG64'"]),
    ("a generator state of the wrong structure", _set("record.rng.state", 7),
     ["its record's 'record.rng.state' is 7"]),
    ("a generator state out of range", _set("record.rng.state.state", -1),
     ["its record's 'record.rng.state.state' is -1"]),
    ("a history row of the wrong type", _set("history.0", "epoch 1"),
     ["its record's 'history[0].kind' is 'epoch 1'"]),
    ("a history value of the wrong type", _set("history.1.loss", "low"),
     ["its record's 'history[1].loss' is 'low'", "a number"]),
    ("state of the wrong shape", _array("s::dense_2.weight::v", lambda a: np.zeros((2, 3),
                                                                                   np.float32)),
     ["state 'dense_2.weight::v' is an array of float32[2, 3]", "float32[1, 3]"]),
    ("state of the wrong dtype", _array("s::dense_2.weight::v", lambda a: a.astype(np.float64)),
     ["state 'dense_2.weight::v' is an array of float64[1, 3]"]),
    ("state of complex numbers", _array("s::dense_2.bias::m", lambda a: a.astype(np.complex64)),
     ["state 'dense_2.bias::m' is an array of complex64[1]", "numbers (float, integer"]),
    ("losses that are not numbers", _set("record.losses", ["x"]),
     ["its record's 'record.losses' is ['x']"]),
    ("a batch beyond the data", _set("record.batch", 50), ["its record's 'record.batch' is 50"]),
    ("an unknown backend", _set("backend", "cuda-magic"), ["its record's 'backend'"]),
]


def test_the_undamaged_checkpoint_resumes(stopped: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(stopped, run_dir)
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0


def test_non_finite_state_is_never_written(tmp_path: Path) -> None:
    state = {"dense_1.weight": {"m": np.array([1.0, np.inf], np.float32)}}
    with pytest.raises(NndslError, match="state 'dense_1.weight::m' became non-finite"):
        checkpoint.save(tmp_path / checkpoint.NAME, {"m": {"w": np.ones(2)}}, state, {})
    assert not (tmp_path / checkpoint.NAME).exists()


# -- the loader fuzzed --------------------------------------------------------------------------

class Resumer:
    """The resume path in memory: parse, validate against the run, then two updates from the
    position (generator, moments and losses restored) — what `--resume` does, minus files."""

    def __init__(self, run_dir: Path) -> None:
        self.program, _ = load(run_dir / "spec.nn")
        self.spec = pick_train(self.program, None)
        self.run = plan(self.program, self.spec)
        self.graphs = [self.program.model(n) for n in self.run.models]
        self.data = load_dataset(self.run.data, self.graphs, self.spec, run_dir)
        self.engine = make_engine("numpy", "cpu", "device")

    def __call__(self, arrays: dict[str, np.ndarray]) -> None:
        saved = checkpoint.parse(dict(arrays), "checkpoint.npz")
        session = Session(self.program, self.spec, self.engine, self.data, {})
        start = start_position(saved, "checkpoint.npz", self.run, self.graphs, session, False)
        session.weights = {m: self.engine.to_backend(w) for m, w in saved.weights.items()}
        session.step = saved.meta["step"]
        session.history.rows = list(saved.meta["history"])
        session.steps = session.step + 2
        _run_stages(session, self.run, start)


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70)
                    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=4),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=5)
DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int64, np.uint8, np.bool_,
          np.complex64, "<U2", [("a", "<f4")]]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in the record a mutation can land."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            out += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value[:4]):
            out += _paths(inner, (*prefix, i))
    return out


@st.composite
def record_mutation(draw: st.DrawFn, meta: dict[str, Any]) -> dict[str, Any]:
    meta = json.loads(json.dumps(meta))
    path = draw(st.sampled_from(_paths(meta)))
    holder = meta
    for key in path[:-1]:
        holder = holder[key]
    action = draw(st.sampled_from(["replace", "delete", "nudge"]))
    if action == "delete" and isinstance(holder, dict):
        del holder[path[-1]]
    elif action == "nudge" and isinstance(holder[path[-1]], int) and \
            not isinstance(holder[path[-1]], bool):
        holder[path[-1]] += draw(st.sampled_from([-1, 1, 2**40, -2**63]))
    else:
        holder[path[-1]] = draw(JSON)
    return meta


@st.composite
def array_mutation(draw: st.DrawFn, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = dict(arrays)
    key = draw(st.sampled_from(sorted(k for k in arrays if k != "meta")))
    value = arrays[key]
    action = draw(st.sampled_from(["scalar", "reshape", "dtype", "nan", "empty", "delete",
                                   "rename", "copy"]))
    if action == "scalar":
        with np.errstate(over="ignore"):  # a float64 beyond the array's float32 is inf
            out[key] = np.asarray(draw(st.floats(allow_nan=True)), dtype=value.dtype)
    elif action == "reshape":
        out[key] = value.reshape(-1)[: max(value.size - 1, 0)] if draw(st.booleans()) \
            else value[None]
    elif action == "dtype":
        out[key] = np.zeros(value.shape, dtype=draw(st.sampled_from(DTYPES)))
    elif action == "nan":
        out[key] = _nan(value.astype(np.float32)) if value.size else value
    elif action == "empty":
        out[key] = np.zeros((0,), value.dtype)
    elif action == "delete":
        del out[key]
    else:
        name = draw(st.sampled_from(["s::ghost.w::m", "w::other::dense_1.weight", "junk",
                                     "s::::", "w::xor::", "s::persistent_chain::v"]))
        out[name] = value
        if action == "rename":
            del out[key]
    return out


@pytest.fixture(scope="module")
def resumer(stopped: Path) -> Resumer:
    return Resumer(stopped)


@settings(max_examples=2000, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_checkpoints_are_refused_or_resume(stopped: Path, resumer: Resumer,
                                                  data: st.DataObject) -> None:
    """2,000 mutations of the record or the arrays (or both): a clear error or a resume that
    runs; never anything else."""
    arrays = _arrays_cached(stopped)
    if data.draw(st.booleans()):
        arrays = _with_meta(arrays, data.draw(record_mutation(_meta(arrays))))
    if data.draw(st.booleans()):
        arrays = data.draw(array_mutation(arrays))
    try:
        resumer(arrays)
    except NndslError as e:
        assert e.message  # refused with a message (the field, for schema errors)


_CACHE: dict[Path, dict[str, np.ndarray]] = {}


def _arrays_cached(run_dir: Path) -> dict[str, np.ndarray]:
    if run_dir not in _CACHE:
        _CACHE[run_dir] = _arrays(run_dir)
    return dict(_CACHE[run_dir])


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(cuts=st.lists(st.tuples(st.integers(0, 10**6), st.binary(max_size=8)), min_size=1,
                     max_size=4))
def test_corrupted_checkpoint_files_are_refused_or_load(stopped: Path, tmp_path_factory:
                                                        pytest.TempPathFactory,
                                                        cuts: list[tuple[int, bytes]]) -> None:
    """Bytes of the file overwritten anywhere (headers, zip directory, JSON, array data)."""
    raw = bytearray((stopped / checkpoint.NAME).read_bytes())
    for at, data in cuts:
        at %= len(raw)
        raw[at:at + len(data)] = data
    path = tmp_path_factory.mktemp("bytes") / checkpoint.NAME
    path.write_bytes(bytes(raw))
    try:
        checkpoint.load(path)
    except NndslError as e:
        assert str(path) in e.message


def test_an_array_header_claiming_billions_of_rows_is_refused_before_allocating(
        stopped: Path, tmp_path: Path) -> None:
    """An .npy member whose header claims 4e9 x 3 floats (44 GiB) but holds 12 bytes."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (4_000_000_000, 3)})
    buffer.write(b"\0" * 12)
    path = tmp_path / checkpoint.NAME
    shutil.copy(stopped / checkpoint.NAME, path)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("w::xor::bomb.npy", buffer.getvalue())
    with pytest.raises(NndslError, match=r"claims shape \[4000000000, 3\] \(48,000,000,000 "
                                         r"bytes of float32\), but only 12 bytes follow it"):
        checkpoint.load(path)

