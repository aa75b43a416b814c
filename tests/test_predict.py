"""`nndsl predict` on ONNX files and run directories: a 10-class model answers with class, label
and probability (top-k, every column on request); several named inputs from .npz or CSV
columns; every output; the output format follows the extension; 0 rows is an answer; and
every bad input (unknown extension, string or empty arrays, foreign models with string or 0-d
outputs or no inputs) is a clear error, never an internal one."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from nndsl.cli import main

from .conftest import ROOT

LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TWO_INPUTS = """model pair {
  input a: [batch, 2], b: [batch, 3]
  y = concat(a, b) -> dense(4) -> softmax
  s = b -> dense(1)
  output y, s
}
"""


def compiled(tmp_path: Path, spec: Path, labels: list[str] | None = None) -> Path:
    out = tmp_path / f"{spec.stem}.onnx"
    assert main(["compile", str(spec), "-o", str(out)]) == 0
    if labels is not None:
        model = onnx.load(str(out))
        entry = model.metadata_props.add()
        entry.key, entry.value = "class_labels", ",".join(labels)
        onnx.save(model, str(out))
    return out


@pytest.fixture
def digits(tmp_path: Path) -> tuple[Path, Path]:
    """The digits MLP (10 classes, labels in the metadata) and 7 rows of images."""
    model = compiled(tmp_path, ROOT / "specs" / "digits_mlp.nn", LABELS)
    rows = tmp_path / "rows.npy"
    np.save(rows, np.random.default_rng(0).random((7, 1, 8, 8)).astype(np.float32))
    return model, rows


@pytest.fixture
def pair(tmp_path: Path) -> Path:
    spec = tmp_path / "pair.nn"
    spec.write_text(TWO_INPUTS, encoding="utf-8")
    return compiled(tmp_path, spec)


def predict(*args: str | Path) -> int:
    return main(["predict", *map(str, args)])


def probabilities(model: Path, rows: Path) -> np.ndarray:
    from nndsl.export import load_onnx
    from nndsl.export import predict as run

    (probs,) = run(load_onnx(model), np.load(rows)).values()
    return probs


def test_a_classifier_prints_class_label_and_probability(digits, capsys) -> None:  # type: ignore[no-untyped-def]
    model, rows = digits
    assert predict(model, "--input", rows, "--top-k", "3") == 0
    out = capsys.readouterr().out
    probs = probabilities(model, rows)
    best = probs[0].argmax()
    second = np.argsort(-probs[0])[1]
    line = next(s for s in out.splitlines() if s.startswith("│   0 "))
    assert f" {best} " in line and LABELS[best] in line and f"{probs[0, best]:.4f}" in line
    assert f"{LABELS[second]} ({probs[0, second]:.3f})" in line
    assert "10 class probabilities per row (--all-columns prints them)" in out


def test_columns_are_cut_with_a_word_and_printed_on_request(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    spec, x = tmp_path / "wide.nn", tmp_path / "x.npy"
    spec.write_text("model wide {\n  input x: [batch, 3]\n  y = x -> dense(12)\n  output y\n}\n",
                    encoding="utf-8")
    wide = compiled(tmp_path, spec)
    np.save(x, np.ones((2, 3), dtype=np.float32))
    assert predict(wide, "--input", x) == 0
    out = capsys.readouterr().out
    assert "columns 0-7 of 12 shown; --all-columns prints every column" in out
    assert "predicted classes" not in out  # scores that are no distribution: a regression
    assert predict(wide, "--input", x, "--all-columns") == 0
    out = capsys.readouterr().out
    assert re.search(r"┃ +11 ┃", out) and "columns 0-7" not in out


def test_two_named_inputs_from_npz_and_csv_and_every_output(tmp_path, pair, capsys) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    a, b = rng.random((5, 2)).astype(np.float32), rng.random((5, 3)).astype(np.float32)
    np.savez(tmp_path / "rows.npz", b=b, a=a)
    with (tmp_path / "rows.csv").open("w", encoding="utf-8") as f:
        f.write("b_0,note,a_0,b_1,a_1,b_2\n")
        for i in range(5):
            cells = [b[i, 0], "text", a[i, 0], b[i, 1], a[i, 1], b[i, 2]]
            f.write(",".join(c if isinstance(c, str) else repr(float(c)) for c in cells) + "\n")
    for rows in ("rows.npz", "rows.csv"):
        target = tmp_path / f"{rows}.out.npz"
        assert predict(pair, "--input", tmp_path / rows, "--output", target) == 0
        with np.load(target) as got:
            assert got["y"].shape == (5, 4) and got["s"].shape == (5, 1)
            if rows == "rows.npz":
                want = dict(got)
            else:
                np.testing.assert_allclose(got["y"], want["y"], rtol=1e-6)
                np.testing.assert_allclose(got["s"], want["s"], rtol=1e-6)
    assert predict(pair, "--input", tmp_path / "rows.npz") == 0
    out = capsys.readouterr().out
    assert "predicted classes" in out and "s (5 rows)" in out


def test_a_missing_named_input_is_a_clear_error(tmp_path, pair, capsys) -> None:  # type: ignore[no-untyped-def]
    np.savez(tmp_path / "rows.npz", a=np.zeros((2, 2), np.float32))
    (tmp_path / "rows.csv").write_text("a_0,a_1,b_0\n1,2,3\n", encoding="utf-8")
    (tmp_path / "bare.csv").write_text("1,2,3,4,5\n", encoding="utf-8")
    np.save(tmp_path / "one.npy", np.zeros((2, 5), np.float32))
    messages = {"rows.npz": "has no array for input 'b'",
                "rows.csv": "has no column 'b_1' for input 'b'",
                "bare.csv": "has no header, but the model has several inputs",
                "one.npy": "the model has 2 inputs; a .npy file holds one array"}
    for name, message in messages.items():
        assert predict(pair, "--input", tmp_path / name) == 1
        err = capsys.readouterr().err
        assert message in err and "internal error" not in err, err


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".csv", ".json"])
def test_the_output_format_follows_the_extension(digits, suffix: str) -> None:  # type: ignore[no-untyped-def]
    model, rows = digits
    out = model.with_name("pred" + suffix)
    assert predict(model, "--input", rows, "--output", out, "--top-k", "2") == 0
    probs = probabilities(model, rows)
    best = probs.argmax(axis=1)
    if suffix == ".npy":
        np.testing.assert_allclose(np.load(out), probs)
    elif suffix == ".npz":
        with np.load(out) as got:
            np.testing.assert_allclose(got["probs"], probs)
            assert got["class"].tolist() == best.tolist()
            assert got["label"].tolist() == [LABELS[c] for c in best]
    elif suffix == ".csv":
        with out.open(encoding="utf-8") as f:
            got = list(csv.DictReader(f))
        assert [r["label"] for r in got] == [LABELS[c] for c in best]
        assert list(got[0])[:6] == ["class", "label", "probability", "class_2", "label_2",
                                    "probability_2"]
        assert float(got[0]["probs_9"]) == pytest.approx(probs[0, 9], rel=1e-6)
    else:
        got = json.loads(out.read_text(encoding="utf-8"))
        assert got["rows"] == 7 and np.allclose(got["outputs"]["probs"], probs)
        assert [p["label"] for p in got["predictions"]] == [LABELS[c] for c in best]
        assert got["predictions"][0]["probability"] == pytest.approx(probs[0].max(), rel=1e-6)


def test_an_unknown_output_extension_is_refused(digits, capsys) -> None:  # type: ignore[no-untyped-def]
    model, rows = digits
    for name in ("pred.txt", "pred"):
        assert predict(model, "--input", rows, "--output", model.with_name(name)) == 1
        err = capsys.readouterr().err
        assert "unknown extension" in err and "expected: .npy, .npz, .csv, .json" in err
        assert not model.with_name(name).exists()


@pytest.mark.parametrize("suffix", ["", ".csv", ".json", ".npz", ".npy"])
def test_zero_rows_is_an_answer(tmp_path, digits, pair, suffix: str, capsys) -> None:  # type: ignore[no-untyped-def]
    model, _ = digits
    np.save(tmp_path / "none.npy", np.zeros((0, 1, 8, 8), np.float32))
    (tmp_path / "none.csv").write_text("a_0,a_1,b_0,b_1,b_2\n", encoding="utf-8")
    for m, rows in ((model, "none.npy"), (pair, "none.csv")):
        out = tmp_path / f"out{suffix}"
        extra = ["--output", out] if suffix else []
        if suffix == ".npy" and m == pair:
            continue  # two outputs: .npy is refused, tested below
        assert predict(m, "--input", tmp_path / rows, *extra) == 0, capsys.readouterr().err
        printed = capsys.readouterr().out
        if not suffix:
            assert "(0 rows)" in printed
        elif suffix == ".csv":
            assert len(out.read_text(encoding="utf-8").splitlines()) == 1  # the header
        elif suffix == ".json":
            assert json.loads(out.read_text(encoding="utf-8"))["rows"] == 0
        else:
            loaded = np.load(out)
            first = loaded if suffix == ".npy" else loaded[loaded.files[0]]
            assert len(first) == 0


def test_several_outputs_do_not_fit_one_npy(tmp_path, pair, capsys) -> None:  # type: ignore[no-untyped-def]
    np.savez(tmp_path / "rows.npz", a=np.zeros((2, 2), np.float32), b=np.zeros((2, 3), np.float32))
    assert predict(pair, "--input", tmp_path / "rows.npz", "--output", tmp_path / "o.npy") == 1
    assert "a .npy file holds one array; the model has 2 outputs (y, s)" in capsys.readouterr().err


def test_bad_rows_are_clear_errors(tmp_path, digits, capsys) -> None:  # type: ignore[no-untyped-def]
    model, _ = digits
    np.save(tmp_path / "text.npy", np.array([["a", "b"]]))
    np.save(tmp_path / "scalar.npy", np.float32(3.0))
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "cells.csv").write_text("1,2\n3,x\n", encoding="utf-8")
    (tmp_path / "rows.txt").write_text("1,2\n", encoding="utf-8")
    messages = {"text.npy": "holds <U1 values, not numbers", "scalar.npy": "single value (0-d)",
                "empty.npy": "is not a readable NumPy .npy array",
                "cells.csv": "cells.csv:2:3: error: data row 2, column 2: 'x' is not a number",
                "rows.txt": "cannot read rows from 'rows.txt'"}
    for name, message in messages.items():
        assert predict(model, "--input", tmp_path / name) == 1
        err = capsys.readouterr().err
        assert message in err and "internal error" not in err, err


def _foreign(tmp_path: Path, name: str, inputs: list, outputs: list, nodes: list) -> Path:
    graph = helper.make_graph(nodes, name, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def test_foreign_models_predict_cannot_run_are_clear_errors(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])
    models = {
        "strings": ([x], [helper.make_tensor_value_info("s", TensorProto.STRING, ["n", 2])],
                    [helper.make_node("Cast", ["x"], ["s"], to=TensorProto.STRING)],
                    "output 's' holds object values"),
        "scalar": ([x], [helper.make_tensor_value_info("m", TensorProto.FLOAT, [])],
                   [helper.make_node("ReduceSum", ["x"], ["m"], keepdims=0)],
                   "output 'm' is a single value (0-d)"),
        "constant": ([], [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 1])],
                     [helper.make_node("Constant", [], ["c"], value=helper.make_tensor(
                         "v", TensorProto.FLOAT, [1, 1], [1.0]))],
                     "has no inputs"),
    }
    np.save(tmp_path / "x.npy", np.zeros((2, 2), np.float32))
    for name, (inputs, outputs, nodes, message) in models.items():
        path = _foreign(tmp_path, name, inputs, outputs, nodes)
        assert predict(path, "--input", tmp_path / "x.npy") == 1
        err = capsys.readouterr().err
        assert message in err and "internal error" not in err, err


def test_a_run_directory_without_a_model_says_why(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    np.save(tmp_path / "x.npy", np.zeros((2, 2), np.float32))
    assert predict(tmp_path, "--input", tmp_path / "x.npy") == 1
    assert f"the run directory {tmp_path} has no model.onnx" in capsys.readouterr().err
