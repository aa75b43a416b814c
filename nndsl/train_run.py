"""`nndsl train`: validate data first, then train, then write the run directory."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from nndsl import checkpoint, ops
from nndsl.dataset import load_dataset
from nndsl.errors import NndslError
from nndsl.initialize import initialize
from nndsl.ir import Graph, Program, TrainSpec
from nndsl.progress import Reporter
from nndsl.trainer import NumpyEngine, Position, Trainer, run_directory, save_run


def pick_train(program: Program, model: str | None) -> TrainSpec:
    specs = [t for t in program.trains if model in (None, t.model)]
    if not specs:
        raise NndslError(f"{program.file} has no train block" + (f" for '{model}'" if model
                                                                   else ""),
                         hint="add `train MODEL { data = ...; loss = ...; optimizer = ... }`")
    if len(specs) > 1:
        raise NndslError(f"{program.file} has several train blocks",
                         hint="pick one with --model " + " | ".join(t.model for t in specs))
    return specs[0]


def _hebbian(graph: Graph, spec: TrainSpec, data: Any, weights: dict[str, np.ndarray]) -> None:
    """One-shot storage: the Hopfield layer's weight and bias from the training patterns."""
    config = ops.get(spec.get("trainer").name, "trainer").compute(
        **dict(spec.get("trainer").kwargs))
    layers = [n for n in graph.nodes if n.op == "hopfield"]
    if len(layers) != 1:
        raise NndslError("trainer hebbian needs exactly one hopfield layer", spec.span)
    wmap = dict(layers[0].weights)
    patterns = data.train[layers[0].inputs[0]]
    w, b = config.store(patterns)
    weights[wmap["weight"]], weights[wmap["bias"]] = np.asarray(w, np.float32), \
        np.asarray(b, np.float32)


def resume_run(run_dir: str, quiet: bool = False) -> Path:
    """Continue a run from its checkpoint, with the spec and options it was started with."""
    from nndsl.program import load

    saved = checkpoint.load(Path(run_dir) / checkpoint.NAME)
    spec_file = Path(run_dir) / "spec.nn"
    program, _ = load(spec_file)
    meta = saved.meta
    return train_spec(program, str(spec_file), backend=meta["backend"], epochs=meta["epochs"],
                      steps=meta["steps"], run_dir=run_dir, model=meta["model"], quiet=quiet,
                      device=meta["device"], resume=saved)


def make_engine(backend: str, graph: Graph, device: str) -> Any:
    """The engine for `--backend`: torch is imported only when asked for."""
    if backend == "torch":
        from nndsl.backends.torch.engine import TorchEngine

        return TorchEngine(graph, device)
    return NumpyEngine(graph)


def train_spec(program: Program, spec_file: str, *, backend: str = "numpy",
               epochs: int | None = None, steps: int | None = None, run_dir: str | None = None,
               model: str | None = None, quiet: bool = False, device: str = "auto",
               resume: checkpoint.Checkpoint | None = None) -> Path:
    spec = pick_train(program, model)
    graph = program.model(spec.model)
    base_dir = Path(resume.meta["base_dir"]) if resume else Path(spec_file).resolve().parent
    data = load_dataset(graph, spec, base_dir)  # before anything is written
    path = Path(run_dir) if resume else run_directory(graph.name, run_dir)
    weights = resume.weights if resume else initialize(graph, spec.get("seed", 0))
    engine = make_engine(backend, graph, device)
    meta = {"model": graph.name, "backend": backend, "device": device, "epochs": epochs,
            "steps": steps, "base_dir": str(base_dir)}
    reporter = Reporter(graph.name, epochs or spec.get("epochs"), quiet)
    trainer = Trainer(graph, spec, engine, dict(weights), on_row=reporter,
                      step_rows=steps is not None)
    if not resume:
        shutil.copyfile(spec_file, path / "spec.nn")

    def on_epoch(position: Position) -> None:
        checkpoint.save(path / checkpoint.NAME, trainer.weights, position.state, {
            **meta, "stage": position.stage, "epoch": position.epoch, "step": trainer.step,
            "rng": position.rng, "history": trainer.history.rows})

    trainer.on_epoch = on_epoch
    start = None
    if resume:
        trainer.step = int(resume.meta["step"])
        trainer.history.rows = list(resume.meta["history"])
        start = Position(resume.meta["stage"], resume.meta["epoch"], resume.state,
                         resume.meta["rng"])
    trainer_call = spec.get("trainer")
    try:
        if trainer_call is None or trainer_call.name == "backprop":
            trainer.run(data, epochs, steps, start)
        elif trainer_call.name == "hebbian":
            _hebbian(graph, spec, data, trainer.weights)
        else:
            raise NndslError(f"trainer '{trainer_call.name}' is not supported by the {backend} "
                             "backend yet", trainer_call.span,
                             hint="backprop and hebbian train today")
    finally:
        reporter.stop()
    reporter.summary()
    save_run(path, trainer)
    export_run(program, spec_file, graph, trainer.weights, data, path, quiet)
    return path


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


def export_run(program: Program, spec_file: str, graph: Graph, weights: dict[str, np.ndarray],
               data: Any, path: Path, quiet: bool) -> None:
    """model.onnx of the trained weights, checked against NumPy on held-out rows first.

    A few held-out input rows are saved as heldout_x.npy, for `nndsl predict`.
    """
    from nndsl.errors import SourceMap
    from nndsl.export import export_onnx

    rows = data.val or data.train
    feeds = {n: rows[n][:64] for n, _ in graph.inputs}
    try:
        model = export_onnx(program, SourceMap({program.file: Path(spec_file).read_text(
            encoding="utf-8")}), graph, weights)
    except NndslError as e:
        if not quiet:
            print(f"model.onnx not written: {e.message}", file=sys.stderr)
        return
    from nndsl.backends.onnx.runtime import run_onnx

    want = NumpyEngine(graph).predict(feeds, weights)
    got = run_onnx(model, feeds)
    for name, value in zip(graph.outputs, got, strict=True):
        worst = float(np.max(np.abs(value - want[name]))) if value.size else 0.0
        if worst > 1e-4:
            raise NndslError(f"the exported model disagrees with NumPy on '{name}' by {worst:.3g}")
    labels = class_labels(graph, data)
    if labels is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = "class_labels", ",".join(labels)
    (path / "model.onnx").write_bytes(model.SerializeToString())
    if len(graph.inputs) == 1:
        np.save(path / "heldout_x.npy", feeds[graph.inputs[0][0]][:5])
