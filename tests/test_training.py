"""`nndsl train --backend numpy`: the reference trainer learns, and writes its run directory."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from nndsl.backends.numpy.prims import make_numpy_prims

from nndsl.cli import main
from nndsl.interpreter import run
from nndsl.program import load

from .conftest import ROOT


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _forward(spec: str, run_dir: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    program, _ = load(ROOT / "specs" / spec)
    graph = program.models[0]
    weights = dict(np.load(run_dir / "weights.npz"))
    return run(graph, make_numpy_prims(), feeds, weights).env


def _train_numpy(spec: str, run_dir: Path, *extra: str) -> None:
    """`nndsl train specs/SPEC --backend numpy` into run_dir; it must succeed."""
    args = ["train", str(ROOT / "specs" / spec), "--backend", "numpy", "--run-dir", str(run_dir)]
    assert main([*args, *extra, "--quiet"]) == 0


def test_xor_reaches_full_accuracy(tmp_path: Path) -> None:
    _train_numpy("xor.nn", tmp_path)
    rows = _rows(tmp_path)
    assert float(rows[-1]["accuracy"]) == 1.0
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    out = _forward("xor.nn", tmp_path, {"x": x})["out"]
    assert (out.ravel() > 0.5).tolist() == [False, True, True, False]


def test_838_autoencoder_learns_distinct_codes(tmp_path: Path) -> None:
    _train_numpy("autoencoder_838.nn", tmp_path)
    env = _forward("autoencoder_838.nn", tmp_path, {"x": np.eye(8, dtype=np.float32)})
    assert env["xhat"].argmax(axis=1).tolist() == list(range(8))
    codes = env["code"]
    distance = np.linalg.norm(codes[:, None] - codes[None], axis=-1) + np.eye(8) * 9
    assert distance.min() > 0.2


def test_run_directory_layout_and_step_rows(tmp_path: Path) -> None:
    _train_numpy("digits_mlp.nn", tmp_path, "--steps", "5")
    rows = _rows(tmp_path)
    steps = [r for r in rows if r["kind"] == "step"]
    assert [int(r["step"]) for r in steps] == [1, 2, 3, 4, 5]
    assert all(r["lr"] and r["loss"] for r in steps)
    weights = np.load(tmp_path / "weights.npz")
    assert {"dense_1.weight", "dense_1.bias", "dense_3.weight"} <= set(weights.files)
    assert (tmp_path / "spec.nn").exists() and (tmp_path / "config.json").exists()
    png = (tmp_path / "loss.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png[12:16] == b"IHDR"
    assert int.from_bytes(png[16:20], "big") == 640 and int.from_bytes(png[20:24], "big") == 400


def test_recorded_loss_is_the_loss_before_the_update(tmp_path: Path) -> None:
    """Step 1's loss equals the loss of the freshly initialised model on that batch."""
    from nndsl.backends.numpy.autodiff import loss_and_grad

    from nndsl.data.builtin import builtin
    from nndsl.initialize import initialize

    _train_numpy("xor.nn", tmp_path, "--steps", "1")
    program, _ = load(ROOT / "specs" / "xor.nn")
    graph, spec = program.models[0], program.trains[0]
    data = builtin(ROOT, name="xor")
    g = loss_and_grad(graph, spec, data, initialize(graph, 1))
    assert float(_rows(tmp_path)[0]["loss"]) == pytest.approx(float(g.value), rel=1e-6)


def test_hebbian_hopfield_recalls_a_corrupted_pattern(tmp_path: Path) -> None:
    from nndsl.data.builtin import builtin

    _train_numpy("hopfield.nn", tmp_path)
    patterns = builtin(ROOT, name="hopfield16")["x"]
    probes = patterns.copy()
    probes[:, [0, 5]] *= -1  # two flipped bits per pattern
    recalled = _forward("hopfield.nn", tmp_path, {"x": probes})["recalled"]
    np.testing.assert_array_equal(recalled, patterns)


def test_missing_data_arrays_fail_before_anything_is_written(
    tmp_path: Path, write_spec, capsys
) -> None:  # type: ignore[no-untyped-def]
    spec = write_spec("""
model m { input features: [batch, 2]
  y = features -> dense(1)
  output y }
train m { data = builtin("xor"); target t: [batch, 1]; loss = mse(y, t) }
""")
    run_dir = tmp_path / "run"
    assert (
        main(["train", str(spec), "--backend", "numpy", "--run-dir", str(run_dir), "--quiet"]) == 1
    )
    err = capsys.readouterr().err
    assert "the data has no array for 'features', 't'" in err and "hint:" in err
    assert not run_dir.exists()


def test_exploding_loss_stops_with_a_clear_error(tmp_path: Path, write_spec, capsys) -> None:  # type: ignore[no-untyped-def]
    spec = write_spec("""
model m { input x: [batch, 2]
  out = x -> dense(1, init=normal(0, 10))
  output out }
train m { data = builtin("xor"); target y: [batch, 1]; loss = mse(out, y)
  optimizer = sgd(lr=1e6); epochs = 50 }
""")
    code = main(
        ["train", str(spec), "--backend", "numpy", "--run-dir", str(tmp_path / "run"), "--quiet"]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "the loss became non-finite at epoch" in err
    assert "the learning rate (sgd at 1e+06) is likely too high" in err


def test_numpy_training_imports_no_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        f"import sys; from nndsl.cli import main\n"
        f"assert main(['train', {str(ROOT / 'specs' / 'xor.nn')!r}, '--backend', 'numpy', "
        f"'--steps', '3', "
        f"'--quiet', '--run-dir', {str(tmp_path)!r}]) == 0\n"
        "assert 'torch' not in sys.modules, 'the NumPy path imported torch'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
