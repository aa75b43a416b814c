"""`python -m bench --quick` runs every case end to end on tiny sizes (one repeat), so the suite
cannot rot; the table and the JSON have the expected shape. Timings are never checked."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from .conftest import ROOT  # noqa: E402

CASES = {"1 training", "2 inference", "3 numpy reference", "4 front end", "5 start-up",
         "7 evolution"}
ROW_KEYS = {"case", "workload", "a", "b", "ratio", "goal", "met"}


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
        assert set(row) == ROW_KEYS
        for side in ("a", "b"):
            assert row[side]["label"] and len(row[side]["runs_s"]) == 1
            assert row[side]["median_s"] > 0
        assert row["ratio"] == pytest.approx(row["a"]["median_s"] / row["b"]["median_s"])
        assert row["met"] in (True, False, None) and (row["met"] is None) == (not row["goal"])


def test_header_names_the_machine(quick_run: tuple[str, dict]) -> None:
    stdout, report = quick_run
    machine = report["machine"]
    assert machine["cores"] >= 1 and machine["threads"] == 1 and machine["cpu"]
    assert stdout.startswith("nndsl bench — CPU ") and machine["cpu"] in stdout.splitlines()[0]
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
