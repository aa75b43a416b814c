"""`nndsl evaluate`: a run directory scored on its own validation rows gives the loss and
metrics metrics.csv recorded; classifiers get a confusion matrix (table, JSON and PNG) and
per-class precision, recall and F1; ONNX files take their inputs by name and --target (text
labels mapped by the model's class labels); regressions get mae, rmse and r2; mistakes are
clear errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from nndsl.cli import main

from .conftest import ROOT

SPEC = """model clf {
  input x: [batch, 64]
  h = x -> dense(16) -> relu
  probs = h -> dense(10) -> softmax
  output probs
}

train clf {
  data = npz("digits.npz")
  target y: [batch]
  loss = cross_entropy(probs, y)
  optimizer = adam(lr=0.01)
  metrics = [accuracy, f1]
  split = 0.25
  batch = 32
  epochs = 3
  seed = 4
}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small digits classifier trained on the NumPy backend, and its data."""
    folder = tmp_path_factory.mktemp("evaluate")
    with np.load(ROOT / "nndsl" / "data" / "digits.npz") as digits:
        x, y = digits["X"][:400].reshape(400, 64).astype(np.float32), digits["y"][:400]
    np.savez(folder / "digits.npz", x=x, y=y)
    (folder / "clf.nn").write_text(SPEC, encoding="utf-8")
    assert main(["train", str(folder / "clf.nn"), "--backend", "numpy", "--quiet",
                 "--run-dir", str(folder / "run")]) == 0
    return folder


def last_row(run_dir: Path) -> dict[str, str]:
    with (run_dir / "metrics.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))[-1]


def held_out(folder: Path) -> Path:
    """The validation rows of the run, as the split drew them."""
    from nndsl.data.dataset import split

    with np.load(folder / "digits.npz") as data:
        val = split(dict(data), 0.25, 4).val
    np.savez(folder / "val.npz", **val)
    return folder / "val.npz"


def test_the_validation_rows_score_as_metrics_csv_recorded(run: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    val = held_out(run)
    assert main(["evaluate", str(run / "run"), "--data", str(val), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    row = last_row(run / "run")
    assert report["rows"] == 100 and report["task"] == "classes"
    assert report["loss"] == pytest.approx(float(row["val_loss"]), rel=1e-5)
    assert report["metrics"]["accuracy"] == pytest.approx(float(row["val_accuracy"]))
    assert report["metrics"]["f1"] == pytest.approx(float(row["val_f1"]), rel=1e-6)
    assert set(report["metrics"]) == {"accuracy", "precision", "recall", "f1",
                                      "top_k_accuracy"}
    classes = report["classes"]
    matrix = np.array(classes["confusion"])
    assert matrix.shape == (10, 10) and matrix.sum() == 100
    assert np.trace(matrix) / 100 == pytest.approx(report["metrics"]["accuracy"])
    assert classes["support"] == matrix.sum(axis=1).tolist()
    recall = np.diag(matrix) / np.maximum(matrix.sum(axis=1), 1)
    np.testing.assert_allclose(classes["recall"], recall, rtol=1e-6)


def test_the_table_shows_the_confusion_matrix_and_per_class_f1(run: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    val = held_out(run)
    assert main(["evaluate", str(run / "run"), "--data", str(val)]) == 0
    out = capsys.readouterr().out
    assert "per class" in out and "f1" in out and "support" in out
    assert "confusion matrix (rows: actual class, columns: predicted class)" in out
    assert f"confusion matrix drawn in {run / 'run' / 'confusion.png'}" in out
    from PIL import Image

    image = np.asarray(Image.open(run / "run" / "confusion.png").convert("L"))
    assert image.shape[0] > 300 and image.shape[1] > 300 and image.std() > 10  # not blank


def test_an_onnx_file_with_text_labels(tmp_path: Path, run: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    model = onnx.load(str(run / "run" / "model.onnx"))
    entry = next(p for p in model.metadata_props if p.key == "class_labels")
    entry.value = ",".join(names)
    onnx.save(model, str(tmp_path / "m.onnx"))
    with np.load(held_out(run)) as val:
        x, y = val["x"], val["y"]
    with (tmp_path / "val.csv").open("w", encoding="utf-8") as f:
        f.write(",".join(f"p{j}" for j in range(64)) + ",digit\n")
        for row, label in zip(x, y, strict=True):
            f.write(",".join(repr(float(v)) for v in row) + f",{names[label]}\n")
    assert main(["evaluate", str(tmp_path / "m.onnx"), "--data", str(tmp_path / "val.csv"),
                 "--target", "digit", "--json", "--no-plot"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["classes"]["labels"] == names and report["loss"] is None
    assert report["metrics"]["accuracy"] == pytest.approx(float(last_row(run / "run")[
        "val_accuracy"]))
    assert not (tmp_path / "m.confusion.png").exists()


def test_a_regression_gets_mae_rmse_and_r2(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "reg.nn"
    spec.write_text("model reg {\n  input a: [batch, 2]\n  y = a -> dense(1, weight=[[1.0, 2.0]],"
                    " bias=0.5)\n  output y\n}\n", encoding="utf-8")
    assert main(["compile", str(spec), "-o", str(tmp_path / "reg.onnx")]) == 0
    capsys.readouterr()
    a = np.random.default_rng(0).standard_normal((30, 2))
    t = a @ [1.0, 2.0] + 0.5 + 0.1 * np.random.default_rng(1).standard_normal(30)
    np.savez(tmp_path / "rows.npz", a=a.astype(np.float32), t=t)
    assert main(["evaluate", str(tmp_path / "reg.onnx"), "--data", str(tmp_path / "rows.npz"),
                 "--target", "t", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    y = a.astype(np.float32) @ np.array([1.0, 2.0], np.float32) + np.float32(0.5)
    assert report["task"] == "values" and set(report["metrics"]) == {"mae", "rmse", "r2"}
    assert report["metrics"]["rmse"] == pytest.approx(np.sqrt(np.mean((y - t) ** 2)), rel=1e-4)
    r2 = 1 - np.sum((t - y) ** 2) / np.sum((t - t.mean()) ** 2)
    assert report["metrics"]["r2"] == pytest.approx(r2, rel=1e-4)
    assert "classes" not in report


@pytest.mark.parametrize("args,message", [
    (["--data", "val.npz"], "which of val.npz's columns or arrays is the target?"),
    (["--data", "val.npz", "--target", "label"], "val.npz has no array 'label'"),
    (["--data", "val.txt", "--target", "y"], "cannot evaluate on 'val.txt'"),
    (["--data", "missing.csv", "--target", "y"], "no such data file"),
    (["--data", "bad.csv", "--target", "y"],
     "bad.csv:2:129: error: data row 1, column 65 ('y'): 'eleven' is not one of the model's 10"),
])
def test_mistakes_are_clear_errors(run: Path, args: list[str], message: str, capsys) -> None:  # type: ignore[no-untyped-def]
    held_out(run)
    (run / "val.txt").write_text("1\n", encoding="utf-8")
    (run / "bad.csv").write_text(",".join(f"p{j}" for j in range(64)) + ",y\n" +
                                 ",".join(["0"] * 64) + ",eleven\n", encoding="utf-8")
    args = [str(run / a) if a.startswith(("val", "missing", "bad")) else a for a in args]
    assert main(["evaluate", str(run / "run" / "model.onnx"), *args]) == 1
    err = capsys.readouterr().err
    assert message in err and "internal error" not in err, err


def test_predict_on_the_run_directory_leaves_the_target_column_out(run: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    with np.load(held_out(run)) as val:
        x, y = val["x"][:4], val["y"][:4]
    with (run / "rows.csv").open("w", encoding="utf-8") as f:
        f.write(",".join(f"p{j}" for j in range(64)) + ",y\n")
        for row, label in zip(x, y, strict=True):
            f.write(",".join(repr(float(v)) for v in row) + f",{label}\n")
    assert main(["predict", str(run / "run"), "--input", str(run / "rows.csv"), "--output",
                 str(run / "rows.json")]) == 0, capsys.readouterr().err
    got = json.loads((run / "rows.json").read_text(encoding="utf-8"))
    from nndsl.export import load_onnx, predict

    (probs,) = predict(load_onnx(run / "run" / "model.onnx"), x).values()
    assert [p["class"] for p in got["predictions"]] == probs.argmax(axis=1).tolist()
    assert [p["label"] for p in got["predictions"]] == [str(c) for c in probs.argmax(axis=1)]
