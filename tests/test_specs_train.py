"""Every spec with a backprop train block trains with `nndsl train` (torch) and lowers its loss."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from nndsl.cli import main
from nndsl.program import load

from .conftest import SPECS

pytest.importorskip("torch")


def _backprop_specs() -> list[Path]:
    out = []
    for path in SPECS:
        program, _ = load(path)
        if any(t.loss is not None or t.phases for t in program.trains):
            if all(t.get("trainer") is None or t.get("trainer").name == "backprop"
                   for t in program.trains):
                out.append(path)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("spec", _backprop_specs(), ids=lambda p: p.stem)
def test_spec_trains_and_lowers_its_loss(spec: Path, tmp_path: Path) -> None:
    assert main(["train", str(spec), "--device", "cpu", "--epochs", "4", "--run-dir",
                 str(tmp_path), "--quiet"]) == 0
    phases: dict[str, list[float]] = {}
    with (tmp_path / "metrics.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["kind"] == "epoch":
                phases.setdefault(row["phase"], []).append(float(row["loss"]))
    for losses in phases.values():  # every phase lowers its own loss
        assert len(losses) >= 2 and losses[-1] < losses[0], phases
    assert (tmp_path / "model.onnx").exists() and (tmp_path / "weights.npz").exists()


def test_frozen_encoder_keeps_its_pretrained_weights(tmp_path: Path) -> None:
    """The finetune phase freezes `enc`: its weights after both phases equal those after the
    pretrain phase alone, while the head's weights moved."""
    import numpy as np

    spec = SPECS[0].parent / "pretrain_finetune.nn"
    text = spec.read_text(encoding="utf-8")
    only_pretrain = tmp_path / "pre.nn"
    only_pretrain.write_text(text.replace("phase finetune", "phase finetune_off").replace(
        "freeze = [enc]; epochs = 20", "freeze = [enc, head]; epochs = 1"), encoding="utf-8")
    for name, path in (("both", spec), ("pre", only_pretrain)):
        assert main(["train", str(path), "--device", "cpu", "--run-dir", str(tmp_path / name),
                     "--quiet"]) == 0
    both, pre = np.load(tmp_path / "both" / "weights.npz"), np.load(tmp_path / "pre" /
                                                                     "weights.npz")
    np.testing.assert_array_equal(both["enc.weight"], pre["enc.weight"])
    assert not np.array_equal(both["head.weight"], pre["head.weight"])
