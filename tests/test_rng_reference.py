"""`--rng reference`: the torch engine draws every random array (dropout masks, mask noise, the
VAE's epsilon, gradient noise) from the NumPy stream, so a torch run's metrics.csv equals the
NumPy run's within float32 rounding (1e-5, relative to values above 1). Without it each
backend uses its own generator and the runs differ."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from nndsl.cli import main

from .conftest import ROOT

pytest.importorskip("torch")

TOLERANCE = 1e-5
GRAD_NOISE = """
model noisy {
  input x: [batch, 2]
  h = x -> dense(8) -> tanh -> gaussian_noise(0.1)
  out = h -> dense(1) -> sigmoid
  output out
}
train noisy {
  data = builtin("xor", n=64); target y: [batch, 1]; loss = mse(out, y)
  optimizer = sgd(lr=0.5); grad_noise = annealed(eta=0.3); batch = 8; epochs = 3
}
"""


def metrics(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def worst_difference(a: list[dict[str, str]], b: list[dict[str, str]]) -> float:
    assert len(a) == len(b) and a and a[0].keys() == b[0].keys()
    worst = 0.0
    for ra, rb in zip(a, b, strict=True):
        for key in ra:
            try:
                x, y = float(ra[key]), float(rb[key])
            except ValueError:
                assert ra[key] == rb[key]
                continue
            worst = max(worst, abs(x - y) / max(1.0, abs(x)))
    return worst


def train(spec: Path, backend: str, run: Path, rng: str) -> list[dict[str, str]]:
    assert main(["train", str(spec), "--backend", backend, "--device", "cpu", "--rng", rng,
                 "--steps", "24", "--run-dir", str(run), "--quiet"]) == 0
    return metrics(run)


def spec_file(name: str, tmp_path: Path) -> Path:
    if name == "grad_noise":
        path = tmp_path / "noisy.nn"
        path.write_text(GRAD_NOISE, encoding="utf-8")
        return path
    return ROOT / "specs" / f"{name}.nn"


@pytest.mark.parametrize("name", ["digits_mlp", "denoising_autoencoder", "vae", "grad_noise",
                                  "gan", "cgan"])
def test_torch_with_the_reference_stream_repeats_the_numpy_run(name: str,
                                                               tmp_path: Path) -> None:
    spec = spec_file(name, tmp_path)
    want = train(spec, "numpy", tmp_path / "numpy", "reference")
    got = train(spec, "torch", tmp_path / "torch", "reference")
    assert worst_difference(want, got) <= TOLERANCE


def test_each_backends_own_generator_gives_another_run(tmp_path: Path) -> None:
    """The comparison above can fail: dropout masks from torch's generator change the run."""
    spec = ROOT / "specs" / "digits_mlp.nn"
    want = train(spec, "numpy", tmp_path / "numpy", "device")
    got = train(spec, "torch", tmp_path / "torch", "device")
    assert worst_difference(want, got) > 1e-3


def test_a_resumed_reference_run_keeps_the_reference_stream(tmp_path: Path) -> None:
    from nndsl.training import checkpoint

    spec = ROOT / "specs" / "digits_mlp.nn"
    run = tmp_path / "run"
    train(spec, "torch", run, "reference")
    assert checkpoint.load(run / checkpoint.NAME).meta["rng_mode"] == "reference"
