"""Data-parallel training on torch.distributed (gloo on 2 CPU ranks): the same global batch on
2 ranks gives the weights of one process — float64 within 1e-9, float32 within 1e-4 — with
shuffling, dropout and weight decay; `torchrun` and `nndsl train --nproc` make the same run; a
killed rank ends the job with its name, and the run resumes exactly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from .conftest import checkpoint_epoch  # noqa: E402

pytestmark = pytest.mark.slow

SPEC = """model m {{
  input x: {dtype}[batch, 2]
  h = x -> dense(16) -> tanh -> dropout(rate=0.2)
  out = h -> dense(1) -> sigmoid
  output out
}}

train m {{
  data       = builtin("spirals")
  target y: {dtype}[batch, 1]
  loss       = bce(out, y)
  optimizer  = adam(lr=0.01)
  regularize = l2(1e-3)
  batch      = 33
  epochs     = {epochs}
  seed       = 3
}}
"""
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def spec(tmp_path: Path, dtype: str = "f64", epochs: int = 3) -> Path:
    path = tmp_path / f"m_{dtype}.nn"
    path.write_text(SPEC.format(dtype=dtype, epochs=epochs), encoding="utf-8")
    return path


def nndsl(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nndsl.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=ENV)


def train(path: Path, run: Path, *extra: str) -> None:
    done = nndsl("train", str(path), "--device", "cpu", "--run-dir", str(run), "--quiet",
                 *extra)
    assert done.returncode == 0, done.stderr


def weights(run: Path) -> dict[str, np.ndarray]:
    with np.load(run / "weights.npz") as archive:
        return {k: archive[k] for k in archive.files}


def assert_close(a: Path, b: Path, atol: float) -> None:
    wa, wb = weights(a), weights(b)
    assert sorted(wa) == sorted(wb)
    for name in wa:
        np.testing.assert_allclose(wb[name], wa[name], rtol=0, atol=atol, err_msg=name)


@pytest.mark.parametrize(("dtype", "atol"), [("f64", 1e-9), ("f32", 1e-4)])
def test_two_ranks_train_as_one_process(tmp_path: Path, dtype: str, atol: float) -> None:
    path = spec(tmp_path, dtype)
    train(path, tmp_path / "one")
    train(path, tmp_path / "two", "--nproc", "2")
    assert_close(tmp_path / "one", tmp_path / "two", atol)
    one = (tmp_path / "one" / "metrics.csv").read_text().splitlines()
    two = (tmp_path / "two" / "metrics.csv").read_text().splitlines()
    assert one[0] == two[0] and len(one) == len(two)
    assert (tmp_path / "two" / "model.onnx").exists()


def test_memory_mapped_data_shards_as_in_memory_data(tmp_path: Path) -> None:
    """A file streamed from disk batch by batch (NNDSL_STREAM_BYTES=1 maps every array) gives
    each rank its share of the global batch as in-memory data does."""
    from nndsl.data.builtin import builtin

    arrays = builtin(tmp_path, name="spirals")
    np.save(tmp_path / "x.npy", arrays["x"].astype(np.float64))
    np.save(tmp_path / "y.npy", arrays["y"].astype(np.float64))
    path = spec(tmp_path).read_text(encoding="utf-8").replace(
        'builtin("spirals")', 'npy(x="x.npy", y="y.npy")')
    (tmp_path / "mapped.nn").write_text(path, encoding="utf-8")
    train(tmp_path / "mapped.nn", tmp_path / "memory")
    streamed = {**ENV, "NNDSL_STREAM_BYTES": "1"}
    done = subprocess.run([sys.executable, "-m", "nndsl.cli", "train", str(tmp_path / "mapped.nn"),
                           "--device", "cpu", "--quiet", "--nproc", "2", "--run-dir",
                           str(tmp_path / "two")], capture_output=True, text=True, timeout=240,
                          env=streamed)
    assert done.returncode == 0, done.stderr
    assert_close(tmp_path / "memory", tmp_path / "two", 1e-9)


def test_ranks_share_the_evaluation_and_agree_with_one_process(tmp_path: Path) -> None:
    """digits_mlp: each rank evaluates half the training rows; rank 0 merges the totals.
    The recorded metrics equal one process's to float32 training's tolerance."""
    import csv

    spec = Path(__file__).resolve().parent.parent / "specs" / "digits_mlp.nn"
    train(spec, tmp_path / "one", "--epochs", "2")
    train(spec, tmp_path / "two", "--epochs", "2", "--nproc", "2")
    rows = []
    for run in ("one", "two"):
        with (tmp_path / run / "metrics.csv").open(encoding="utf-8") as f:
            rows.append(list(csv.DictReader(f)))
    assert len(rows[0]) == len(rows[1]) == 2
    for a, b in zip(*rows, strict=True):
        assert a.keys() == b.keys() and {"accuracy", "val_loss", "val_accuracy"} <= a.keys()
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-4, abs=1e-4), key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_torchrun_and_two_simulated_nodes_make_the_same_run(tmp_path: Path) -> None:
    path = spec(tmp_path)
    train(path, tmp_path / "nproc", "--nproc", "2")
    child = ["-m", "nndsl.cli", "train", str(path), "--device", "cpu", "--quiet"]
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", *child, "--run-dir",
                           str(tmp_path / "torchrun")], capture_output=True, text=True,
                          timeout=240, env=ENV)
    assert done.returncode == 0, done.stderr
    port = free_port()
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
                               "--node-rank", str(rank), "--nproc-per-node", "1",
                               "--master-addr", "127.0.0.1", "--master-port", str(port),
                               *child, "--run-dir", str(tmp_path / "nodes")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=ENV) for rank in (0, 1)]
    for node in nodes:
        _, err = node.communicate(timeout=240)
        assert node.returncode == 0, err
    for other in ("torchrun", "nodes"):
        assert_close(tmp_path / "nproc", tmp_path / other, 0.0)
        assert (tmp_path / "nproc" / "metrics.csv").read_text() == \
            (tmp_path / other / "metrics.csv").read_text()


def test_a_killed_rank_ends_the_job_and_the_run_resumes_exactly(tmp_path: Path) -> None:
    path = spec(tmp_path, epochs=150)
    train(path, tmp_path / "whole", "--nproc", "2", "--checkpoint-every", "0")
    run = tmp_path / "broken"
    job = subprocess.Popen([sys.executable, "-m", "nndsl.cli", "train", str(path), "--device",
                            "cpu", "--run-dir", str(run), "--quiet", "--nproc", "2",
                            "--checkpoint-every", "0"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True)
    deadline = time.monotonic() + 120
    while checkpoint_epoch(run) < 3 and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.02)
    ranks = subprocess.run(["pgrep", "-P", str(job.pid)], capture_output=True,
                           text=True).stdout.split()  # the launcher's children: the ranks
    workers = [int(p) for p in ranks]
    assert workers, "no rank found to kill"
    killed_at = time.monotonic()
    os.kill(workers[-1], signal.SIGKILL)
    _, err = job.communicate(timeout=60)
    assert time.monotonic() - killed_at < 30
    assert job.returncode == 1 and "rank" in err and "SIGKILL" in err, err
    done = nndsl("train", "--resume", str(run), "--quiet")
    assert done.returncode == 0, done.stderr
    assert_close(tmp_path / "whole", run, 0.0)
    assert (tmp_path / "whole" / "metrics.csv").read_text() == (run / "metrics.csv").read_text()


def test_a_trainer_that_cannot_share_batches_is_refused(tmp_path: Path) -> None:
    from .conftest import ROOT

    done = nndsl("train", str(ROOT / "specs" / "perceptron_and.nn"), "--device", "cpu",
                 "--run-dir", str(tmp_path / "run"), "--quiet", "--nproc", "2")
    assert done.returncode == 1  # refused by the launcher, before any rank starts
    assert "perceptron_and.nn:11:13: error: trainer 'perceptron' cannot run data-parallel" \
        in done.stderr, done.stderr
    assert "rank" not in done.stderr and not (tmp_path / "run").exists()
    done = nndsl("train", str(spec(tmp_path)), "--backend", "numpy", "--run-dir",
                 str(tmp_path / "run2"), "--quiet", "--nproc", "2")
    assert done.returncode == 1 and "the numpy backend runs in one process" in done.stderr


def test_an_error_every_rank_meets_is_said_once(tmp_path: Path) -> None:
    path = spec(tmp_path)
    path.write_text(path.read_text().replace('builtin("spirals")', 'csv("missing.csv")'))
    done = nndsl("train", str(path), "--device", "cpu", "--run-dir", str(tmp_path / "run"),
                 "--quiet", "--nproc", "2")
    assert done.returncode == 1
    assert done.stderr.count("does not exist") == 1, done.stderr  # rank 0 says it, once
    assert "rank 0 exited with status 1" in done.stderr and "rank 1" not in done.stderr


def _reduced(monkeypatch: pytest.MonkeyPatch, parts: list[list[np.ndarray]], losses: list[float],
             f64: bool) -> list[tuple[float, list[np.ndarray]]]:
    """Two ranks' `reduce`, run in two threads over an in-process all-reduce that sums the
    ranks' buffers in their dtype, as gloo does; `f64` forces the float64 buffer."""
    import threading

    import torch
    from nndsl.backends.torch import data_parallel as dp

    if f64:
        monkeypatch.setattr(dp, "summing_dtype", lambda parts, world: torch.float64)
    meeting = threading.Barrier(2)
    buffers: list[list[torch.Tensor]] = [[], []]

    def all_reduce(x: torch.Tensor) -> None:
        rank = int(threading.current_thread().name)
        buffers[rank].append(x)
        meeting.wait()
        total = buffers[0][-1] + buffers[1][-1]
        meeting.wait()
        x.copy_(total)

    monkeypatch.setattr(dp.dist, "all_reduce", all_reduce)
    out: list[tuple[float, list[np.ndarray]]] = [(0.0, []), (0.0, [])]

    def rank(r: int) -> None:
        grads = {str(i): torch.as_tensor(a) for i, a in enumerate(parts[r])}
        loss = dp.DataParallel(r, 2, lambda: False).reduce(losses[r], grads, {})
        out[r] = (loss, [g.numpy() for g in grads.values()])

    threads = [threading.Thread(target=rank, args=(r,), name=str(r)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_two_ranks_sum_float32_gradients_in_float32_with_the_float64_sums_bits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)

    def wide(*shape: int) -> np.ndarray:  # magnitudes from 1e-40 (subnormal) to 1e30
        return (rng.standard_normal(shape) * 10.0 ** rng.uniform(-40, 30, shape)) \
            .astype(np.float32)

    parts = [[wide(300, 7), wide(7), np.zeros(3, np.float32)] for _ in range(2)]
    losses = [0.1234567890123, 0.9876543210987]
    f32 = _reduced(monkeypatch, parts, losses, f64=False)
    with monkeypatch.context() as m:
        f64 = _reduced(m, parts, losses, f64=True)
    for (loss32, grads32), (loss64, grads64) in zip(f32, f64, strict=True):
        assert loss32 == loss64 == losses[0] + losses[1]  # the loss still summed in float64
        for a, b in zip(grads32, grads64, strict=True):
            assert a.dtype == b.dtype == np.float32
            np.testing.assert_array_equal(a.view(np.int32), b.view(np.int32))
