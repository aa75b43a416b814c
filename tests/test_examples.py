"""Every walk-through in examples/ runs as its README says (`bash run.sh` in its folder, with
this checkout's nndsl and python first on PATH), on a copy, and shows what it promises."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.slow  # each trains a model: 10-40 s


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("examples") / "examples"
    shutil.copytree(ROOT / "examples", copy, ignore=shutil.ignore_patterns(
        "runs", "*.npz", "*.npy", "*.csv", "*.onnx"))
    return copy


def run_sh(folder: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                                 f"{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", "run.sh"], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    return done.stdout


def test_csv_classifier(examples: Path) -> None:
    folder = examples / "csv_classifier"
    out = run_sh(folder)
    assert "per class" in out and "confusion matrix" in out
    accuracy = next(line for line in out.splitlines() if "│ accuracy" in line)
    assert float(accuracy.split("│")[2]) > 0.8
    assert (folder / "runs" / "flowers" / "confusion.png").stat().st_size > 10_000
    with (folder / "predictions.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and all(r["label"] in {"setosa", "versicolor", "virginica"}
                                  for r in rows)
    assert "│ virginica " in out and "data.json" in os.listdir(folder / "runs" / "flowers")
    assert all(0.3 < float(r["probability"]) <= 1.0 for r in rows)


def test_image_cnn(examples: Path) -> None:
    out = run_sh(examples / "image_cnn")
    accuracy = next(line for line in out.splitlines() if "│ accuracy" in line)
    assert float(accuracy.split("│")[2]) > 0.8
    assert "predicted classes (4 rows)" in out


def test_sequence(examples: Path) -> None:
    out = run_sh(examples / "sequence")
    r2 = next(line for line in out.splitlines() if "│ r2" in line)
    assert float(r2.split("│")[2]) > 0.5
    assert "next (3 rows)" in out


def test_deploying_with_onnxruntime_alone(examples: Path) -> None:
    folder = examples / "deploy_onnxruntime"
    out = run_sh(folder)  # trains the CSV example first if its model is not there yet
    assert out.count("probability") == 5
    check = ("import runpy, sys; sys.argv = ['deploy.py', 'flowers.onnx', "
             "'../csv_classifier/new.csv']; runpy.run_path('deploy.py', run_name='__main__'); "
             "assert not [m for m in sys.modules if m.split('.')[0] == 'nndsl'], 'nndsl imported'")
    done = subprocess.run([sys.executable, "-c", check], cwd=folder, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == out
