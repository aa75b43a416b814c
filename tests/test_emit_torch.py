"""`nndsl compile --emit torch`: every shipped model as a standalone torch.nn.Module file.

Each file is run in a fresh Python (`-I -S`: no site processing, so nndsl's install is not on
the path; the test proves `import nndsl` fails there) with torch and NumPy only, in float64
with the same weights, and its forward must equal nndsl's NumPy interpreter.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from nndsl.backends.numpy.prims import make_numpy_prims

from nndsl.cli import main
from nndsl.errors import NndslError
from nndsl.initialize import initialize
from nndsl.interpreter import run
from nndsl.program import load

SPECS = Path(__file__).resolve().parent.parent / "specs"
SITE = str(Path(importlib.util.find_spec("torch").origin).parent.parent)  # type: ignore[union-attr]

RUNNER = """
import importlib.util, json, sys
sys.path.append(SITE)  # torch and NumPy, without the .pth files that put nndsl on the path
try:
    import nndsl  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("nndsl is importable in the isolated interpreter")
import numpy as np
import torch
torch.manual_seed(0)
for job in json.load(open(sys.argv[1])):
    spec = importlib.util.spec_from_file_location("generated", job["file"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = getattr(module, job["class"])().double().load_nndsl_weights(job["weights"]).eval()
    with np.load(job["inputs"]) as feeds:
        args = [torch.as_tensor(feeds[name]) for name in job["order"]]
    with torch.no_grad():
        out = model(*args)
    out = out if isinstance(out, tuple) else (out,)
    np.savez(job["outputs"], *[o.numpy() for o in out])
print("ran", len(json.load(open(sys.argv[1]))), "models")
"""


def shipped_models() -> list[tuple[Path, str]]:
    return [(spec, g.name) for spec in sorted(SPECS.glob("*.nn")) for g in load(spec)[0].models]


def feeds_for(graph, rng: np.random.Generator) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    feeds = {}
    for name, ty in graph.inputs:
        shape = tuple(4 if d == "batch" else 5 if isinstance(d, str) else d for d in ty.shape)
        feeds[name] = rng.integers(0, 4, shape) if ty.dtype == "i64" else \
            rng.standard_normal(shape)
    return feeds


def test_every_shipped_model_runs_without_nndsl_and_matches_numpy(tmp_path: Path) -> None:
    from nndsl.backends.torch.source import class_name

    rng = np.random.default_rng(0)
    jobs, expected = [], {}
    for spec, model in shipped_models():
        tag = f"{spec.stem}_{model}"
        source = tmp_path / f"{tag}.py"
        assert main(["compile", str(spec), "--model", model, "-o", str(source)]) == 0
        graph = load(spec)[0].model(model)
        weights = {k: v.astype(np.float64) for k, v in initialize(graph, seed=3).items()}
        feeds = feeds_for(graph, rng)
        np.savez(tmp_path / f"{tag}_w.npz", **weights)
        np.savez(tmp_path / f"{tag}_x.npz", **feeds)
        result = run(graph, make_numpy_prims(training=False), feeds, weights)
        expected[tag] = result.outputs(graph)
        jobs.append({"file": str(source), "class": class_name(model), "order": list(feeds),
                     "weights": str(tmp_path / f"{tag}_w.npz"),
                     "inputs": str(tmp_path / f"{tag}_x.npz"),
                     "outputs": str(tmp_path / f"{tag}_y.npz")})
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    (tmp_path / "runner.py").write_text(RUNNER.replace("SITE", repr(SITE)))
    done = subprocess.run([sys.executable, "-I", "-S", str(tmp_path / "runner.py"),
                           str(tmp_path / "jobs.json")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"ran {len(jobs)} models" in done.stdout
    for job, (tag, want) in zip(jobs, expected.items(), strict=True):
        with np.load(job["outputs"]) as got:
            assert len(got.files) == len(want), tag
            for i, w in enumerate(want):
                np.testing.assert_allclose(got[f"arr_{i}"], w, atol=1e-6, rtol=1e-6,
                                           err_msg=tag)


def test_layers_use_torch_modules_where_they_compute_the_same(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    assert main(["compile", str(SPECS / "digits_cnn.nn"), "--emit", "torch"]) == 0
    text = capsys.readouterr().out
    assert "self.conv_pool_1_conv2d_1 = nn.Conv2d(1, 16, 3, padding=1)" in text
    assert "self.dense_1 = nn.Linear(128, 64)" in text
    assert "digits_cnn.nn:9  probs = features -> dense(64) -> relu -> dense(10) -> softmax" \
        in text
    assert "import nndsl" not in text and "from nndsl" not in text
    assert main(["compile", str(SPECS / "sine_lstm.nn"), "--emit", "torch"]) == 0
    assert "nn.LSTM(1, 16, batch_first=True)" in capsys.readouterr().out
    assert main(["compile", str(SPECS / "peephole_lstm.nn"), "--emit", "torch"]) == 0
    text = capsys.readouterr().out
    assert "for step in range(x.shape[1]):" in text and "Weights(" in text


def test_a_py_output_means_torch_and_several_models_need_a_choice(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(SPECS / "gan.nn"), "-o", str(tmp_path / "gan.py")]) == 1
    assert "--model" in capsys.readouterr().err
    out = tmp_path / "g.py"
    assert main(["compile", str(SPECS / "gan.nn"), "--model", "generator", "-o", str(out)]) == 0
    assert "class Generator(nn.Module):" in out.read_text()


@pytest.fixture
def unrolling_op():  # type: ignore[no-untyped-def]
    """A layer whose decomposition loops over its input's time axis (removed afterwards)."""
    from nndsl.ops.registry import OPS, op

    @op("sum_steps_for_test", "layer")
    def sum_steps(P, x):  # type: ignore[no-untyped-def]
        """Σ_t x[:, t] by a Python loop."""
        total = P.slice(x, 1, 0, 1)
        for t in range(1, P.shape(x)[1]):
            total = P.add(total, P.slice(x, 1, t, t + 1))
        return total

    yield "sum_steps_for_test"
    del OPS["sum_steps_for_test"]


def test_a_size_known_only_at_run_time_is_a_positioned_error(tmp_path: Path,
                                                             unrolling_op: str) -> None:
    from nndsl.backends.torch.source import module_source

    spec = tmp_path / "m.nn"
    spec.write_text(f"model m {{\n  input x: [batch, time, 3]\n  y = x -> {unrolling_op}\n"
                    "  output y\n}\n")
    program, sources = load(spec)
    with pytest.raises(NndslError) as info:
        module_source(program.models[0], sources, str(spec))
    assert info.value.span is not None and info.value.span.line == 3
    assert unrolling_op in info.value.message and "x.shape[1]" in info.value.message
    spec.write_text(spec.read_text().replace("time", "6"))  # a fixed length unrolls
    program, sources = load(spec)
    text = module_source(program.models[0], sources, str(spec))
    assert text.count("x[:, 5:6]") == 1
