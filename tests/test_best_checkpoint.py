"""The best epoch: early_stop restores and exports it by default (restore=last keeps the last);
best.npz holds it beside checkpoint.npz (the last); the exported ONNX scores the validation rows
as metrics.csv recorded for that epoch; a stopped and resumed run ends the same, best included."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from nndsl.cli import main

from .conftest import ROOT, assert_same_run, stop_after_step

SPEC = """model clf {{
  input x: [batch, 64]
  h = x -> dense(32) -> relu
  probs = h -> dense(10) -> softmax
  output probs
}}

train clf {{
  data = npz("digits.npz")
  target y: [batch]
  loss = cross_entropy(probs, y)
  optimizer = adam(lr=0.05)
  split = 0.5
  batch = 16
  epochs = 30
  seed = 3
  {extra}
}}
"""
STOP = "early_stop = patience(3{restore})"


def _folder(tmp_path: Path, extra: str) -> Path:
    """A spec and 200 rows of the digits in `tmp_path` (a net that overfits them fast)."""
    with np.load(ROOT / "nndsl" / "data" / "digits.npz") as digits:
        x = digits["X"][:200].reshape(200, 64).astype(np.float32)
        np.savez(tmp_path / "digits.npz", x=x, y=digits["y"][:200])
    (tmp_path / "clf.nn").write_text(SPEC.format(extra=extra), encoding="utf-8")
    return tmp_path


def _train(folder: Path, run: str, *extra: str) -> int:
    return main(["train", str(folder / "clf.nn"), "--backend", "numpy", "--quiet",
                 "--run-dir", str(folder / run), "--checkpoint-every", "0", *extra])


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _onnx_val_loss(folder: Path, run: str) -> float:
    """Cross-entropy of the exported model on the run's validation rows (the split is
    reproducible from the block's seed)."""
    import onnxruntime as ort

    from nndsl.data.dataset import split

    with np.load(folder / "digits.npz") as data:
        val = split(dict(data), 0.5, 3).val
    session = ort.InferenceSession(str(folder / run / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    (probs,) = session.run(None, {"x": val["x"]})
    picked = probs.astype(np.float64)[np.arange(len(val["y"])), val["y"]]
    return float(-np.mean(np.log(picked)))


def _weights(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as archive:
        return {k: archive[k] for k in archive.files}


def _checkpoint(path: Path) -> object:
    from nndsl.training import checkpoint

    return checkpoint.load(path)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run that early stopping ends after its best epoch."""
    folder = _folder(tmp_path_factory.mktemp("best"), STOP.format(restore=""))
    assert _train(folder, "run") == 0
    return folder


def test_early_stop_exports_the_best_epoch(stopped: Path) -> None:
    rows = _rows(stopped / "run")
    losses = [float(r["val_loss"]) for r in rows]
    best = int(np.argmin(losses))
    assert len(rows) < 30 and best < len(rows) - 1, "the fixture must stop after its best epoch"
    assert _onnx_val_loss(stopped, "run") == pytest.approx(losses[best], rel=1e-4)
    assert _onnx_val_loss(stopped, "run") != pytest.approx(losses[-1], rel=1e-4)
    config = json.loads((stopped / "run" / "config.json").read_text(encoding="utf-8"))
    assert config["exported"].startswith(f"exported epoch {best + 1}, the best: val_loss")


def test_best_and_last_checkpoints_are_both_kept(stopped: Path) -> None:
    rows = _rows(stopped / "run")
    best = _checkpoint(stopped / "run" / "best.npz")
    last = _checkpoint(stopped / "run" / "checkpoint.npz")
    record = best.meta["best"]  # type: ignore[attr-defined]
    losses = [float(r["val_loss"]) for r in rows]
    assert record["epoch"] == int(np.argmin(losses)) + 1
    assert record["row"]["val_loss"] == pytest.approx(min(losses))
    exported = _weights(stopped / "run" / "weights.npz")
    for name, value in exported.items():
        np.testing.assert_array_equal(best.weights["clf"][name], value)  # type: ignore[attr-defined]
    moved = [not np.array_equal(last.weights["clf"][n], v)  # type: ignore[attr-defined]
             for n, v in exported.items()]
    assert any(moved), "checkpoint.npz keeps the last epoch, not the best"
    assert last.meta["best"]["epoch"] == record["epoch"]  # type: ignore[attr-defined]


def test_restore_last_exports_the_last_epoch(tmp_path: Path) -> None:
    folder = _folder(tmp_path, STOP.format(restore=", restore=last"))
    assert _train(folder, "run") == 0
    rows = _rows(folder / "run")
    assert _onnx_val_loss(folder, "run") == pytest.approx(float(rows[-1]["val_loss"]), rel=1e-4)
    config = json.loads((folder / "run" / "config.json").read_text(encoding="utf-8"))
    assert "early_stop(restore=last)" in config["exported"]
    best = _checkpoint(folder / "run" / "best.npz")
    assert best.meta["best"]["row"]["val_loss"] == pytest.approx(  # type: ignore[attr-defined]
        min(float(r["val_loss"]) for r in rows))


def test_without_early_stop_the_last_epoch_is_exported_and_best_npz_kept(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(tmp_path, "epochs = 6")
    folder.joinpath("clf.nn").write_text(SPEC.format(extra="").replace("epochs = 30",
                                                                       "epochs = 6"))
    assert main(["train", str(folder / "clf.nn"), "--backend", "numpy", "--run-dir",
                 str(folder / "run")]) == 0
    rows = _rows(folder / "run")
    assert _onnx_val_loss(folder, "run") == pytest.approx(float(rows[-1]["val_loss"]), rel=1e-4)
    err = capsys.readouterr().err
    assert "exported the last epoch (epoch 6)" in err
    assert (folder / "run" / "best.npz").is_file()


def _steps(run_dir: Path) -> tuple[int, int]:
    """The step of the best epoch and the last step of a finished run."""
    best = int(_checkpoint(run_dir / "best.npz").meta["step"])  # type: ignore[attr-defined]
    return best, int(_rows(run_dir)[-1]["step"])


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_stopped_run_resumes_to_the_same_best(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                when: str) -> None:
    """Stopped mid-epoch before its best epoch and after it: the resumed run ends with the
    uninterrupted run's metrics, exported weights and best.npz."""
    folder = _folder(tmp_path, STOP.format(restore=""))
    assert _train(folder, "whole") == 0
    best, last = _steps(folder / "whole")
    with monkeypatch.context() as patch:
        stop_after_step(patch, best - 3 if when == "before" else (best + last) // 2)
        assert _train(folder, "broken") == 130
    assert main(["train", "--resume", str(folder / "broken"), "--quiet"]) == 0
    assert_same_run(folder / "whole", folder / "broken")
    want, got = (_checkpoint(folder / run / "best.npz") for run in ("whole", "broken"))
    assert want.meta["best"]["epoch"] == got.meta["best"]["epoch"]  # type: ignore[attr-defined]
    for name, value in want.weights["clf"].items():  # type: ignore[attr-defined]
        np.testing.assert_array_equal(got.weights["clf"][name], value)  # type: ignore[attr-defined]


def test_a_resume_without_best_npz_exports_the_last_and_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _folder(tmp_path, STOP.format(restore=""))
    assert _train(folder, "whole") == 0
    best, last = _steps(folder / "whole")
    with monkeypatch.context() as patch:
        stop_after_step(patch, (best + last) // 2)  # after the best epoch
        assert _train(folder, "broken") == 130
    (folder / "broken" / "best.npz").unlink()
    assert main(["train", "--resume", str(folder / "broken"), "--quiet"]) == 0
    rows = _rows(folder / "broken")
    assert _onnx_val_loss(folder, "broken") == pytest.approx(float(rows[-1]["val_loss"]),
                                                             rel=1e-4)
    config = json.loads((folder / "broken" / "config.json").read_text(encoding="utf-8"))
    assert "best.npz was missing" in config["exported"]


def test_a_damaged_best_record_in_the_checkpoint_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from nndsl.training import checkpoint

    folder = _folder(tmp_path, STOP.format(restore=""))
    with monkeypatch.context() as patch:
        stop_after_step(patch, 20)  # two epochs and more: a best epoch is recorded
        assert _train(folder, "run") == 130
    saved = checkpoint.load(folder / "run" / "checkpoint.npz")
    saved.meta["best"]["stage"] = 7
    meta = {k: v for k, v in saved.meta.items() if k not in ("format", "scalars")}
    checkpoint.save(folder / "run" / "checkpoint.npz", saved.weights, saved.state, meta)
    assert main(["train", "--resume", str(folder / "run"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "record of the best epoch is damaged" in err and "best.stage" in err


@pytest.mark.parametrize("restore", ["best", "last"])
def test_a_phase_that_restores_its_best_hands_it_to_the_next(tmp_path: Path,
                                                              restore: str) -> None:
    """Phase `fit` stops early; `hold` barely moves the weights (lr 1e-12), so its epoch scores
    what `fit` handed over: the best epoch's weights, or with restore=last the last's."""
    phases = (f"phase fit {{ epochs = 30; early_stop = patience(3, restore={restore}) }}\n"
              "  phase hold { epochs = 1; optimizer = sgd(lr=1e-12) }")
    folder = _folder(tmp_path, phases)
    assert _train(folder, "run") == 0
    rows = _rows(folder / "run")
    fit = [float(r["val_loss"]) for r in rows if r["phase"] == "fit"]
    (hold,) = [float(r["val_loss"]) for r in rows if r["phase"] == "hold"]
    assert np.argmin(fit) < len(fit) - 1, "phase fit must stop after its best epoch"
    handed = min(fit) if restore == "best" else fit[-1]
    assert hold == pytest.approx(handed, rel=1e-5)
