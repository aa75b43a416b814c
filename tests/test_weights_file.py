"""Weights from a file: the `from_npz` initializer and `defaults { weights = from_npz(...) }`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import numpy_helper

from nndsl.cli import main
from nndsl.export import export_onnx
from nndsl.initialize import initialize
from nndsl.program import load

SPEC = """model m {{
  input x: [batch, 3]
  defaults {{ {defaults} }}
  h = x -> enc: dense(2) -> relu -> batchnorm
  output h
}}
"""
ARRAYS = {"enc.weight": np.arange(6.0).reshape(2, 3), "enc.bias": np.array([0.5, -0.5]),
          "batchnorm_1.gamma": np.array([2.0, 3.0]), "batchnorm_1.beta": np.array([0.1, 0.2]),
          "batchnorm_1.running_mean": np.array([1.0, 2.0]),
          "batchnorm_1.running_var": np.array([4.0, 9.0])}


def write(folder: Path, defaults: str = 'weights = from_npz("w.npz")',
          arrays: dict[str, np.ndarray] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "w.npz", **(ARRAYS if arrays is None else arrays))
    spec = folder / "m.nn"
    spec.write_text(SPEC.format(defaults=defaults), encoding="utf-8")
    return spec


def test_every_weight_and_buffer_reads_its_own_array(tmp_path: Path) -> None:
    program, sources = load(write(tmp_path))
    graph = program.models[0]
    weights = initialize(graph, seed=123)
    assert set(weights) == set(ARRAYS)
    for name, array in ARRAYS.items():
        np.testing.assert_array_equal(weights[name], array.astype(np.float32))
        assert weights[name].dtype == np.float32
    model = export_onnx(program, sources, graph)  # what `nndsl compile` writes
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    np.testing.assert_array_equal(inits["enc.weight"], ARRAYS["enc.weight"].astype(np.float32))


def test_a_relative_path_is_relative_to_the_spec(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "deep" / "er")
    monkeypatch.chdir(tmp_path)
    assert main(["check", "deep/er/m.nn"]) == 0
    program, _ = load("deep/er/m.nn")
    decl = program.models[0].weights[0]
    assert decl.init.get("path") == str(Path("deep/er/w.npz"))
    assert decl.init.get("array") == "enc.weight"


def test_one_weight_from_a_file_the_others_drawn(tmp_path: Path) -> None:
    spec = write(tmp_path, 'init = zeros')
    text = spec.read_text().replace("dense(2)", 'dense(2, init=from_npz("w.npz", "enc.weight"))')
    spec.write_text(text)
    program, _ = load(spec)
    weights = initialize(program.models[0])
    np.testing.assert_array_equal(weights["enc.weight"], ARRAYS["enc.weight"])
    assert not weights["enc.bias"].any()


@pytest.mark.parametrize(("defaults", "arrays", "words"), [
    ('weights = from_npz("nope.npz")', None, "does not exist"),
    ('weights = from_npz("w.npz")', {"enc.weigth": np.zeros((2, 3))}, "did you mean 'enc.weigth'"),
    ('weights = from_npz("w.npz")', {**ARRAYS, "enc.bias": np.zeros(3)}, "the wrong shape"),
    ('weights = from_npz("w.npz")', {**ARRAYS, "enc.bias": np.array(["a", "b"])}, "real numbers"),
    ("weights = zeros", None, "reads every weight from a file"),
    ('weights = from_npz("w.npz", "enc.weight")', None, "leave out array="),
])
def test_mistakes_are_positioned_at_the_defaults(tmp_path: Path, defaults: str,
                                                 arrays: dict[str, np.ndarray] | None,
                                                 words: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, defaults, arrays)
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert f"{spec}:3:" in err and words in err
    assert "Traceback" not in err


def test_a_shape_mismatch_says_what_each_side_has(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, arrays={**ARRAYS, "enc.weight": np.zeros((3, 2))})
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "expected: [2, 3]" in err and "received: [3, 2]" in err


def test_a_pickled_or_broken_file_is_refused(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path)
    np.savez(tmp_path / "w.npz", **{**ARRAYS, "enc.weight": np.array([{"a": 1}], dtype=object)})
    assert main(["check", str(spec)]) == 1
    assert "cannot read weights" in capsys.readouterr().err
    (tmp_path / "w.npz").write_bytes(b"not a zip file")
    assert main(["check", str(spec)]) == 1
    assert "cannot read weights" in capsys.readouterr().err


def test_a_layer_init_needs_the_array_name(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, "init = zeros")
    spec.write_text(spec.read_text().replace("dense(2)", 'dense(2, init=from_npz("w.npz"))'))
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert f"{spec}:4:" in err and "needs the name of the array" in err
