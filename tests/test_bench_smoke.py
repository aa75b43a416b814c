"""`python -m bench --quick` runs every case end to end on tiny sizes (one repeat), so the suite
cannot rot; the table and the JSON have the expected shape. Timings are never checked. The peers
(Keras 3, Lightning) run when the [bench] extra is installed and say "not installed" when not."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from .conftest import ROOT  # noqa: E402

CASES = {"1 training", "2 inference", "3 numpy reference", "4 front end", "5 start-up",
         "7 evolution", "8 diagnostics", "9 large data", "10 truncated BPTT",
         "11 data-parallel", "12 step options", "13 larger than memory",
         "14 evaluation memory"}
ROW_KEYS = {"case", "workload", "unit", "a", "b", "ratio", "goal", "met"}
PEERS = {"Keras 3 fit": "keras", "Lightning fit": "pytorch_lightning"}
TRAINED = ("digits_mlp", "digits_cnn", "sine_lstm")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads(out.read_text(encoding="utf-8"))


def test_every_case_reports_ratios(quick_run: tuple[str, dict]) -> None:
    _, report = quick_run
    assert {row["case"] for row in report["rows"]} == CASES
    for row in report["rows"]:
        assert set(row) == ROW_KEYS and row["unit"] in ("s", "MiB")
        median, runs = f"median_{row['unit']}", f"runs_{row['unit']}"
        sides = ("a",) if "missing" in row["b"] else ("a", "b")
        for side in sides:
            assert row[side]["label"] and len(row[side][runs]) == 1
            assert row[side][median] > 0
        if "missing" in row["b"]:
            assert row["b"]["label"] in PEERS and row["b"]["missing"] == "not installed"
            assert row["ratio"] is None and row["met"] is None
            continue
        assert row["ratio"] == pytest.approx(row["a"][median] / row["b"][median])
        assert row["met"] in (True, False, None) and (row["met"] is None) == (not row["goal"])


def test_peers_run_when_installed(quick_run: tuple[str, dict]) -> None:
    """Each peer has a row per trained spec: timed when its package imports, else marked."""
    stdout, report = quick_run
    for label, module in PEERS.items():
        rows = [r for r in report["rows"] if r["b"]["label"] == label]
        assert sorted(r["workload"].split()[0] for r in rows) == sorted(TRAINED)
        present = importlib.util.find_spec(module) is not None
        assert all(("missing" not in r["b"]) == present for r in rows)
        if not present:
            assert re.search(rf"{re.escape(label)} +not installed", stdout)


def test_large_data_reports_time_and_memory(quick_run: tuple[str, dict]) -> None:
    _, report = quick_run
    rows = [r for r in report["rows"] if r["case"] == "9 large data"]
    assert [r["unit"] for r in rows] == ["s", "MiB"]
    assert all(r["a"]["label"] == "nndsl train" and r["b"]["label"] == "hand-written script"
               for r in rows)


def test_header_names_the_machine(quick_run: tuple[str, dict]) -> None:
    stdout, report = quick_run
    machine = report["machine"]
    assert machine["cores"] >= 1 and machine["threads"] == 1 and machine["cpu"]
    assert stdout.startswith("nndsl bench — CPU ") and machine["cpu"] in stdout.splitlines()[0]
    assert f"matplotlib {machine['matplotlib']}" in stdout.splitlines()[0]  # draws the plots
    assert report["settings"]["quick"] is True and report["settings"]["repeats"] == 1
    if machine["gpu"] is None:
        assert not report["gpu_rows"] and any("GPU: none" in n for n in report["notes"])


def test_the_table_shows_every_row(quick_run: tuple[str, dict]) -> None:
    stdout, report = quick_run
    header = next(line for line in stdout.splitlines() if line.startswith("case "))
    assert header.split() == ["case", "workload", "A", "time", "A", "B", "time", "B", "A/B",
                              "goal", "met"]
    for row in report["rows"]:
        assert any(row["workload"] in line and row["a"]["label"] in line
                   for line in stdout.splitlines())


def test_unknown_case_is_a_usage_error() -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--cases", "nope"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown case(s) nope" in done.stderr


def test_hand_written_twins_match_the_specs() -> None:
    """The torch modules compute what the specs compute, from the same initial weights."""
    import numpy as np
    import torch
    from nndsl.backends.numpy.prims import make_numpy_prims

    from bench.inference import check_outputs
    from bench.models import RECIPES, load_workload
    from nndsl.interpreter import run

    for name in RECIPES:
        w = load_workload(name)
        x = w.inputs(3)
        want = run(w.graph, make_numpy_prims(), {w.graph.inputs[0][0]: x},
                   w.weights).outputs(w.graph)[0]
        with torch.no_grad():
            got = w.inference_module()(torch.as_tensor(x)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
        assert check_outputs(w) < 1e-5  # and both ONNX exports agree


def test_process_peak_memory_is_the_process_own(tmp_path) -> None:
    """A small child of a large parent reports its own peak, not the parent's size."""
    import numpy as np

    from bench.largedata import run_process

    ballast = np.ones(64 * 2**20 // 8)  # 64 MiB held here while the child runs
    _, small = run_process([sys.executable, "-c", "pass"], tmp_path / "small.log")
    _, large = run_process([sys.executable, "-c", "b = bytearray(96 * 2**20)"],
                           tmp_path / "large.log")
    assert ballast.sum() > 0 and small < 60 < 96 < large
    with pytest.raises(RuntimeError, match="exited 3"):
        run_process([sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "fail.log")


def test_keras_twins_hold_the_same_weights() -> None:
    """Keras's networks compute what the torch twins compute from nndsl's initial weights (the
    layouts are transposed, the LSTM's two biases summed)."""
    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed (the [bench] extra)")
    import numpy as np
    import torch

    from bench.keras_peer import build
    from bench.models import RECIPES, load_workload

    for name in RECIPES:
        w = load_workload(name, rows=8)
        x = w.inputs(3)
        with torch.no_grad():
            want = w.module().eval()(torch.as_tensor(x)).numpy()
        got = np.asarray(build(w, "cpu")(x, training=False).detach().cpu())
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
