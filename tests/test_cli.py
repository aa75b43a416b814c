"""The command line: exit codes, the JSON report, IR text, and a fast, torch-free start-up."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nndsl.cli import main

from .conftest import ROOT, SPECS

XOR = str(ROOT / "specs" / "xor.nn")


def test_check_json_reports_shapes_and_parameter_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--json", XOR]) == 0
    report = json.loads(capsys.readouterr().out)
    (model,) = report["models"]
    assert model["name"] == "xor"
    assert model["params"] == 2 * 2 + 2 + 2 * 1 + 1
    assert model["inputs"] == {"x": ["batch", 2]}
    assert model["outputs"] == {"out": ["batch", 1]}
    layers = {row["name"]: row for row in model["layers"]}
    assert layers["dense_1"] == {"name": "dense_1", "op": "dense", "shape": ["batch", 2],
                                 "params": 6}
    assert [row["op"] for row in model["layers"]] == ["dense", "sigmoid", "dense", "sigmoid"]


def test_check_all_specs_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--json", *map(str, SPECS)]) == 0
    names = [m["name"] for m in json.loads(capsys.readouterr().out)["models"]]
    assert "digits_mlp" in names and len(names) >= 12


def test_check_exit_one_when_any_spec_fails(write_spec, capsys) -> None:  # type: ignore[no-untyped-def]
    bad = write_spec("model m { input x: [batch, 2]\n y = x -> dense(0)\n output y }")
    assert main(["check", XOR, str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2:" in err and "^" in err


def test_usage_errors_exit_two(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["check"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_missing_file_is_a_clean_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "no/such/spec.nn"]) == 1
    err = capsys.readouterr().err
    assert "no such spec file" in err and "Traceback" not in err


def test_compile_emits_ir_with_positions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", XOR, "--emit", "ir"]) == 0
    out = capsys.readouterr().out
    assert "model xor" in out
    assert "h: f32[batch, 2] = sigmoid(dense_1)" in out
    assert "xor.nn:4:" in out  # every node line ends with its source position


def test_help_is_fast_and_imports_neither_torch_nor_onnx() -> None:
    code = ("import sys; from nndsl.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules and 'onnxruntime' not in sys.modules\n"
            "assert 'onnx' not in sys.modules and 'numpy' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "check" in done.stdout


def test_check_imports_no_torch() -> None:
    code = (f"import sys; from nndsl.cli import main; main(['check', {XOR!r}])\n"
            "assert 'torch' not in sys.modules and 'onnxruntime' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_check_grad_reports_every_weight(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--grad", XOR]) == 0
    out = capsys.readouterr().out
    for weight in ("dense_1.weight", "dense_1.bias", "dense_2.weight", "dense_2.bias"):
        assert weight in out
    assert "FAIL" not in out


def test_check_prints_a_table_per_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", XOR]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "model xor"
    assert lines[2].split("┃")[1:-1] == [" layer   ", " op      ", " output shape ", " params "]
    assert lines[4] == "│ x       │ input   │ [batch, 2]   │      0 │"
    assert lines[-3] == "│ total   │         │              │      9 │"
    assert len({len(line) for line in lines[1:-1]}) == 1  # every row as wide as the box
    assert lines[-1] == ("memory: parameters 36 B, activations at batch 4 128 B; training "
                         "needs about 400 B")
