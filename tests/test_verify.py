"""`nndsl verify`: NumPy, torch and onnxruntime agree on every shipped spec; trained weights and
ONNX files can be given; a wrong model or a broken file is a failure or a clear error."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from nndsl.cli import main  # noqa: E402
from nndsl.errors import NndslError  # noqa: E402
from nndsl.program import load  # noqa: E402
from nndsl.verify import (  # noqa: E402
    FORWARD,
    FORWARD_ONNX,
    FORWARD_TORCH,
    GRAD_TORCH,
    GRADIENT,
    compare,
    read_weights,
    verify_program,
)

from .conftest import ROOT, SPECS  # noqa: E402

RECURRENT = {"lstm", "gru", "rnn"}
XOR = str(ROOT / "specs" / "xor.nn")


def _recurrent(path: Path) -> bool:
    return any(n.op in RECURRENT for g in load(path)[0].models for n in g.nodes)


def _verify_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()  # drop what earlier commands printed
    code = main(["verify", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_every_spec_verifies(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Non-recurrent specs pass outright. Recurrent ones may still fail ONNX export (native
    ONNX RNN ops): then only onnxruntime rows may fail, torch forward and gradients must not."""
    code, report = _verify_json(capsys, str(path))
    rows = report["rows"]
    assert rows and report["ok"] == (code == 0)
    assert {r["what"] for r in rows} >= {FORWARD_TORCH, FORWARD_ONNX, GRAD_TORCH}
    failed = [r for r in rows if not r["ok"]]
    if _recurrent(path):
        assert all(r["what"] == FORWARD_ONNX for r in failed), failed
        assert all("not exportable" in r["note"] or "onnxruntime" in r["note"] for r in failed)
    else:
        assert code == 0, failed


def test_sizes_cover_batches_and_sequence_lengths(capsys: pytest.CaptureFixture[str]) -> None:
    _, report = _verify_json(capsys, str(ROOT / "specs" / "sine_lstm.nn"))
    torch_rows = [r for r in report["rows"] if r["what"] == FORWARD_TORCH]
    assert {(r["batch"], r["time"]) for r in torch_rows} == {(1, 3), (1, 11), (7, 3), (7, 11)}
    _, report = _verify_json(capsys, XOR)
    sizes = {(r["batch"], r["time"]) for r in report["rows"] if r["what"] == GRAD_TORCH}
    assert sizes == {(1, None), (7, None)}
    assert "1e-05" in report["tolerances"] and "1e-07" in report["tolerances"]


def test_table_states_the_tolerances(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", XOR]) == 0
    out = capsys.readouterr().out
    assert "grad numpy↔torch" in out and "dense_1.weight" in out
    assert "1e-05 + 1e-05·|b|" in out and "1e-09 + 1e-07·|b|" in out
    assert "all within tolerance" in out


def test_compare_bounds() -> None:
    ref = np.array([0.0, 1.0, 100.0])
    assert compare(ref + 1e-6, ref, FORWARD)[2]
    assert not compare(ref + [0, 0, 2e-3], ref, FORWARD)[2]  # 2e-3 > 1e-5 + 1e-5·100
    max_abs, max_rel, ok = compare(ref + [0, 0, 5e-4], ref, FORWARD)
    assert ok and max_abs == pytest.approx(5e-4) and max_rel <= FORWARD.rtol
    assert not compare(ref + [1e-8, 0, 0], ref, GRADIENT)[2]  # above atol 1e-9 near zero
    assert not compare([np.nan, 1.0, 100.0], ref, FORWARD)[2]
    assert not compare(ref[:2], ref, FORWARD)[2]


@pytest.fixture(scope="module")
def xor_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "xor"
    assert main(["train", XOR, "--backend", "numpy", "--steps", "5", "--run-dir", str(run),
                 "--quiet"]) == 0
    assert (run / "weights.npz").exists()
    return run


def _export(weights: dict[str, np.ndarray] | None, path: Path, spec: str = XOR) -> Path:
    from nndsl.export import export_onnx

    program, sources = load(spec)
    model = export_onnx(program, sources, program.models[0], weights)
    path.write_bytes(model.SerializeToString())
    return path


def test_weights_from_a_run_directory(xor_run: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", XOR, "--weights", str(xor_run)]) == 0
    trained = read_weights(xor_run)
    onnx_trained = _export(trained, tmp_path / "trained.onnx")
    assert main(["verify", XOR, "--weights", str(xor_run), "--model", str(onnx_trained)]) == 0
    # the run's weights are really used: the initial-weight export no longer matches them
    onnx_initial = _export(None, tmp_path / "initial.onnx")
    code, report = _verify_json(capsys, XOR, "--weights", str(xor_run / "weights.npz"),
                                "--model", str(onnx_initial))
    assert code == 1
    assert {r["what"] for r in report["rows"] if not r["ok"]} == {FORWARD_ONNX}


def _save(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def test_missing_or_misshapen_weight_is_a_clear_error(xor_run: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    arrays = read_weights(xor_run)
    missing = _save(tmp_path / "missing.npz",
                    {k: v for k, v in arrays.items() if k != "dense_2.bias"})
    assert main(["verify", XOR, "--weights", str(missing)]) == 1
    err = capsys.readouterr().err
    assert "has no array for dense_2.bias" in err and "Traceback" not in err

    wrong = _save(tmp_path / "wrong.npz", {**arrays, "dense_1.weight": np.zeros((3, 2))})
    assert main(["verify", XOR, "--weights", str(wrong)]) == 1
    err = capsys.readouterr().err
    assert "'dense_1.weight' has the wrong shape" in err
    assert "expected: [2, 2]" in err and "received: [3, 2]" in err
    assert "xor.nn:4:" in err and "^" in err  # at the layer that declares the weight


class _Payload:
    """Unpickling this creates a file: proof that verify never unpickles weights."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("kind", ["truncated", "garbage", "pickle", "object_array", "npy"])
def test_unreadable_weights_are_rejected(kind: str, xor_run: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    target, marker = run / "weights.npz", tmp_path / "unpickled"
    good = (xor_run / "weights.npz").read_bytes()
    if kind == "truncated":
        target.write_bytes(good[: len(good) // 2])
    elif kind == "garbage":
        target.write_bytes(b"\x00not an archive\xff" * 10)
    elif kind == "pickle":
        target.write_bytes(pickle.dumps(_Payload(marker)))
    elif kind == "object_array":
        np.savez(target, **{"dense_1.weight": np.array([{"a": 1}], dtype=object)})
    else:
        with target.open("wb") as f:
            np.save(f, np.zeros((2, 2)))
    assert main(["verify", XOR, "--weights", str(run)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err
    assert "cannot read weights" in err or "not an .npz archive" in err
    assert not marker.exists()


def test_corrupt_onnx_model_is_a_clear_error(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    good = _export(None, tmp_path / "good.onnx").read_bytes()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(good[: len(good) // 2])
    assert main(["verify", XOR, "--model", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "not a valid ONNX model" in err and "Traceback" not in err


def test_perturbed_onnx_model_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import onnx
    from onnx import numpy_helper

    path = _export(None, tmp_path / "m.onnx")
    model = onnx.load(str(path))
    init = next(i for i in model.graph.initializer if i.name == "dense_2.bias")
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + 1e-3, init.name))
    path.write_bytes(model.SerializeToString())
    code, report = _verify_json(capsys, XOR, "--model", str(path))
    assert code == 1 and not report["ok"]
    failed = [r for r in report["rows"] if not r["ok"]]
    assert failed and {r["what"] for r in failed} == {FORWARD_ONNX}
    assert all(r["max_abs"] > 1e-4 for r in failed)
    assert main(["verify", XOR, "--model", str(path)]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_onnx_model_metadata_picks_the_model(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from nndsl.export import export_onnx

    gan = ROOT / "specs" / "gan.nn"
    program, sources = load(gan)
    model = export_onnx(program, sources, program.model("discriminator"))
    path = tmp_path / "d.onnx"
    path.write_bytes(model.SerializeToString())
    code, report = _verify_json(capsys, str(gan), "--model", str(path))
    assert code == 0 and {r["model"] for r in report["rows"]} == {"discriminator"}


def test_unexportable_model_is_a_failed_row(monkeypatch: pytest.MonkeyPatch) -> None:
    import nndsl.export

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise NndslError("lstm cannot be exported yet")

    monkeypatch.setattr(nndsl.export, "export_onnx", refuse)
    program, sources = load(XOR)
    rows = verify_program(program, sources)
    (bad,) = [r for r in rows if not r.ok]
    assert bad.what == FORWARD_ONNX and bad.note.startswith("not exportable")
    assert "cannot be exported yet" in bad.note
    assert any(r.what == GRAD_TORCH and r.ok for r in rows)


def test_spec_errors_and_usage(write_spec, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    bad = write_spec("model m { input x: [batch, 2]\n y = x -> dense(0)\n output y }")
    assert main(["verify", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2:" in err and "^" in err
    with pytest.raises(SystemExit) as info:
        main(["verify"])
    assert info.value.code == 2
