"""Bad training data is refused before anything is written: each case names the file, the row
and column (or the array and index) and what was expected, at the `data = ...` setting or at
the layer that reads the values — and `nndsl train` creates no run directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from nndsl.cli import main

CLASSIFIER = """model m {{ input x: [batch, 3]
  out = x -> dense(3) -> softmax
  output out }}
train m {{ data = {data}; target y: [batch]; loss = cross_entropy(out, y); epochs = 1 }}
"""
TOKENS = """model m {{ input x: i64[batch, 4]
  out = x -> embedding(10, 2) -> flatten -> dense(1)
  output out }}
train m {{ data = {data}; target y: [batch, 1]; loss = mse(out, y); epochs = 1 }}
"""
CSV = 'csv("d.csv", target="label")'
NPZ = 'npz("d.npz")'


def _csv(text: str) -> Callable[[Path], None]:
    return lambda folder: (folder / "d.csv").write_bytes(text.encode("utf-8"))


def _npz(**arrays: object) -> Callable[[Path], None]:
    return lambda folder: np.savez(folder / "d.npz", **arrays)  # type: ignore[arg-type]


def _nothing(folder: Path) -> None:
    pass


def _npy(folder: Path) -> None:
    with (folder / "d.npz").open("wb") as f:
        np.save(f, X3)


X3 = np.ones((4, 3), np.float32)
Y = np.array([0, 1, 2, 1])
CASES: dict[str, tuple[str, str, Callable[[Path], None], list[str]]] = {
    "ragged row": (CLASSIFIER, CSV, _csv("a,b,c,label\n1,2,3,0\n4,5,1\n"),
                   ["d.csv:3:1: error: data row 2 has 3 fields, the header has 4"]),
    "non-numeric cell": (CLASSIFIER, CSV, _csv("a,b,c,label\n1,2,3,0\n4,five,6,1\n"),
                         ["d.csv:3:3: error: data row 2, column 2 ('b'): 'five' is not a number",
                          "expected: a finite number"]),
    "empty cell": (CLASSIFIER, CSV, _csv("a,b,c,label\n1,,3,0\n"),
                   ["d.csv:2:3: error: data row 1, column 2 ('b'): an empty cell is not a"]),
    "nan cell": (CLASSIFIER, CSV, _csv("a,b,c,label\n1,2,nan,0\n"),
                 ["d.csv:2:5: error: data row 1, column 3 ('c'): 'nan' is not a number"]),
    "infinite cell": (CLASSIFIER, CSV, _csv("a,b,c,label\n1,2,3,0\n1,-inf,3,0\n"),
                      ["d.csv:3:3: error: data row 2, column 2 ('b'): '-inf' is not a number"]),
    "too few features": (CLASSIFIER, CSV, _csv("a,b,label\n1,2,0\n"),
                         ["error: data array 'x' from 'd.csv' does not fit input 'x'",
                          "expected: rows of [3] (declared [batch, 3])",
                          "received: rows of [2] (1 rows)"]),
    "label out of range": (CLASSIFIER, CSV, _csv("a,b,c,label\n1,2,3,0\n1,2,3,3\n"),
                           ["spec.nn:4:74: error: 'y' from 'd.csv' holds 3.0 at row 2: outside "
                            "the 3 class indices that the loss reads",
                            "expected: whole numbers in [0, 2]"]),
    "negative label": (CLASSIFIER, NPZ, _npz(x=X3, y=np.array([0, -1, 2, 1])),
                       ["'y' from 'd.npz' holds -1.0 at row 2: outside the 3 class indices"]),
    "fractional label": (CLASSIFIER, CSV, _csv("a,b,c,label\n1,2,3,0.5\n"),
                         ["'y' from 'd.csv' holds 0.5 at row 1: not a whole number"]),
    "token id out of vocabulary": (
        TOKENS, NPZ, _npz(x=np.array([[1, 2, 3, 10]] * 2), y=np.zeros((2, 1))),
        ["spec.nn:2:14: error: 'x' from 'd.npz' holds 10 at row 1: outside the 10 token ids "
         "that embedding reads", "raise the vocabulary size"]),
    "fractional token id": (
        TOKENS, NPZ, _npz(x=np.array([[1.0, 2.5, 3, 4]]), y=np.zeros((1, 1))),
        ["error: 'x' is declared as integers, but 'd.npz' holds 2.5 at row 1"]),
    "nan in an array": (CLASSIFIER, NPZ, _npz(x=np.where(np.eye(4, 3) > 0, np.nan, 1), y=Y),
                        ["data array 'x' from 'd.npz' holds NaN or infinity",
                         "received: nan at index (0, 0)"]),
    "wrong feature shape in an array": (CLASSIFIER, NPZ, _npz(x=np.ones((4, 5)), y=Y),
                                        ["data array 'x' from 'd.npz' does not fit input 'x'",
                                         "received: rows of [5] (4 rows)"]),
    "rows disagree": (CLASSIFIER, NPZ, _npz(x=X3, y=Y[:3]),
                      ["data arrays have different numbers of rows", "x: 4, y: 3"]),
    "text array": (CLASSIFIER, NPZ, _npz(x=np.array([["a", "b", "c"]]), y=Y[:1]),
                   ["data array 'x' from 'd.npz' is not numeric", "received: dtype <U1"]),
    "missing array": (CLASSIFIER, NPZ, _npz(x=X3, labels=Y),
                      ["the data has no array for 'y'", "received: x, labels"]),
    "object array": (CLASSIFIER, NPZ, _npz(x=np.array([{"a": 1}], dtype=object), y=Y),
                     ["array 'x' in 'd.npz' holds Python objects"]),
    "npy not npz": (CLASSIFIER, NPZ, _npy,
                    ["holds one array (.npy), not an .npz archive"]),
    "empty file": (CLASSIFIER, CSV, _csv(""), ["d.csv' has no data rows"]),
    "header only": (CLASSIFIER, CSV, _csv("a,b,c,label\n"), ["d.csv' has no data rows"]),
    "missing csv": (CLASSIFIER, CSV, _nothing, ["d.csv' does not exist",
                                                "relative to the spec file's folder"]),
    "missing npz": (CLASSIFIER, NPZ, _nothing, ["d.npz' does not exist"]),
    "not utf-8": (CLASSIFIER, CSV, lambda folder: (folder / "d.csv").write_bytes(b"\xff\xfe\x00"),
                  ["d.csv' is not UTF-8 text"]),
    "not a zip": (CLASSIFIER, NPZ, lambda folder: (folder / "d.npz").write_bytes(b"PK\x03junk"),
                  ["d.npz' is not a NumPy .npz archive"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_data_is_named_and_nothing_is_written(tmp_path: Path, case: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    template, data, make, wanted = CASES[case]
    spec = tmp_path / "spec.nn"
    spec.write_text(template.format(data=data))
    make(tmp_path)
    run_dir = tmp_path / "run"
    code = main(["train", str(spec), "--backend", "numpy", "--run-dir", str(run_dir), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1, err
    for text in wanted:
        assert text in err, f"{text!r} not in:\n{err}"
    assert "Traceback" not in err and "internal error" not in err
    assert not run_dir.exists()
