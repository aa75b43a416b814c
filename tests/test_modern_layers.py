"""layer_norm, multi_head_attention, conv_transpose2d, upsample, gelu's tanh form and sine against
torch modules and functions with the weights copied per the documented layouts, and ONNX
Resize in onnxruntime; their shape-rule errors, positioned in a spec; the `majority` data set;
and the two shipped specs that use them, trained with `nndsl train`.

The shared suites cover the rest from the registration: NumPy vs torch vs onnxruntime on each
op's samples (tests/test_parity_ops.py), gradients by finite differences
(tests/test_gradients.py), shape rules against outputs (tests/test_layers_reference.py) and each
torch native against its decomposition (tests/test_torch_natives.py).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nndsl.backends.numpy.prims import make_numpy_prims

from nndsl.cli import main
from nndsl.data.builtin import builtin
from nndsl.errors import NndslError
from nndsl.ir import TensorType
from nndsl.ops.registry import OPS

from .conftest import ROOT
from .test_parity_ops import OpCase, export_case, run_onnxruntime

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(17)


def run(name: str, *inputs: Any, **params: Any) -> Any:
    return OPS[name].compute(make_numpy_prims(), *inputs, **params)


def t(a: np.ndarray) -> Any:
    return torch.from_numpy(np.ascontiguousarray(a))


def weights_for(name: str, shapes: list[tuple[Any, ...]], params: dict[str, Any],
                rng: np.random.Generator, dtypes: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Random weights of the shapes the op's weights rule gives (defaults filled in)."""
    types = [TensorType(s, d) for s, d in zip(shapes, dtypes or ("f64",) * len(shapes),
                                               strict=True)]
    specs = OPS[name].weights(*types, **params)
    return {k: rng.standard_normal(s.shape) * 0.5 for k, s in specs.items()}


# ---- layer_norm ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "axis", "use_bias"), [
    ((3, 5, 8), -1, True), ((2, 3, 4, 5), -2, True), ((2, 3, 4, 5), 1, False), ((4, 6), 1, True),
])
def test_layer_norm_against_torch(shape: tuple[int, ...], axis: int, use_bias: bool,
                                  rng: np.random.Generator) -> None:
    x = rng.standard_normal(shape) * 3 + 1
    w = weights_for("layer_norm", [shape], {"axis": axis, "use_bias": use_bias}, rng)
    assert w["gamma"].shape == shape[axis % len(shape):]
    want = F.layer_norm(t(x), w["gamma"].shape, t(w["gamma"]),
                        t(w["beta"]) if use_bias else None, eps=1e-3)
    got = run("layer_norm", x, axis=axis, eps=1e-3, use_bias=use_bias, **w)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-12)


def test_layer_norm_starts_as_a_plain_normalisation() -> None:
    specs = OPS["layer_norm"].weights(TensorType(("batch", "time", 4)))
    assert {k: (s.shape, s.role, s.init.name, s.init.kwargs) for k, s in specs.items()} == {
        "gamma": ((4,), "other", "const", (("value", 1.0),)),
        "beta": ((4,), "bias", "const", (("value", 0.0),))}


def test_layer_norm_exports_one_node(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    w = {k: v.astype(np.float32) for k, v in weights_for("layer_norm", [x.shape], {}, rng).items()}
    case = OpCase((x,), {}, w, {"gamma": "other", "beta": "bias"})
    assert [n.op_type for n in export_case(OPS["layer_norm"], case).graph.node] == [
        "LayerNormalization"]
    np.testing.assert_allclose(run_onnxruntime(OPS["layer_norm"], case),
                               run("layer_norm", x, **w), rtol=1e-5, atol=1e-5)


# ---- multi-head attention -----------------------------------------------------------------------


def torch_attention(w: dict[str, np.ndarray], heads: int, kdim: int, vdim: int) -> Any:
    """nn.MultiheadAttention with our weights copied in (module docstring of transformer.py)."""
    embed = w["weight_q"].shape[1]
    module = torch.nn.MultiheadAttention(embed, heads, bias="bias_q" in w, batch_first=True,
                                         kdim=kdim, vdim=vdim, dtype=torch.float64)
    with torch.no_grad():
        if module._qkv_same_embed_dim:
            module.in_proj_weight.copy_(t(np.concatenate([w[f"weight_{r}"] for r in "qkv"])))
        else:
            for r in "qkv":
                getattr(module, f"{r}_proj_weight").copy_(t(w[f"weight_{r}"]))
        module.out_proj.weight.copy_(t(w["weight_out"]))
        if "bias_q" in w:
            module.in_proj_bias.copy_(t(np.concatenate([w[f"bias_{r}"] for r in "qkv"])))
            module.out_proj.bias.copy_(t(w["bias_out"]))
    return module


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("use_bias", [True, False])
def test_self_attention_against_torch(causal: bool, masked: bool, use_bias: bool,
                                      rng: np.random.Generator) -> None:
    x = rng.standard_normal((3, 6, 8))
    mask = (rng.random((3, 6)) < 0.7).astype(np.int64)
    mask[:, 0] = 1  # every query keeps a key (torch gives NaN where all are hidden)
    inputs = (x, mask) if masked else (x,)
    params = {"heads": 2, "causal": causal, "use_bias": use_bias}
    w = weights_for("multi_head_attention", [a.shape for a in inputs], params, rng,
                    ("f64", "i64")[:len(inputs)])
    module = torch_attention(w, 2, 8, 8)
    want, _ = module(t(x), t(x), t(x), key_padding_mask=t(mask == 0) if masked else None,
                     attn_mask=torch.ones(6, 6, dtype=torch.bool).triu(1) if causal else None,
                     need_weights=False)
    got = run("multi_head_attention", *inputs, **params, **w)
    np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-9, atol=1e-12)


def test_cross_attention_against_torch(rng: np.random.Generator) -> None:
    """Queries [2, 4, 8] over keys [2, 5, 6] and values [2, 5, 3], the last key padded."""
    q, k, v = (rng.standard_normal(s) for s in ((2, 4, 8), (2, 5, 6), (2, 5, 3)))
    mask = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    w = weights_for("multi_head_attention", [q.shape, k.shape, v.shape, mask.shape],
                    {"heads": 4}, rng, ("f64", "f64", "f64", "i64"))
    assert w["weight_k"].shape == (8, 6) and w["weight_out"].shape == (8, 8)
    want, _ = torch_attention(w, 4, 6, 3)(t(q), t(k), t(v), key_padding_mask=t(mask == 0),
                                          need_weights=False)
    got = run("multi_head_attention", q, k, v, mask, heads=4, **w)
    np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-9, atol=1e-12)


def test_attention_roles_follow_the_inputs(rng: np.random.Generator) -> None:
    """(x) is (x, x, x); (queries, memory) is (queries, memory, memory); `dim` sets the width."""
    x, memory = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 6))
    params = {"heads": 3, "dim": 6}
    w = weights_for("multi_head_attention", [x.shape, memory.shape], params, rng)
    assert w["weight_q"].shape == (6, 4) and w["weight_out"].shape == (4, 6)
    np.testing.assert_allclose(run("multi_head_attention", x, memory, **params, **w),
                               run("multi_head_attention", x, memory, memory, **params, **w))
    w = weights_for("multi_head_attention", [x.shape], params, rng)
    np.testing.assert_allclose(run("multi_head_attention", x, **params, **w),
                               run("multi_head_attention", x, x, x, **params, **w))


def test_a_query_with_every_key_hidden_attends_evenly(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3, 4))
    params = {"heads": 1, "use_bias": False}
    w = weights_for("multi_head_attention", [x.shape], params, rng)
    w["weight_q"] = np.zeros_like(w["weight_q"])  # equal scores: the same as no key hidden
    hidden = run("multi_head_attention", x, np.zeros((2, 3), dtype=np.int64), **params, **w)
    np.testing.assert_allclose(hidden, run("multi_head_attention", x, **params, **w))


# ---- conv_transpose2d ---------------------------------------------------------------------------


@pytest.mark.parametrize(("kernel", "stride", "padding", "output_padding"), [
    (3, 1, "valid", 0), (3, 2, "valid", 1), (4, 2, 1, 0), ((3, 2), (2, 3), 1, (1, 2)),
    (2, 2, 0, 0),
])
def test_conv_transpose2d_against_torch(kernel: Any, stride: Any, padding: Any,
                                        output_padding: Any, rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3, 4, 5))
    params = {"channels": 2, "kernel": kernel, "stride": stride, "padding": padding,
              "output_padding": output_padding}
    w = weights_for("conv_transpose2d", [x.shape], params, rng)
    assert w["weight"].shape[:2] == (3, 2)  # [in, out, kh, kw], as torch ConvTranspose2d
    want = F.conv_transpose2d(t(x), t(w["weight"]), t(w["bias"]), stride=stride,
                              padding=0 if padding == "valid" else padding,
                              output_padding=output_padding)
    got = run("conv_transpose2d", x, **params, **w)
    assert OPS["conv_transpose2d"].output_type(TensorType(x.shape), **params).shape == got.shape
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("kernel", "stride"), [(4, 2), (3, 2), (3, 3), (5, 2), ((2, 3), 2)])
def test_conv_transpose2d_same_scales_by_the_stride(kernel: Any, stride: int,
                                                    rng: np.random.Generator) -> None:
    """`same` crops ⌊(k − s)/2⌋ before and the rest after the full output: out = in · s."""
    x = rng.standard_normal((2, 3, 4, 5))
    params = {"channels": 2, "kernel": kernel, "stride": stride, "padding": "same"}
    w = weights_for("conv_transpose2d", [x.shape], params, rng)
    full = F.conv_transpose2d(t(x), t(w["weight"]), t(w["bias"]), stride=stride).numpy()
    k = (kernel,) * 2 if isinstance(kernel, int) else kernel
    lo = [(kk - stride) // 2 for kk in k]
    want = full[:, :, lo[0]:lo[0] + 4 * stride, lo[1]:lo[1] + 5 * stride]
    got = run("conv_transpose2d", x, **params, **w)
    assert got.shape == (2, 2, 4 * stride, 5 * stride)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_conv_transpose2d_is_the_adjoint_of_conv2d(rng: np.random.Generator) -> None:
    """<conv2d(x; W), y> = <x, conv_transpose2d(y; W)> for the same W [C, O, kh, kw]."""
    x, y = rng.standard_normal((2, 3, 7, 7)), rng.standard_normal((2, 4, 4, 4))
    w = rng.standard_normal((4, 3, 3, 3))  # conv2d's [out, in]: conv_transpose2d's [in, out]
    forward = run("conv2d", x, channels=4, kernel=3, stride=2, padding=1, use_bias=False,
                  weight=w)
    back = run("conv_transpose2d", y, channels=3, kernel=3, stride=2, padding=1, use_bias=False,
               weight=w)
    assert back.shape == x.shape
    assert np.vdot(forward, y) == pytest.approx(np.vdot(x, back), rel=1e-12)


# ---- upsample -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("scale", [2, 3, (1, 4), (3, 2)])
def test_upsample_against_torch_and_onnx_resize(mode: str, scale: Any,
                                                rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3, 4, 1 if scale == (1, 4) else 5))
    factors = (scale, scale) if isinstance(scale, int) else scale
    corners = {"align_corners": False} if mode == "bilinear" else {}
    want = F.interpolate(t(x), scale_factor=tuple(map(float, factors)), mode=mode, **corners)
    got = run("upsample", x, scale=scale, mode=mode)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-14)
    case = OpCase((x.astype(np.float32),), {"scale": scale, "mode": mode}, {}, {})
    assert [n.op_type for n in export_case(OPS["upsample"], case).graph.node] == ["Resize"]
    np.testing.assert_allclose(run_onnxruntime(OPS["upsample"], case), got, rtol=1e-5, atol=1e-6)


def test_nearest_upsample_repeats_pixels() -> None:
    x = np.arange(4.0).reshape(1, 1, 2, 2)
    np.testing.assert_array_equal(run("upsample", x, scale=(2, 3))[0, 0], [
        [0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1], [2, 2, 2, 3, 3, 3], [2, 2, 2, 3, 3, 3]])


# ---- activations --------------------------------------------------------------------------------


def test_gelu_forms_against_torch() -> None:
    x = np.concatenate([np.linspace(-6, 6, 49), [-300.0, -30.0, 30.0, 300.0]]).reshape(1, -1)
    for form in ("none", "tanh"):
        np.testing.assert_allclose(run("gelu", x, approximate=form),
                                   F.gelu(t(x), approximate=form).numpy(), rtol=1e-12,
                                   atol=1e-15)
    gap = np.abs(run("gelu", x) - run("gelu", x, approximate="tanh")).max()
    assert 1e-5 < gap < 1e-3  # two functions, close (Hendrycks & Gimpel: the tanh fit)


def test_sine_is_periodic() -> None:
    x = np.linspace(-4, 4, 17)
    np.testing.assert_allclose(run("sine", x), np.sin(x), rtol=1e-15)
    np.testing.assert_allclose(run("sine", x, w0=30.0), run("sine", x + 2 * np.pi / 30, w0=30.0),
                               atol=1e-12)


# ---- shape-rule errors --------------------------------------------------------------------------


def ty(*shape: Any, dtype: str = "f32") -> TensorType:
    return TensorType(tuple(shape), dtype)


@pytest.mark.parametrize(("name", "types", "params", "words"), [
    ("layer_norm", [ty("b", 4)], {"axis": 0}, "axis 0 is not a feature axis"),
    ("layer_norm", [ty("b", 4)], {"axis": 2}, "axis 2 is not a feature axis"),
    ("layer_norm", [ty("b", "t", 4)], {"axis": 1}, "known number of features (axis 1)"),
    ("layer_norm", [ty("b", 4)], {"eps": 0.0}, "`eps` must be positive"),
    ("layer_norm", [ty("b")], {}, "at least 2 axes"),
    ("multi_head_attention", [ty("b", 5, 6)], {"heads": 4}, "width 6 does not split into 4"),
    ("multi_head_attention", [ty("b", 5, 6)], {"heads": 0}, "`heads` must be positive"),
    ("multi_head_attention", [ty("b", 6)], {"heads": 2}, "input expects a 3-D input"),
    ("multi_head_attention", [ty("b", 5, dtype="i64")], {"heads": 1}, "expects a 3-D input"),
    ("multi_head_attention", [ty("b", 5, 4, dtype="i64")], {"heads": 1}, "floating-point"),
    ("multi_head_attention", [ty("b", 5, 4), ty("b", 6)], {"heads": 2},
     "number of keys (mask axis 1): 5 vs 6"),
    ("multi_head_attention", [ty("b", 5, 4), ty("b", 5), ty("b", 5, 4)], {"heads": 2},
     "keys expects a 3-D input"),  # hint: a [batch, keys] mask comes last
    ("multi_head_attention", [ty("b", 5, 4)] * 4, {"heads": 2}, "1 to 3 sequences, got 4"),
    ("multi_head_attention", [ty("b", 2, 4), ty("b", 5, 4), ty("b", 6, 4)], {"heads": 2},
     "number of keys and values"),
    ("multi_head_attention", [ty("b", "t", 4)], {"heads": 2, "causal": True},
     "causal=true needs integer numbers of queries and keys"),
    ("conv_transpose2d", [ty("b", 3, 4, 4)], {"channels": 2, "kernel": 3, "stride": 2,
                                              "output_padding": 2}, "less than the stride"),
    ("conv_transpose2d", [ty("b", 3, 4, 4)], {"channels": 2, "kernel": 3, "padding": 3},
     "less than the kernel"),
    ("conv_transpose2d", [ty("b", 3, 4, 4)], {"channels": 2, "kernel": 2, "stride": 3,
                                              "padding": "same"}, "needs kernel >= stride"),
    ("conv_transpose2d", [ty("b", 3, 4, 4)], {"channels": 2, "kernel": 2, "padding": "full"},
     "not a border mode"),
    ("conv_transpose2d", [ty("b", 3, 4)], {"channels": 2, "kernel": 2}, "expects a 4-D input"),
    ("conv_transpose2d", [ty("b", 3, "h", 4)], {"channels": 2, "kernel": 2},
     "integer spatial sizes"),
    ("conv_transpose2d", [ty("b", 3, 4, 4)], {"channels": 0, "kernel": 2},
     "`channels` must be positive"),
    ("upsample", [ty("b", 3, 4)], {"scale": 2}, "expects a 4-D input"),
    ("upsample", [ty("b", 3, 4, 4)], {"scale": 0}, "`scale` must be a positive integer"),
    ("upsample", [ty("b", 3, 4, 4)], {"scale": (2, 2, 2)}, "`scale` must be"),
])
def test_shape_rule_errors(name: str, types: list[TensorType], params: dict[str, Any],
                           words: str) -> None:
    with pytest.raises(NndslError) as info:
        OPS[name].output_type(*types, **params)
    assert words in info.value.message, info.value.message
    assert info.value.expected or info.value.hint


def test_errors_are_positioned_in_a_spec(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "bad.nn"
    spec.write_text("model bad {\n  input x: [batch, time, 6]\n"
                    "  y = x -> multi_head_attention(4)\n  output y\n}\n", encoding="utf-8")
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert f"{spec}:3:12: error: multi_head_attention width 6 does not split into 4 heads" in err
    assert "Traceback" not in err


# ---- the majority data set ----------------------------------------------------------------------


def test_majority_rows_have_a_unique_most_frequent_token() -> None:
    data = builtin(ROOT, name="majority", n=300, seed=3)
    x, y = data["x"], data["y"]
    assert x.shape == (300, 12) and x.dtype == np.int64 and y.dtype == np.int64
    counts = np.stack([(x == k).sum(axis=1) for k in range(4)], axis=1)
    assert np.array_equal(counts.argmax(axis=1), y)
    assert np.all(np.sort(counts, axis=1)[:, -2] < counts.max(axis=1))
    assert set(np.unique(y)) == {0, 1, 2, 3}
    np.testing.assert_array_equal(data["onehot"].argmax(axis=1), y)
    assert np.array_equal(builtin(ROOT, name="majority", n=300, seed=3)["x"], x)
    with pytest.raises(NndslError, match="noise"):
        builtin(ROOT, name="majority", noise=0.1)


# ---- the shipped specs --------------------------------------------------------------------------


def train(spec: str, epochs: int, run_dir: Path) -> list[dict[str, float]]:
    """`nndsl train` on CPU; the per-epoch rows of metrics.csv."""
    assert main(["train", str(ROOT / "specs" / spec), "--device", "cpu", "--epochs",
                 str(epochs), "--run-dir", str(run_dir), "--quiet"]) == 0
    with (run_dir / "metrics.csv").open(encoding="utf-8") as f:
        return [{k: float(v) for k, v in row.items() if k not in ("kind", "phase")}
                for row in csv.DictReader(f) if row["kind"] == "epoch"]


@pytest.mark.slow
def test_transformer_classifier_reaches_the_stated_accuracy(tmp_path: Path) -> None:
    """specs/transformer_classifier.nn: at least 95% validation accuracy after 5 epochs."""
    rows = train("transformer_classifier.nn", 5, tmp_path)
    assert len(rows) == 5 and rows[-1]["val_loss"] < rows[0]["val_loss"]
    assert rows[-1]["val_accuracy"] >= 0.95, rows[-1]


@pytest.mark.slow
def test_conv_autoencoder_learns_more_than_the_mean_image(tmp_path: Path) -> None:
    """specs/conv_autoencoder.nn: the validation loss falls every epoch and ends below 0.42,
    the binary cross-entropy of always predicting the mean digit image."""
    rows = train("conv_autoencoder.nn", 4, tmp_path)
    losses = [r["val_loss"] for r in rows]
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses
    assert losses[-1] < 0.42, losses
