"""`nndsl verify`: one spec, the same inputs, three backends, and how far apart they are.

Every model of a spec (or the one an ONNX file was exported from) runs on seeded random inputs at
batch sizes 1 and 7 (and sequence lengths 3 and 11 when an input has a `time` axis):

- forward NumPy (the reference) against torch and against onnxruntime, in float32;
- gradients of NumPy's reverse-mode autodiff against torch autograd, in float64 (weights and
  inputs cast), of the train block's loss (synthetic targets) or, without one, of a fixed random
  projection of the outputs (`gradcheck.model_objective`). Both run in inference mode, so
  dropout and noise are off and the two sides see the same function.

Tolerances (a value `a` against the NumPy reference `b`, elementwise):

- forward, float32: ok when |a − b| ≤ 1e-5 + 1e-5·|b|  (FORWARD)
- gradient, float64: ok when |a − b| ≤ 1e-9 + 1e-7·|b|  (GRADIENT)

`max_rel` is |a − b| / (|b| + atol/rtol): relative for large values, absolute (scaled by
rtol/atol) near zero, where a plain relative error means nothing. A row is ok exactly when every
element is within its bound, i.e. when max_rel ≤ rtol.

Weights are the spec's initial weights (the train block's seed, as `nndsl compile` exports them)
or a run directory's (nndsl/run_weights.py: a model's own MODEL.weights.npz, then the trained
model's weights.npz, whose layers a model sharing their labels reads), checked against the
declared shapes. A model that cannot be
exported to ONNX is one failed row ("not exportable") with the exporter's reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nndsl import ops
from nndsl.check import random_inputs
from nndsl.errors import NndslError, SourceMap
from nndsl.export import load_onnx, pick_model
from nndsl.initialize import initialize
from nndsl.interpreter import run
from nndsl.ir import NUMPY_DTYPE, Graph, Program, TrainSpec
from nndsl.run_weights import run_arrays, run_model_name

BATCHES = (1, 7)
TIMES = (3, 11)  # only for models with an input that has a `time` axis

FORWARD_ONNX = "forward numpy↔onnxruntime"


def forward_label(backend: str) -> str:
    return f"forward numpy↔{backend}"


def grad_label(backend: str) -> str:
    return f"grad numpy↔{backend}"


FORWARD_TORCH, GRAD_TORCH = forward_label("torch"), grad_label("torch")


def compared_backends(what: str) -> dict[str, Any]:
    """The registered backends compared with the NumPy reference: those with a forward runner
    (`what="forward"`) or a gradient runner (`what="gradients"`)."""
    from nndsl.backend import backends

    return {name: getattr(b, what) for name, b in backends().items()
            if getattr(b, what) is not None and not b.extra.get("reference")}


@dataclass(frozen=True)
class Tolerance:
    """|a − b| ≤ atol + rtol·|b|, b the NumPy reference."""

    atol: float
    rtol: float
    dtype: str

    def __str__(self) -> str:
        return f"{self.dtype}: atol {self.atol:g} + rtol {self.rtol:g}·|ref|"


FORWARD = Tolerance(atol=1e-5, rtol=1e-5, dtype="float32")
GRADIENT = Tolerance(atol=1e-9, rtol=1e-7, dtype="float64")


@dataclass(frozen=True)
class Row:
    """One comparison: a model output (forward) or weight (gradient) at one input size.

    `max_abs`/`max_rel` are None when nothing could be compared (`note` says why).
    """

    model: str
    what: str
    name: str
    batch: int | None
    time: int | None
    max_abs: float | None
    max_rel: float | None
    tolerance: Tolerance
    ok: bool
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"model": self.model, "what": self.what, "name": self.name, "batch": self.batch,
                "time": self.time, "max_abs": _json_number(self.max_abs),
                "max_rel": _json_number(self.max_rel), "tolerance": str(self.tolerance),
                "ok": self.ok, "note": self.note}


def _json_number(value: float | None) -> float | str | None:
    """JSON has no NaN or infinity: those are written as strings."""
    return value if value is None or np.isfinite(value) else str(value)


@dataclass(frozen=True)
class Case:
    """One input size: a batch and, for sequence models, a time length."""

    batch: int
    time: int | None

    @property
    def sizes(self) -> dict[str, int]:
        return {"batch": self.batch} if self.time is None else {"batch": self.batch,
                                                                "time": self.time}


def compare(got: Any, ref: Any, tol: Tolerance) -> tuple[float, float, bool]:
    """(max |a − b|, max_rel, ok) of `got` against the reference (module docstring)."""
    a, b = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf"), float("inf"), False
    diff = np.abs(a - b)
    bound = tol.atol + tol.rtol * np.abs(b)
    ok = bool(np.all(diff <= bound))  # NaN anywhere is not ok
    if diff.size == 0:
        return 0.0, 0.0, ok
    rel = diff / (np.abs(b) + tol.atol / tol.rtol)
    return float(np.max(diff)), float(np.max(rel)), ok


# --- weights --------------------------------------------------------------------------------


def read_weights(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a run directory's weights.npz (or an .npz named directly), without pickle:
    a corrupted archive or one holding Python objects is a clear error."""
    file = path / "weights.npz" if path.is_dir() else path
    if not file.exists():
        raise NndslError(f"no weights file: {file}",
                         hint="pass a run directory written by `nndsl train` (it holds "
                         "weights.npz) or the .npz file itself")
    from nndsl.npz import open_npz

    try:
        with open_npz(file, "weights file") as archive:  # each header checked before reading
            return archive.read_all()
    except NndslError as e:
        raise NndslError(f"cannot read weights from {file}: {e.message}", hint=e.hint) from None


def check_weights(graph: Graph, arrays: Mapping[str, np.ndarray],
                  source: str = "weights.npz") -> dict[str, np.ndarray]:
    """Every weight of `graph`, present with its declared shape, in its declared dtype."""
    missing = [w.name for w in graph.weights if w.name not in arrays]
    if missing:
        raise NndslError(f"{source} has no array for {', '.join(missing)} (model "
                         f"'{graph.name}')", graph.span,
                         expected=", ".join(w.name for w in graph.weights),
                         received=", ".join(sorted(arrays)) or "no arrays")
    out = {}
    for w in graph.weights:
        array = np.asarray(arrays[w.name])
        if array.shape != w.shape:
            raise NndslError(f"{source}: '{w.name}' has the wrong shape", w.span or graph.span,
                             expected=str(list(w.shape)), received=str(list(array.shape)))
        if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
            raise NndslError(f"{source}: '{w.name}' is not a real number array",
                             w.span or graph.span, received=str(array.dtype))
        out[w.name] = array.astype(NUMPY_DTYPE[w.dtype])
    return out


def initial_weights(program: Program, graph: Graph) -> dict[str, np.ndarray]:
    """The weights `nndsl compile` exports: initialised from the train block's seed."""
    seed = next((t.get("seed", 0) for t in program.trains if t.model == graph.name), 0)
    return initialize(graph, seed)


# --- which models ---------------------------------------------------------------------------


def onnx_model_name(model: Any) -> str | None:
    return next((p.value for p in model.metadata_props if p.key == "model"), None)


def select_models(program: Program, onnx_model: Any, weights_path: Path | None) -> list[Graph]:
    """All models; the one an ONNX file names in its metadata; or the one a run was for."""
    if onnx_model is not None:
        name = onnx_model_name(onnx_model)
        if name is None and len(program.models) > 1:
            raise NndslError("the ONNX model does not say which model it was exported from "
                             "(no 'model' metadata)", hint="export it with `nndsl compile`")
        return [pick_model(program, name)]
    if weights_path is not None and len(program.models) > 1:
        name = run_model_name(weights_path)
        if name is None:
            known = ", ".join(g.name for g in program.models)
            raise NndslError(f"{program.file} defines several models ({known}) and "
                             f"{weights_path} does not say which one it holds",
                             hint="use a run directory with its config.json")
        return [pick_model(program, name)]
    return list(program.models)


def cases(graph: Graph) -> list[Case]:
    """Batch sizes 1 and 7, each at time lengths 3 and 11 when an input has a time axis."""
    timed = any("time" in ty.shape for _, ty in graph.inputs)
    return [Case(b, t) for b in BATCHES for t in (TIMES if timed else (None,))]


# --- forward --------------------------------------------------------------------------------


def numpy_forward(graph: Graph, feeds: Mapping[str, Any],
                  weights: Mapping[str, Any]) -> dict[str, np.ndarray]:
    from nndsl.backends.numpy.prims import make_numpy_prims

    env = run(graph, make_numpy_prims(training=False), feeds, weights).env
    return {name: np.asarray(env[name]) for name in graph.outputs}


@dataclass
class OnnxRunner:
    """An onnxruntime session on the exported (or given) model, fed by input name."""

    session: Any
    inputs: dict[str, np.dtype]
    outputs: list[str]
    raw: Any = None  # standardised inputs back in file units, for a model that folds it in

    @classmethod
    def create(cls, model: Any, graph: Graph) -> OnnxRunner:
        import onnx

        from nndsl.backends.onnx.runtime import session

        inputs = {i.name: onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)
                  for i in model.graph.input}
        want = [n for n, _ in graph.inputs]
        if sorted(inputs) != sorted(want):
            raise NndslError(f"the ONNX model's inputs do not match model '{graph.name}'",
                             graph.span, expected=", ".join(want),
                             received=", ".join(inputs) or "none")
        missing = [n for n in graph.outputs if n not in [o.name for o in model.graph.output]]
        if missing:
            raise NndslError(f"the ONNX model has no output {', '.join(missing)}", graph.span,
                             expected=", ".join(graph.outputs),
                             received=", ".join(o.name for o in model.graph.output))
        try:
            sess = session(model)
        except Exception as e:  # onnxruntime rejects a model the checker let through
            raise NndslError(f"onnxruntime cannot load the ONNX model: {_first_line(e)}") from e
        from nndsl.export import stored_binding

        return cls(sess, inputs, [o.name for o in sess.get_outputs()], stored_binding(model))

    def __call__(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        raw = self.raw.raw if self.raw is not None else lambda _, x: x
        values = self.session.run(None, {k: raw(k, np.asarray(feeds[k])).astype(dtype)
                                         for k, dtype in self.inputs.items()})
        return dict(zip(self.outputs, values, strict=True))


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def forward_rows(graph: Graph, case: Case, what: str, got: Mapping[str, Any],
                 ref: Mapping[str, Any]) -> list[Row]:
    rows = []
    for name in graph.outputs:
        max_abs, max_rel, ok = compare(got[name], ref[name], FORWARD)
        shapes = (np.shape(got[name]), np.shape(ref[name]))
        note = "" if shapes[0] == shapes[1] else f"shape {list(shapes[0])} vs {list(shapes[1])}"
        rows.append(Row(graph.name, what, name, case.batch, case.time, max_abs, max_rel,
                        FORWARD, ok, note))
    return rows


def onnx_rows(graph: Graph, case: Case, runner: OnnxRunner, feeds: Mapping[str, Any],
              ref: Mapping[str, Any]) -> list[Row]:
    """onnxruntime against NumPy; a run that fails (e.g. a fixed batch size) is a failed row."""
    try:
        got = runner(feeds)
    except Exception as e:  # onnxruntime's own errors: report them as this row's result
        return [Row(graph.name, FORWARD_ONNX, name, case.batch, case.time, None, None, FORWARD,
                    False, f"onnxruntime failed: {_first_line(e)}") for name in graph.outputs]
    return forward_rows(graph, case, FORWARD_ONNX, got, ref)


# --- gradients ------------------------------------------------------------------------------


def train_block(program: Program, graph: Graph) -> TrainSpec | None:
    """The train block whose loss verify differentiates (None: a random projection)."""
    return next((t for t in program.trains if t.model == graph.name and t.loss is not None),
                None)


def differentiable(graph: Graph) -> bool:
    return all(ops.OPS[n.op].differentiable for n in graph.nodes)


def _float64(arrays: Mapping[str, Any]) -> dict[str, Any]:
    return {k: np.asarray(v, dtype=np.float64)
            if np.issubdtype(np.asarray(v).dtype, np.floating) else np.asarray(v)
            for k, v in arrays.items()}


def numpy_gradients(objective: Any, weights: Mapping[str, Any],
                    names: list[str]) -> list[np.ndarray]:
    """Reverse-mode autodiff over the NumPy trace (inference mode)."""
    from nndsl.backends.numpy.autodiff import leaf, make_grad_prims

    P = make_grad_prims(training=False)
    traced = {k: leaf(v) if k in names else v for k, v in weights.items()}
    value = objective(P, traced)
    return P.tape.gradients(value, [traced[k] for k in names])


def gradient_rows(program: Program, graph: Graph, case: Case, feeds: Mapping[str, Any],
                  weights: Mapping[str, Any], rng: np.random.Generator) -> list[Row]:
    """NumPy against each backend's gradients of one objective, per trainable weight, in
    float64."""
    from nndsl.backends.numpy.gradcheck import model_objective, synthetic_targets
    from nndsl.training.core import trainable

    names = trainable(graph)
    runners = compared_backends("gradients")
    if not differentiable(graph):
        ops_ = sorted({n.op for n in graph.nodes if not ops.OPS[n.op].differentiable})
        return [Row(graph.name, grad_label(b), "(all)", case.batch, case.time, None, None,
                    GRADIENT, True, f"skipped: {', '.join(ops_)} has no gradient")
                for b in runners]
    train = train_block(program, graph)
    feeds = dict(feeds)
    if train is not None:
        feeds.update(synthetic_targets(train.loss, train.targets, rng, case.sizes))
    feeds, weights = _float64(feeds), _float64(weights)
    objective = model_objective(graph, train, feeds, weights, rng)
    ref = numpy_gradients(objective, weights, names)
    rows = []
    for backend, gradients in runners.items():
        got = gradients(objective, weights, names)
        for name, g, r in zip(names, got, ref, strict=True):
            max_abs, max_rel, ok = compare(g, r, GRADIENT)
            rows.append(Row(graph.name, grad_label(backend), name, case.batch, case.time,
                            max_abs, max_rel, GRADIENT, ok))
    return rows


# --- putting it together --------------------------------------------------------------------


def exported(program: Program, sources: SourceMap, graph: Graph, weights: Mapping[str, Any],
             onnx_model: Any) -> tuple[Any, str]:
    """(the ONNX model to run, "") or (None, why it cannot be exported)."""
    from nndsl.export import export_onnx

    if onnx_model is not None:
        return onnx_model, ""
    try:
        return export_onnx(program, sources, graph, dict(weights)), ""
    except NndslError as e:
        return None, str(e)


def verify_graph(program: Program, sources: SourceMap, graph: Graph,
                 weights: Mapping[str, np.ndarray], onnx_model: Any = None,
                 seed: int = 0) -> list[Row]:
    """Every comparison for one model at every input size."""
    model, reason = exported(program, sources, graph, weights, onnx_model)
    rows: list[Row] = []
    if model is None:
        rows.append(Row(graph.name, FORWARD_ONNX, "(model)", None, None, None, None, FORWARD,
                        False, f"not exportable: {reason}"))
    runner = OnnxRunner.create(model, graph) if model is not None else None
    for case in cases(graph):
        rng = np.random.default_rng([seed, case.batch, case.time or 0])
        feeds = random_inputs(graph, rng, case.sizes)
        ref = numpy_forward(graph, feeds, weights)
        for backend, forward in compared_backends("forward").items():
            rows += forward_rows(graph, case, forward_label(backend),
                                 forward(graph, feeds, weights), ref)
        if runner is not None:
            rows += onnx_rows(graph, case, runner, feeds, ref)
        rows += gradient_rows(program, graph, case, feeds, weights, rng)
    return rows


def verify_program(program: Program, sources: SourceMap, *, onnx_model: Any = None,
                   weights: Mapping[str, np.ndarray] | str | Path | None = None,
                   seed: int = 0) -> list[Row]:
    """Compare NumPy, torch and onnxruntime on every model of `program` (module docstring).

    `onnx_model`: a ModelProto or a path to run instead of exporting (only the model its
    metadata names is verified). `weights`: arrays by name, or a run directory / .npz to read
    them from (checked against the declared shapes); default: the spec's initial weights.
    `seed` seeds the inputs, targets and projections.
    """
    if isinstance(onnx_model, str | Path):
        onnx_model = load_onnx(Path(onnx_model))
    weights_path = Path(weights) if isinstance(weights, str | Path) else None
    arrays = read_weights(weights_path) if weights_path is not None else weights
    rows: list[Row] = []
    for graph in select_models(program, onnx_model, weights_path):
        if weights_path is not None and weights_path.is_dir():  # the run's arrays for graph
            arrays = run_arrays(weights_path, graph.name)
        given = (check_weights(graph, arrays, str(weights_path or "weights"))
                 if arrays is not None else initial_weights(program, graph))
        rows += verify_graph(program, sources, graph, given, onnx_model, seed)
    return rows


def worst(rows: Iterable[Row]) -> list[Row]:
    """One row per (model, check, name): its largest difference over all input sizes, failed
    rows first so a failure is never hidden behind a larger passing difference."""
    best: dict[tuple[str, str, str], Row] = {}
    for row in rows:
        key = (row.model, row.what, row.name)
        if key not in best or _rank(row) > _rank(best[key]):
            best[key] = row
    return list(best.values())


def _rank(row: Row) -> tuple[bool, float]:
    rel = row.max_rel
    return (not row.ok, float("inf") if rel is None or np.isnan(rel) else rel)


def tolerance_text() -> str:
    return (f"forward ok when |a − b| ≤ {FORWARD.atol:g} + {FORWARD.rtol:g}·|b| ({FORWARD.dtype}); "
            f"gradient ok when |a − b| ≤ {GRADIENT.atol:g} + {GRADIENT.rtol:g}·|b| "
            f"({GRADIENT.dtype}); b = NumPy; max rel = |a − b| / (|b| + atol/rtol)")
