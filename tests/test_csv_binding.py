"""CSV data bound by name: a target reads the column named after it, inputs read listed columns,
ranges or every other column; text class labels become class ids by their sorted order, kept
in the run (data.json) and the exported model; standardize uses the training rows' statistics
and is folded into model.onnx, so deployment feeds raw values; cell errors name the file's own
line; `nndsl check` binds the data when the file is there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from nndsl.cli import main
from nndsl.data.binding import Binding, Request
from nndsl.errors import NndslError
from nndsl.ops.registry import get

LABELS = ["setosa", "versicolor", "virginica"]
MEANS = np.array([[5.0, 3.4, 1.5, 0.25], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.6, 2.0]])
HEADER = "sepal_length,sepal_width,petal_length,petal_width,species"


def flowers(n: int, seed: int, labels: bool = True) -> str:
    rng = np.random.default_rng(seed)
    species = rng.integers(0, 3, n)
    x = MEANS[species] + [0.3, 0.3, 0.3, 0.15] * rng.standard_normal((n, 4))
    rows = [",".join(f"{v:.2f}" for v in row) + (f",{LABELS[s]}" if labels else "")
            for row, s in zip(x, species, strict=True)]
    return "\n".join([HEADER if labels else HEADER.rsplit(",", 1)[0], *rows]) + "\n"


SPEC = """model flowers {{
  input x: [batch, 4]
  h = x -> dense(8) -> relu
  probs = h -> dense(3) -> softmax
  output probs
}}

train flowers {{
  data = csv("flowers.csv"{extra})
  target species: [batch]
  loss = cross_entropy(probs, species)
  optimizer = adam(lr=0.05)
  metrics = [accuracy]
  split = 0.25
  batch = 16
  epochs = {epochs}
  seed = 1
}}
"""


def csv_call(tmp_path: Path, text: str, request: Request | None = None,
             **params: Any) -> Any:
    (tmp_path / "d.csv").write_text(text, encoding="utf-8")
    return get("csv", "data").compute(tmp_path, request, path="d.csv", **params)


# ---- the binding rule ----------------------------------------------------------------------

def test_a_target_reads_the_column_named_after_it_and_text_labels_become_sorted_ids(
        tmp_path: Path) -> None:
    text = "a,b,species,c\n1,2,virginica,3\n4,5,setosa,6\n7,8,versicolor,9\n"
    data = csv_call(tmp_path, text, Request(("x",), ("species",)))
    np.testing.assert_array_equal(data["x"], [[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    np.testing.assert_array_equal(data["species"], [[2], [0], [1]])
    assert data.binding.labels == {"species": LABELS}
    assert data.binding.columns == {"x": ["a", "b", "c"], "species": ["species"]}
    stored = Binding(labels={"species": ["virginica", "setosa", "versicolor", "other"]})
    kept = csv_call(tmp_path, text, Request(("x",), ("species",), stored))
    np.testing.assert_array_equal(kept["species"], [[0], [1], [2]])  # the stored run's ids


def test_inputs_by_name_number_and_range(tmp_path: Path) -> None:
    text = "id,a,b,c,d,label\n9,1,2,3,4,0\n8,5,6,7,8,1\n"
    want = Request(("x",), ("y",))
    ranged = csv_call(tmp_path, text, want, inputs="a:c", target="label")
    np.testing.assert_array_equal(ranged["x"], [[1, 2, 3], [5, 6, 7]])
    assert ranged.binding.columns["x"] == ["a", "b", "c"]
    listed = csv_call(tmp_path, text, want, inputs=("d", "a"), target=-1)
    np.testing.assert_array_equal(listed["x"], [[4, 1], [8, 5]])
    mixed = csv_call(tmp_path, text, want, inputs=("1:2", "d"), target="label")
    np.testing.assert_array_equal(mixed["x"], [[1, 2, 4], [5, 6, 8]])
    np.testing.assert_array_equal(mixed["y"], [[0], [1]])


def test_several_inputs_read_their_own_columns(tmp_path: Path) -> None:
    text = "a,b_0,b_1,y\n1,2,3,0\n4,5,6,1\n"
    data = csv_call(tmp_path, text, Request(("a", "b"), ("y",)))
    np.testing.assert_array_equal(data["a"], [[1], [4]])
    np.testing.assert_array_equal(data["b"], [[2, 3], [5, 6]])


@pytest.mark.parametrize(("text", "request_", "params", "message"), [
    ("a,b,label\n1,2,0\n", Request(("x",), ("y",)), {},
     "target 'y' has no column in d.csv"),
    ("a,b,label\n1,2,0\n", Request(("x",), ("b",)), {"target": "label"},
     "target= lists column 'label', which no target reads"),
    ("a,b,y\n1,2,0\n", Request(("p", "q"), ("y",)), {"inputs": ("a",)},
     "inputs= lists the columns of a model's one input; this model has 2: p, q"),
    ("a,b,y\n1,2,0\n", Request(("x",), ("y",)), {"inputs": ("a", "y")},
     "column 'y' is both an input (inputs=) and a target"),
    ("a,b,c,y\n1,2,3,0\n", Request(("x",), ("y",)), {"inputs": "c:a"},
     "a range whose first column comes before its last"),
    ("a,b,y\n1,2,0\n", Request(("p", "q"), ("y",)), {},
     "input 'p' has no column in d.csv"),
    ("a,b,y\n1,2,0\n", Request(("x",), ("y",)), {"inputs": ("a", "a")}, "distinct columns"),
])
def test_bindings_that_cannot_work_are_errors(tmp_path: Path, text: str, request_: Request,
                                              params: dict[str, Any], message: str) -> None:
    with pytest.raises(NndslError, match=message.replace("(", r"\(").replace(")", r"\)")):
        csv_call(tmp_path, text, request_, **params)


def test_cell_errors_name_the_files_own_line(tmp_path: Path) -> None:
    """The header is line 1; a quoted field over two lines makes the next row start on line 4;
    a bad cell after the quoted one is on the quoted field's last line."""
    want = Request(("x",), ("label",))
    text = 'a,note,b,label\n1,"two\nlines",2,setosa\n3,ok,x,setosa\n'
    with pytest.raises(NndslError) as err:
        csv_call(tmp_path, text, want, inputs=("a", "b"))
    e = err.value
    assert e.message == "data row 2, column 3 ('b'): 'x' is not a number"
    assert (e.span.line, e.span.column) == (4, 6)
    text = 'a,note,b,label\n1,"two\nlines",x,setosa\n'
    with pytest.raises(NndslError) as err:
        csv_call(tmp_path, text, want, inputs=("a", "b"))
    assert err.value.span.line == 3
    with pytest.raises(NndslError) as err:
        csv_call(tmp_path, "a,label\n1,setosa\n\n2,\n", want)
    assert err.value.span.line == 4 and "an empty cell is not a class label" in err.value.message
    stored = Binding(labels={"label": LABELS})
    with pytest.raises(NndslError) as err:
        csv_call(tmp_path, "a,label\n1,setosa\n2,virginca\n", Request(("x",), ("label",),
                                                                      stored))
    e = err.value
    assert e.span.line == 3 and "'virginca' is not one of the run's 3 class labels" in e.message
    assert e.hint == "did you mean 'virginica'?"


# ---- standardisation -----------------------------------------------------------------------

def test_statistics_come_from_the_training_rows_only(tmp_path: Path) -> None:
    from nndsl.data.dataset import load_dataset
    from nndsl.program import load
    from nndsl.training.run import plan

    (tmp_path / "flowers.csv").write_text(flowers(40, 3), encoding="utf-8")
    (tmp_path / "s.nn").write_text(SPEC.format(extra=", standardize=true", epochs=1),
                                   encoding="utf-8")
    program, _ = load(tmp_path / "s.nn")
    spec = program.trains[0]
    graphs = [program.model("flowers")]
    data = load_dataset(plan(program, spec).data, graphs, spec, tmp_path)
    mean, std = (np.asarray(v) for v in data.binding.scale["x"])
    raw_train = data.binding.raw("x", data.train["x"]).astype(np.float64)
    np.testing.assert_allclose(raw_train.mean(axis=0), mean, rtol=1e-5)
    np.testing.assert_allclose(raw_train.std(axis=0), std, rtol=1e-4)
    np.testing.assert_allclose(data.train["x"].mean(axis=0), 0, atol=1e-5)
    assert np.abs(data.val["x"].mean(axis=0)).max() > 1e-3  # not refitted on the held-out rows
    again = load_dataset(plan(program, spec).data, graphs, spec, tmp_path,
                         Binding(scale={"x": ([0.0] * 4, [2.0] * 4)}))
    np.testing.assert_allclose(again.train["x"] * 2, raw_train, rtol=1e-5)  # stored: kept


def test_onnx_on_raw_features_equals_numpy_on_standardised_ones(tmp_path: Path) -> None:
    import onnxruntime as ort
    from nndsl.backends.numpy.engine import NumpyEngine

    from nndsl.export import describe_data, export_onnx
    from nndsl.initialize import initialize
    from nndsl.program import load

    (tmp_path / "s.nn").write_text(SPEC.format(extra="", epochs=1), encoding="utf-8")
    program, sources = load(tmp_path / "s.nn")
    graph = program.model("flowers")
    weights = initialize(graph, 0)
    rng = np.random.default_rng(0)
    raw = (rng.standard_normal((9, 4)) * [0.8, 0.4, 1.7, 0.7] + [5.8, 3.0, 3.8, 1.2])
    raw = raw.astype(np.float32)
    binding = Binding({"x": ["a", "b", "c", "d"]}, {},
                      {"x": (raw.mean(axis=0).tolist(), raw.std(axis=0).tolist())})
    model = describe_data(export_onnx(program, sources, graph, weights), binding,
                          ["0", "1", "2"], "species")
    ops = [n.op_type for n in model.graph.node]
    assert ops[:2] == ["Sub", "Div"] and model.graph.input[0].name == "x"
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": raw})[0]
    want = NumpyEngine().predict(graph, {"x": binding.standardized("x", raw)}, weights)["probs"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(session.run(None, {"x": binding.standardized("x", raw)})[0], want)
    meta = {p.key: p.value for p in model.metadata_props}
    assert Binding.from_json(json.loads(meta["nndsl_data"]), "meta").scale == binding.scale


# ---- end to end ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spec with `target species` on a CSV of text labels, standardised, trained on NumPy."""
    folder = tmp_path_factory.mktemp("csv_binding")
    (folder / "flowers.csv").write_text(flowers(150, 0), encoding="utf-8")
    (folder / "test.csv").write_text(flowers(45, 1), encoding="utf-8")
    (folder / "new.csv").write_text(flowers(4, 2, labels=False), encoding="utf-8")
    (folder / "flowers.nn").write_text(SPEC.format(extra=", standardize=true", epochs=15),
                                       encoding="utf-8")
    assert main(["train", str(folder / "flowers.nn"), "--backend", "numpy", "--quiet",
                 "--run-dir", str(folder / "run")]) == 0
    return folder


def test_the_run_and_its_model_keep_the_labels_and_statistics(trained: Path) -> None:
    stored = json.loads((trained / "run" / "data.json").read_text(encoding="utf-8"))
    assert stored["labels"] == {"species": LABELS}
    assert stored["columns"]["x"] == HEADER.split(",")[:4]
    assert len(stored["standardize"]["x"]["mean"]) == 4
    model = onnx.load(str(trained / "run" / "model.onnx"))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["class_labels"] == ",".join(LABELS)
    assert json.loads(meta["nndsl_data"]) == stored
    heldout = np.load(trained / "run" / "heldout_x.npy")
    assert heldout.mean() > 1.0  # raw measurements (cm), not standardised values


def test_evaluate_and_predict_speak_in_labels(trained: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    run = str(trained / "run")
    assert main(["evaluate", run, "--data", str(trained / "test.csv"), "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "confusion matrix" in out and "per class" in out
    assert all(label in out for label in LABELS)
    accuracy = next(line for line in out.splitlines() if "│ accuracy" in line)
    assert float(accuracy.split("│")[2]) > 0.8
    assert main(["evaluate", f"{run}/model.onnx", "--data", str(trained / "test.csv"),
                 "--no-plot", "--json"]) == 0  # the target column from the model's metadata
    report = json.loads(capsys.readouterr().out)
    assert report["classes"]["labels"] == LABELS and report["metrics"]["accuracy"] > 0.8
    for model in (run, f"{run}/model.onnx"):
        assert main(["predict", model, "--input", str(trained / "new.csv")]) == 0
        out = capsys.readouterr().out
        assert "predicted classes (4 rows)" in out
        assert any(label in out for label in LABELS)


def test_evaluate_refuses_an_unknown_label_at_its_line(trained: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    bad = trained / "bad.csv"
    bad.write_text(flowers(3, 5).replace("setosa", "setoza"), encoding="utf-8")
    line = next(i for i, t in enumerate(bad.read_text().splitlines(), 1) if "setoza" in t)
    for model in ("run", "run/model.onnx"):
        assert main(["evaluate", str(trained / model), "--data", str(bad), "--no-plot"]) == 1
        err = capsys.readouterr().err
        assert f"bad.csv:{line}:" in err and "'setoza' is not one of the" in err, err
        assert "did you mean 'setosa'?" in err


def test_verify_passes_on_a_standardised_export(trained: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(trained / "flowers.nn"), "--model",
                 str(trained / "run" / "model.onnx"), "--weights", str(trained / "run")]) == 0
    assert "numpy↔onnxruntime" in capsys.readouterr().out


def test_resume_keeps_the_vocabulary(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A resumed run maps labels through its stored list, even when the file now lacks a class
    (a fresh sorted list would renumber them), and refuses a label it never saw."""
    import shutil

    copy = trained / "resumed"
    shutil.copytree(trained / "run", copy)
    full = (trained / "flowers.csv").read_text(encoding="utf-8")
    try:
        (trained / "flowers.csv").write_text("\n".join(
            line for line in full.splitlines() if "setosa" not in line) + "\n", encoding="utf-8")
        assert main(["train", "--resume", str(copy), "--extend", "--epochs", "16",
                     "--quiet"]) == 0
        assert json.loads((copy / "data.json").read_text())["labels"]["species"] == LABELS
        (trained / "flowers.csv").write_text(full.replace("virginica", "virginia", 1),
                                             encoding="utf-8")
        assert main(["train", "--resume", str(copy), "--extend", "--epochs", "17",
                     "--quiet"]) == 1
        assert "'virginia' is not one of the run's 3 class labels" in capsys.readouterr().err
    finally:
        (trained / "flowers.csv").write_text(full, encoding="utf-8")


def test_check_binds_the_data_when_the_file_is_there(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "s.nn"
    spec.write_text(SPEC.format(extra="", epochs=1).replace("species", "label"),
                    encoding="utf-8")
    assert main(["check", str(spec)]) == 0  # no flowers.csv yet: nothing to bind
    (tmp_path / "flowers.csv").write_text(flowers(10, 0), encoding="utf-8")
    capsys.readouterr()
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "s.nn:9:10: error: target 'label' has no column in flowers.csv" in err, err
    spec.write_text(SPEC.format(extra="", epochs=1).replace("dense(3)", "dense(2)"),
                    encoding="utf-8")
    assert main(["check", str(spec)]) == 1
    assert "has 3 class labels, but the loss reads 2 classes" in capsys.readouterr().err
    spec.write_text(SPEC.format(extra="", epochs=1), encoding="utf-8")
    assert main(["check", str(spec)]) == 0


BINARY = """model m {
  input x: [batch, 2]
  p = x -> dense(1) -> sigmoid
  output p
}

train m {
  data = csv("yes_no.csv", target="answer")
  target t: [batch, 1]
  loss = bce(p, t)
  optimizer = adam(lr=0.1)
  epochs = 3
}
"""


def test_two_text_labels_are_0_and_1_for_a_binary_output(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 2))
    rows = [f"{a:.3f},{b:.3f},{'yes' if a + b > 0 else 'no'}" for a, b in x]
    (tmp_path / "yes_no.csv").write_text("a,b,answer\n" + "\n".join(rows) + "\n",
                                         encoding="utf-8")
    (tmp_path / "m.nn").write_text(BINARY, encoding="utf-8")
    assert main(["train", str(tmp_path / "m.nn"), "--backend", "numpy", "--quiet",
                 "--run-dir", str(tmp_path / "run")]) == 0
    model = onnx.load(str(tmp_path / "run" / "model.onnx"))
    assert {p.key: p.value for p in model.metadata_props}["class_labels"] == "no,yes"
    (tmp_path / "new.csv").write_text("a,b\n2,2\n-2,-2\n", encoding="utf-8")
    assert main(["predict", str(tmp_path / "run"), "--input", str(tmp_path / "new.csv")]) == 0
    out = capsys.readouterr().out
    assert "yes" in out and "no" in out
    (tmp_path / "m.nn").write_text(BINARY.replace("bce", "mse"), encoding="utf-8")
    (tmp_path / "yes_no.csv").write_text("a,b,answer\n1,2,yes\n3,4,no\n5,6,maybe\n",
                                         encoding="utf-8")
    assert main(["check", str(tmp_path / "m.nn")]) == 1
    assert "holds text labels, but no loss reads 't' as class ids" in capsys.readouterr().err
