"""Transfer learning: `from_run(RUN, LABEL)` starts a layer from an earlier run's weights
(specs/transfer_digits.nn), and `nndsl compile --weights RUN --model NAME` exports any model of
a trained spec with them (a VAE's decoder sharing its layers by label, a GAN's discriminator)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nndsl.cli import main
from nndsl.initialize import initialize
from nndsl.program import load

from .conftest import ROOT
from .trained import train_run

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

SPECS = ROOT / "specs"
SHIPPED_RUN = SPECS / "pretrained" / "denoising_autoencoder"


def _train(spec: Path, run: Path, *extra: str) -> dict[str, np.ndarray]:
    return train_run(spec, run, *extra)[0]


def _onnx_initializers(path: Path) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    from nndsl.export import load_onnx

    return {t.name: numpy_helper.to_array(t) for t in load_onnx(path).graph.initializer}


def _transfer_spec(tmp_path: Path, run: Path, text: str | None = None) -> Path:
    """specs/transfer_digits.nn reading `run` instead of the shipped one."""
    spec = tmp_path / "transfer.nn"
    text = text or (SPECS / "transfer_digits.nn").read_text(encoding="utf-8")
    assert '"pretrained/denoising_autoencoder"' in text
    spec.write_text(text.replace('"pretrained/denoising_autoencoder"', json.dumps(str(run))),
                    encoding="utf-8")
    return spec


def test_the_shipped_pretrained_run_is_the_shipped_autoencoders() -> None:
    """specs/transfer_digits.nn reads a run that ships with it (so it checks and trains as it
    is); it must stay the run of specs/denoising_autoencoder.nn as that spec stands now."""
    from nndsl.verify import check_weights

    config = json.loads((SHIPPED_RUN / "config.json").read_text(encoding="utf-8"))
    spec = SPECS / "denoising_autoencoder.nn"
    assert config["model"] == "denoising_autoencoder"
    assert config["spec_sha256"] == hashlib.sha256(spec.read_bytes()).hexdigest(), \
        "retrain: nndsl train specs/denoising_autoencoder.nn --device cpu --run-dir " \
        "specs/pretrained/denoising_autoencoder (keep weights.npz, config.json, metrics.csv)"
    with np.load(SHIPPED_RUN / "weights.npz") as archive:
        check_weights(load(spec)[0].models[0], {k: archive[k] for k in archive.files})


def test_a_classifier_starts_from_an_autoencoder_runs_encoder(tmp_path: Path) -> None:
    """The encoder starts as the run left it and stays there through the frozen head phase;
    the finetune phase moves it; the export verifies against NumPy with the run's weights."""
    ae = _train(SPECS / "denoising_autoencoder.nn", tmp_path / "ae", "--epochs", "3")
    text = (SPECS / "transfer_digits.nn").read_text(encoding="utf-8")
    spec = _transfer_spec(tmp_path, tmp_path / "ae", text)
    start = initialize(load(spec)[0].models[0], seed=5)
    for param in ("weight", "bias"):  # every weight of the layer, whatever the seed
        np.testing.assert_array_equal(start[f"enc.{param}"], ae[f"enc.{param}"])
    (tmp_path / "h").mkdir()
    head_only = _transfer_spec(tmp_path / "h", tmp_path / "ae",
                               text[:text.index("  phase finetune")] + "}\n")
    frozen = _train(head_only, tmp_path / "head")
    np.testing.assert_array_equal(frozen["enc.weight"], ae["enc.weight"])
    tuned = _train(spec, tmp_path / "both")
    assert not np.array_equal(tuned["enc.weight"], ae["enc.weight"])
    assert main(["verify", str(spec), "--weights", str(tmp_path / "both")]) == 0
    out = tmp_path / "m.onnx"
    assert main(["compile", str(spec), "--weights", str(tmp_path / "both"), "-o", str(out)]) == 0
    inits = _onnx_initializers(out)
    np.testing.assert_array_equal(inits["head.weight"], tuned["head.weight"])


def test_a_vae_decoder_exported_with_the_runs_weights_generates_what_numpy_decodes(
        tmp_path: Path) -> None:
    from nndsl.backends.numpy.engine import NumpyEngine
    from nndsl.backends.onnx.runtime import run_onnx

    from nndsl.export import load_onnx

    spec, run, out = SPECS / "vae.nn", tmp_path / "vae", tmp_path / "decoder.onnx"
    trained = _train(spec, run, "--epochs", "2")
    assert main(["compile", str(spec), "--weights", str(run), "--model", "vae_decoder", "-o",
                 str(out)]) == 0
    decoder = load(spec)[0].model("vae_decoder")
    for w in decoder.weights:  # the VAE's own arrays, shared by label
        np.testing.assert_array_equal(_onnx_initializers(out)[w.name], trained[w.name])
    z = np.random.default_rng(0).standard_normal((16, 2)).astype(np.float32)
    (images,) = run_onnx(load_onnx(out), {"z": z})
    want = NumpyEngine().predict(decoder, {"z": z}, trained)["xhat"]
    assert images.shape == (16, 64) and 0.0 <= images.min() and images.max() <= 1.0
    np.testing.assert_allclose(images, want, atol=1e-5)
    assert main(["verify", str(spec), "--model", str(out), "--weights", str(run)]) == 0


def test_a_gans_discriminator_exports_from_its_own_weights_file(tmp_path: Path) -> None:
    spec, run, out = SPECS / "gan.nn", tmp_path / "gan", tmp_path / "d.onnx"
    _train(spec, run, "--epochs", "1")
    assert main(["compile", str(spec), "--weights", str(run), "--model", "discriminator",
                 "-o", str(out)]) == 0
    with np.load(run / "discriminator.weights.npz") as archive:
        for name in archive.files:
            np.testing.assert_array_equal(_onnx_initializers(out)[name], archive[name])


def test_every_weight_of_a_model_from_a_run(tmp_path: Path) -> None:
    """`defaults { weights = from_run(RUN) }`: each weight reads the run's array of its name."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(SHIPPED_RUN / "weights.npz", run / "weights.npz")
    text = (SPECS / "denoising_autoencoder.nn").read_text(encoding="utf-8").replace(
        "  flat = x", f'  defaults {{ weights = from_run({json.dumps(str(run))}) }}\n  flat = x')
    spec = tmp_path / "again.nn"
    spec.write_text(text, encoding="utf-8")
    weights = initialize(load(spec)[0].models[0], seed=3)
    with np.load(run / "weights.npz") as archive:
        assert set(weights) == set(archive.files)
        for name in archive.files:
            np.testing.assert_array_equal(weights[name], archive[name])


@pytest.mark.parametrize(("call", "words"), [
    ('from_run("nowhere", "enc")', ["run directory", "does not exist", "spec file's folder"]),
    ('from_run("RUN", "encoder")', ["has no weight 'encoder.weight'", "did you mean 'enc'"]),
    ('from_run("RUN", "dense_1")', ["'dense_1.weight' has the wrong shape", "[64, 32]"]),
    ('from_run("RUN")', ["from_run needs the layer to read"]),
])
def test_a_run_that_cannot_start_the_layer_is_a_positioned_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], call: str, words: list[str]) -> None:
    text = (SPECS / "transfer_digits.nn").read_text(encoding="utf-8").replace(
        'from_run("pretrained/denoising_autoencoder", "enc")',
        call.replace("RUN", str(SHIPPED_RUN)))
    spec = tmp_path / "t.nn"
    spec.write_text(text, encoding="utf-8")
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "from_run" in t)
    assert f"t.nn:{line}:" in err, err
    for word in words:
        assert word in err, err


def test_compile_weights_needs_an_onnx_export(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(SPECS / "xor.nn"), "--weights", str(SHIPPED_RUN)]) == 2
    assert "--weights exports trained weights to ONNX" in capsys.readouterr().err
