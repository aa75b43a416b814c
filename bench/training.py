"""Case 1, training throughput: `nndsl train` (torch backend) against the hand-written loops of
bench/handwritten.py and, when installed, Keras 3 `model.fit` and Lightning `Trainer.fit`
(bench/peers.py), on the same model, initial weights, optimizer, batch size and epochs.

Two nndsl figures: `nndsl train` is everything the command does in-process (load the data,
train with the per-epoch metrics, checkpoints written and fsynced, then metrics.csv,
weights.npz and model.onnx checked against NumPy, waiting for network.svg and the plots from its
picture worker, which this process keeps from run to run), which is what a user pays;
`nndsl training loop` is the training loop alone (per-epoch metrics, no files), the same work
the hand-written loops do. Without a goal, `nndsl train` is also set beside the indexed
loop written out as a script that writes the same kinds of files (bench/handwritten_files.py).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from nndsl.backends.torch.engine import TorchEngine

from bench import handwritten, handwritten_files
from bench.models import Workload
from bench.peers import NOT_INSTALLED, PEERS
from bench.report import Row, missing_row, ratio_at_most, ratio_below, row
from bench.timing import Settings, synced
from nndsl.training.run import train_in_memory, train_spec

WORKLOADS = ("digits_mlp", "digits_cnn", "sine_lstm")
FULL, LOOP = "nndsl train", "nndsl training loop"
DATALOADER, INDEXED = "DataLoader loop", "indexed loop"
GOALS = {DATALOADER: 1.0, INDEXED: 1.0}
WITH_FILES = "indexed loop + files"  # bench/handwritten_files.py: no goal, a yardstick


def nndsl_loop(w: Workload, epochs: int, device: str) -> int:
    """The trainer alone, as `nndsl train` runs it; returns the epochs run (early stopping)."""
    session = train_in_memory(w.program, w.train, TorchEngine(device), w.data,
                              {w.graph.name: dict(w.weights)}, epochs)
    return len(session.history.series("loss"))


def nndsl_train(w: Workload, epochs: int, device: str, runs: Path,
                steps: int | None = None) -> None:
    """`nndsl train` in-process, into a fresh run directory under `runs` each time. It loads
    the spec's data itself; `steps` (the smoke test's) stops it after that many updates."""
    run_dir = runs / f"run-{len(list(runs.glob('run-*'))) if runs.exists() else 0}"
    train_spec(w.program, w.spec_file, backend="torch", epochs=epochs, steps=steps,
               run_dir=str(run_dir), quiet=True, device=device)


def rows(workloads: list[Workload], settings: Settings, device: str = "cpu") -> list[Row]:
    out: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="nndsl-bench-") as tmp:
        for w in workloads:
            out += _workload_rows(w, settings, device, Path(tmp) / w.name)
    return out


def _workload_rows(w: Workload, settings: Settings, device: str, run_dir: Path) -> list[Row]:
    # early stopping may end a run sooner than asked, the same way every time
    epochs = 1 if settings.quick else nndsl_loop(w, int(w.setting("epochs")), device)
    steps = -(-w.data.rows // int(w.setting("batch")))
    contenders: dict[str, Callable[[], object]] = {
        FULL: lambda: nndsl_train(w, epochs, device, run_dir, steps if settings.quick else None),
        LOOP: lambda: nndsl_loop(w, epochs, device),
        DATALOADER: lambda: handwritten.dataloader_loop(w, epochs, device),
        INDEXED: lambda: handwritten.indexed_loop(w, epochs, device),
        WITH_FILES: lambda: handwritten_files.indexed_script(w, epochs, device,
                                                             run_dir / "script"),
    }
    peers = {p.label: p for p in PEERS if p.version() is not None}
    for label, peer in peers.items():
        fit = peer.fit()
        contenders[label] = lambda fit=fit: fit(w, epochs, device)
    times = settings.measure({k: synced(fn, device) for k, fn in contenders.items()})
    workload = f"{w.name} {epochs} ep x {steps} steps"
    case = "1 training" if device == "cpu" else f"6 training ({device})"
    out = [row(case, workload, ours, times[ours], theirs, times[theirs],
               *((f"<= {goal:.1f}x", ratio_at_most(goal)) if ours == FULL else ()))
           for ours in (FULL, LOOP) for theirs, goal in GOALS.items()]
    out.append(row(case, workload, FULL, times[FULL], WITH_FILES, times[WITH_FILES]))
    faster = "< 1.0x"
    return out + [row(case, workload, FULL, times[FULL], p.label, times[p.label], faster,
                      ratio_below(1.0)) if p.label in peers else
                  missing_row(case, workload, FULL, times[FULL], p.label, NOT_INSTALLED, faster)
                  for p in PEERS]
