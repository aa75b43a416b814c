"""Layers (layers.py, conv.py, recurrent.py; transformer.py and upsampling.py have their own
references in tests/test_modern_layers.py) against independent references written here:
plain loops, NumPy written differently, torch.nn.functional / torch.nn modules with the weights
mapped per the documented layout, and the ONNX reference evaluator for the recurrent variants
torch lacks (which also pins the documented ONNX mapping). Shape rules are checked against the
actual outputs on every sample, and their error messages are pinned."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from nndsl.backends.numpy.prims import make_numpy_prims

import nndsl.ops.conv as conv
import nndsl.ops.hopfield as hopfield
import nndsl.ops.layers as layers
import nndsl.ops.recurrent as recurrent
import nndsl.ops.transformer as transformer
import nndsl.ops.upsampling as upsampling
from nndsl.errors import NndslError
from nndsl.ir import TensorType
from nndsl.ops.registry import OPS, OpDef, WithUpdates

torch = pytest.importorskip("torch")
F = torch.nn.functional

MODULES = {m.__name__ for m in (layers, conv, recurrent, transformer, upsampling, hopfield)}
MINE = sorted(name for name, d in OPS.items()
              if d.compute.__module__ in MODULES and d.kind != "loss")  # not hopfield's energy


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def run(name: str, *inputs: Any, training: bool = False, seed: int = 0, **kwargs: Any) -> Any:
    return OPS[name].compute(make_numpy_prims(training, seed), *inputs, **kwargs)


def t(a: np.ndarray) -> Any:
    return torch.from_numpy(np.ascontiguousarray(a))


def ty(*shape: Any, dtype: str = "f32") -> TensorType:
    return TensorType(tuple(shape), dtype)


def random_weights(opdef: OpDef, types: list[TensorType], params: dict[str, Any],
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    specs = opdef.weights(*types, **params) if opdef.weights else {}
    out = {k: rng.standard_normal(s.shape) * 0.5 for k, s in specs.items()}
    if "running_var" in out:
        out["running_var"] = rng.uniform(0.5, 2.0, specs["running_var"].shape)
    return out


def sample_cases(opdef: OpDef, rng: np.random.Generator) -> list[tuple[Any, ...]]:
    if opdef.sample_inputs is not None:
        return [opdef.sample_inputs(rng)]
    return [tuple(rng.standard_normal(s) for s in case) for case in opdef.samples]


# ---- registration and shape rules on the samples ---------------------------------------------


def test_the_catalog_of_layers() -> None:
    assert set(MINE) == {
        "dense", "flatten", "reshape", "embedding", "concat", "add", "sub", "mul",
        "dropout", "gaussian_noise", "mask_noise", "batchnorm", "reparameterize", "rbf",
        "hopfield", "prelu", "rrelu", "maxout", "conv1d", "conv2d", "maxpool1d", "avgpool1d",
        "maxpool2d", "avgpool2d", "l2pool2d", "global_avgpool", "global_maxpool", "kmaxpool",
        "rnn", "lstm", "gru", "attention", "layer_norm", "multi_head_attention",
        "conv_transpose2d", "upsample"}
    assert {OPS[n].kind for n in ("prelu", "rrelu", "maxout")} == {"activation"}
    assert {n for n in MINE if OPS[n].training_only} == {"dropout", "gaussian_noise",
                                                         "mask_noise"}


@pytest.mark.parametrize("name", MINE)
def test_op_docstring_is_one_formula_line(name: str) -> None:
    doc = OPS[name].doc
    assert doc and "\n" not in doc and len(doc) <= 100


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name", MINE)
def test_shape_rule_matches_the_output(name: str, training: bool,
                                       rng: np.random.Generator) -> None:
    opdef = OPS[name]
    for inputs in sample_cases(opdef, rng):
        kinds = [np.asarray(a).dtype.kind for a in inputs]
        types = [ty(*np.shape(a), dtype="i64" if k == "i" else "f32")
                 for a, k in zip(inputs, kinds, strict=True)]
        params = dict(opdef.sample_params)
        expected = opdef.output_type(*types, **params)
        weights = random_weights(opdef, types, params, rng)
        assert set(weights) <= set(opdef.weight_params)
        out = opdef.compute(make_numpy_prims(training), *inputs, **params, **weights)
        if isinstance(out, WithUpdates):  # new buffers, or a recurrent layer's final state
            assert set(out.updates) <= set(opdef.weight_params)  # (state_h [batch, H])
            for key, value in out.updates.items():
                assert np.shape(value) == (weights[key].shape if key in weights else
                                           (np.shape(inputs[0])[0], params["units"]))
            out = out.value
        assert np.shape(out) == expected.shape, name


def test_symbolic_dims_flow_through() -> None:
    def out(name: str, *types: TensorType, **params: Any) -> tuple[Any, ...]:
        return OPS[name].output_type(*types, **params).shape

    assert out("dense", ty("batch", 8), units=3) == ("batch", 3)
    assert out("dense", ty("batch", "time", 8), units=3) == ("batch", "time", 3)
    assert out("lstm", ty("batch", "time", 3), units=4) == ("batch", "time", 4)
    assert out("gru", ty("b", "t", 3), units=4, bidirectional=True,
               sequences=False) == ("b", 8)
    assert out("conv1d", ty("batch", 2, "time"), channels=5, kernel=3,
               padding="same") == ("batch", 5, "time")
    assert out("conv2d", ty("b", 1, 8, 8), channels=4, kernel=3, stride=2) == ("b", 4, 3, 3)
    assert out("conv2d", ty("b", 1, 8, 8), channels=4, kernel=2,
               padding="same") == ("b", 4, 8, 8)
    assert out("conv1d", ty("b", 1, 8), channels=2, kernel=3, padding="full") == ("b", 2, 10)
    assert out("maxpool2d", ty("b", 3, 7, 7), size=2) == ("b", 3, 3, 3)
    assert out("global_avgpool", ty("b", 3, "h", "w")) == ("b", 3)
    assert out("concat", ty("b", 2), ty("b", 3)) == ("b", 5)
    assert out("concat", ty("b", "s", 2), ty("b", "t", 2), axis=1) == ("b", "s+t", 2)
    assert out("add", ty("b", 3), ty(3), ty()) == ("b", 3)
    assert out("add", ty("b", 1), ty(1, 4)) == ("b", 4)
    assert out("embedding", ty("b", "t", dtype="i64"), vocab=9, dim=2) == ("b", "t", 2)
    assert out("reshape", ty("b", 12), shape=(3, -1)) == ("b", 3, 4)
    assert out("flatten", ty("b", 2, 3, 4)) == ("b", 24)
    assert out("attention", ty("b", 2, 4), ty("b", 5, 4), ty("b", 5, 6)) == ("b", 2, 6)
    assert out("kmaxpool", ty("b", 3, "t"), k=2) == ("b", 3, 2)
    assert out("maxout", ty("b", 6), k=3) == ("b", 6)


def error(name: str, *types: TensorType, **params: Any) -> NndslError:
    with pytest.raises(NndslError) as info:
        opdef = OPS[name]
        opdef.output_type(*types, **params)
        if opdef.weights is not None:
            opdef.weights(*types, **params)
    assert info.value.span is None
    return info.value


def test_dense_rejects_a_4d_input_with_a_flatten_hint() -> None:
    e = error("dense", ty("batch", 32, 2, 2), units=10)
    assert e.message == "dense expects a 2-D input [batch, features], got [batch, 32, 2, 2]"
    assert e.hint == "insert `flatten` before `dense`"
    assert e.expected == "[batch, features] or [batch, time, features]"
    assert e.received == "f32[batch, 32, 2, 2]"


@pytest.mark.parametrize(("name", "types", "params", "words"), [
    ("dense", [ty("batch", "n")], {"units": 2}, "needs a known number of input features"),
    ("dense", [ty("batch", 4)], {"units": 0}, "`units` must be positive"),
    ("flatten", [ty("batch", "t", 4)], {}, "known number of elements per example"),
    ("reshape", [ty("b", 12)], {"shape": (5, -1)}, "cannot turn [b, 12] into [batch, 5, -1]"),
    ("reshape", [ty("b", 12)], {"shape": (-1, -1)}, "not valid"),
    ("embedding", [ty("b", 5)], {"vocab": 9, "dim": 2}, "expects integer indices"),
    ("concat", [ty("b", 2)], {}, "at least 2 inputs"),
    ("concat", [ty("b", 2, 3), ty("b", 4, 3)], {}, "disagree on axis 1: 2 vs 4"),
    ("concat", [ty("b", 2), ty("b", 2, dtype="f64")], {}, "different dtypes"),
    ("add", [ty("b", 3)], {}, "at least 2 inputs"),
    ("add", [ty("b", 3), ty("b", 4)], {}, "do not broadcast: [b, 3] and [b, 4]"),
    ("sub", [ty(2, 3), ty(3, 3)], {}, "do not broadcast"),
    ("dropout", [ty("b", 3)], {"rate": 0.5, "keep": 0.5}, "not both"),
    ("dropout", [ty("b", 3)], {}, "neither was given"),
    ("dropout", [ty("b", 3)], {"rate": 1.0}, "`rate` must be in [0, 1)"),
    ("dropout", [ty("b", 3)], {"keep": 0.0}, "`keep` must be in (0, 1]"),
    ("mask_noise", [ty("b", 3)], {"rate": 1.5}, "`rate` must be in [0, 1]"),
    ("gaussian_noise", [ty("b", 3)], {"std": -1.0}, "`std` must be >= 0"),
    ("batchnorm", [ty("b", "c", 4, 4)], {}, "known number of features (axis 1)"),
    ("batchnorm", [ty("b")], {}, "expects an input with at least 2 axes"),
    ("batchnorm", [ty("b", 3)], {"momentum": 2.0}, "`momentum` must be in [0, 1]"),
    ("reparameterize", [ty("b", 3), ty("b", 4)], {}, "disagree on axis 1"),
    ("rbf", [ty("b", 2, 2)], {"units": 3}, "expects a 2-D input"),
    ("hopfield", [ty("b", 4)], {"steps": 0}, "`steps` must be positive"),
    ("prelu", [ty("b")], {}, "at least 2 axes [batch, features, ...], got [b]"),
    ("flatten", [ty()], {}, "flatten expects an input with at least 1 axes"),
    ("rrelu", [ty("b", 3)], {"lower": 0.5, "upper": 0.1}, "0 <= lower <= upper"),
    ("maxout", [ty("b", 3)], {"k": 0}, "`k` must be positive"),
    ("conv2d", [ty("b", 8)], {"channels": 4, "kernel": 3}, "expects a 4-D input "
     "[batch, channels, height, width], got [b, 8]"),
    ("conv2d", [ty("b", 1, "h", 8)], {"channels": 4, "kernel": 3}, "integer spatial sizes"),
    ("conv2d", [ty("b", 1, 4, 4)], {"channels": 4, "kernel": 5}, "window of 5 does not fit"),
    ("conv2d", [ty("b", 1, 4, 4)], {"channels": 4, "kernel": (3, 3, 3)}, "`kernel` must be"),
    ("conv2d", [ty("b", 1, 4, 4)], {"channels": 4, "kernel": 3, "padding": -1},
     "is not a border mode"),
    ("conv1d", [ty("b", "c", 8)], {"channels": 4, "kernel": 3}, "input channels"),
    ("maxpool2d", [ty("b", 1, 4)], {"size": 2}, "expects a 4-D input"),
    ("global_maxpool", [ty("b", 3)], {}, "at least 3 axes [batch, channels, *spatial]"),
    ("kmaxpool", [ty("b", 3, 2)], {"k": 3}, "keeps k=3 values but axis -1 has only 2"),
    ("kmaxpool", [ty("b", 3, 4)], {"k": 1, "axis": 0}, "not a feature axis"),
    ("lstm", [ty("b", 3)], {"units": 4}, "expects a 3-D input [batch, time, features]"),
    ("gru", [ty("b", "t", "f")], {"units": 4}, "known number of input features"),
    ("rnn", [ty("b", "t", 3)], {"units": 4, "activation": "prelu"}, "owns weights"),
    ("rnn", [ty("b", "t", 3)], {"units": 4, "activation": "tanhh"}, "unknown activation"),
    ("attention", [ty("b", 2, 4), ty("b", 5, 3), ty("b", 5, 6)], {}, "d (query and key"),
    ("attention", [ty("b", 2, 4), ty("b", 5, 4), ty("b", 6, 6)], {}, "number of keys"),
    ("attention", [ty("b", 4), ty("b", 5, 4), ty("b", 5, 6)], {}, "attention query expects"),
])
def test_shape_rule_errors(name: str, types: list[TensorType], params: dict[str, Any],
                           words: str) -> None:
    e = error(name, *types, **params)
    assert words in e.message
    assert e.expected or e.hint or e.received


def test_rules_fill_in_the_op_defaults() -> None:
    assert OPS["lstm"].output_type(ty(2, 5, 3), units=4).shape == (2, 5, 4)
    specs = OPS["lstm"].weights(ty(2, 5, 3), units=4, peephole=True, coupled=True)
    assert {k: s.shape for k, s in specs.items()} == {
        "weight_ih": (12, 3), "weight_hh": (12, 4), "bias_ih": (12,), "bias_hh": (12,),
        "weight_peephole": (8,)}


def test_dropout_takes_no_positional_probability() -> None:
    assert OPS["dropout"].positional_names == ()
    assert OPS["dense"].positional_names[0] == "units"
    assert OPS["maxout"].positional_names[:2] == ("k", "units")
    assert OPS["lstm"].positional_names[:5] == ("units", "bidirectional", "sequences",
                                                "peephole", "coupled")


# ---- affine and structural --------------------------------------------------------------------


def test_dense_against_torch_linear(rng: np.random.Generator) -> None:
    x, w, b = rng.standard_normal((4, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3)
    np.testing.assert_allclose(run("dense", x, units=3, weight=w, bias=b),
                               F.linear(t(x), t(w), t(b)).numpy(), rtol=1e-12)
    seq = rng.standard_normal((2, 6, 5))
    want = np.einsum("btf,uf->btu", seq, w)
    np.testing.assert_allclose(run("dense", seq, units=3, use_bias=False, weight=w), want,
                               rtol=1e-12)


def test_dense_tied_uses_the_other_weight_untransposed(rng: np.random.Generator) -> None:
    enc = rng.standard_normal((3, 8))  # an encoder dense(3) on 8 features: [out, in]
    specs = OPS["dense"].weights(ty("b", 3), units=8, tied="enc")
    assert specs["weight"].shape == enc.shape
    code, b = rng.standard_normal((2, 3)), rng.standard_normal(8)
    want = [[sum(code[n, i] * enc[i, j] for i in range(3)) + b[j] for j in range(8)]
            for n in range(2)]
    np.testing.assert_allclose(run("dense", code, units=8, tied="enc", weight=enc, bias=b),
                               want, rtol=1e-12)


def test_flatten_reshape_embedding(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3, 4, 5))
    np.testing.assert_array_equal(run("flatten", x), torch.flatten(t(x), 1).numpy())
    np.testing.assert_array_equal(run("reshape", x, shape=(-1, 5, 2)),
                                  t(x).reshape(2, 6, 5, 2).numpy())
    idx, table = rng.integers(0, 7, (3, 4)), rng.standard_normal((7, 2))
    np.testing.assert_array_equal(run("embedding", idx, vocab=7, dim=2, weight=table),
                                  F.embedding(t(idx), t(table)).numpy())


def test_concat_add_sub_mul(rng: np.random.Generator) -> None:
    a, b, c = rng.standard_normal((2, 3)), rng.standard_normal((2, 3)), rng.standard_normal(3)
    np.testing.assert_array_equal(run("concat", a, b), np.hstack([a, b]))
    np.testing.assert_array_equal(run("concat", a, b, axis=0), np.vstack([a, b]))
    np.testing.assert_allclose(run("add", a, b, c), a + b + c[None, :])
    np.testing.assert_allclose(run("mul", a, b, c), a * b * c)
    np.testing.assert_allclose(run("sub", a, c), a - c)


# ---- convolution and pooling -------------------------------------------------------------------


def naive_conv2d(x: np.ndarray, w: np.ndarray, stride: int, pad: tuple[int, int, int, int],
                 dil: int) -> np.ndarray:
    """Cross-correlation by loops; pad = (top, bottom, left, right)."""
    xp = np.pad(x, [(0, 0), (0, 0), pad[:2], pad[2:]])
    n, _, h, wd = xp.shape
    o, c, kh, kw = w.shape
    oh, ow = (h - dil * (kh - 1) - 1) // stride + 1, (wd - dil * (kw - 1) - 1) // stride + 1
    y = np.zeros((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for b in range(kw):
                    patch = xp[:, :, i * stride + a * dil, j * stride + b * dil]  # [n, c]
                    y[:, :, i, j] += patch @ w[:, :, a, b].T
    return y


@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation", "torch_padding"), [
    (3, 1, "valid", 1, 0),
    (3, 1, "same", 1, "same"),
    pytest.param(4, 1, "same", 1, "same",  # even kernel: the extra padding goes after
                 marks=pytest.mark.filterwarnings("ignore:Using padding='same'")),
    (3, 1, "same", 2, "same"),
    ((2, 3), 1, "same", 1, "same"),
    (3, 1, "full", 1, 2),
    (3, 2, 1, 1, 1),
    ((3, 2), (2, 1), "valid", (1, 2), 0),
])
def test_conv2d_against_torch(kernel: Any, stride: Any, padding: Any, dilation: Any,
                              torch_padding: Any, rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3, 9, 8))
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    w, b = rng.standard_normal((4, 3, kh, kw)), rng.standard_normal(4)
    got = run("conv2d", x, channels=4, kernel=kernel, stride=stride, padding=padding,
              dilation=dilation, weight=w, bias=b)
    want = F.conv2d(t(x), t(w), t(b), stride=stride, padding=torch_padding, dilation=dilation)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-12)
    params = dict(channels=4, kernel=kernel, stride=stride, padding=padding, dilation=dilation)
    assert OPS["conv2d"].output_type(ty(2, 3, 9, 8), **params).shape == got.shape


def test_conv2d_against_loops_and_catalog_border_modes(rng: np.random.Generator) -> None:
    x, w = rng.standard_normal((1, 2, 6, 6)), rng.standard_normal((3, 2, 3, 3))
    for padding, pad in (("valid", 0), ("same", 1), ("full", 2)):  # LAY-12: k//2, k-1
        got = run("conv2d", x, channels=3, kernel=3, padding=padding, weight=w)
        np.testing.assert_allclose(got, naive_conv2d(x, w, 1, (pad,) * 4, 1), rtol=1e-10)
    assert run("conv2d", x, channels=3, kernel=3, padding="full", weight=w).shape[-1] == 8
    w4 = rng.standard_normal((3, 2, 4, 4))  # even kernel, same: 1 before, 2 after
    np.testing.assert_allclose(run("conv2d", x, channels=3, kernel=4, padding="same", weight=w4),
                               naive_conv2d(x, w4, 1, (1, 2, 1, 2), 1), rtol=1e-10)
    got = run("conv2d", x, channels=3, kernel=3, stride=2, padding="same", weight=w)
    assert got.shape[-2:] == (3, 3)  # ceil(6 / 2)
    np.testing.assert_allclose(got, naive_conv2d(x, w, 2, (1,) * 4, 1), rtol=1e-10)


@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation", "torch_padding"), [
    (3, 1, "valid", 1, 0), (4, 1, "same", 2, "same"), (3, 2, "full", 1, 2), (5, 3, 2, 1, 2)])
def test_conv1d_against_torch(kernel: int, stride: int, padding: Any, dilation: int,
                              torch_padding: Any, rng: np.random.Generator) -> None:
    x, w, b = rng.standard_normal((2, 3, 11)), rng.standard_normal((5, 3, kernel)), np.ones(5)
    got = run("conv1d", x, channels=5, kernel=kernel, stride=stride, padding=padding,
              dilation=dilation, weight=w, bias=b)
    want = F.conv1d(t(x), t(w), t(b), stride=stride, padding=torch_padding, dilation=dilation)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-12)


def test_pools_against_torch(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3, 7, 6))
    for size, stride, pad in ((2, None, 0), (3, 2, 1), ((3, 2), (1, 2), 0)):
        kw = dict(size=size, stride=stride, padding=pad)
        tstride = stride if stride is not None else size
        np.testing.assert_allclose(run("maxpool2d", x, **kw),
                                   F.max_pool2d(t(x), size, tstride, pad).numpy())
        np.testing.assert_allclose(
            run("avgpool2d", x, **kw),
            F.avg_pool2d(t(x), size, tstride, pad, count_include_pad=True).numpy(), rtol=1e-12)
    seq = rng.standard_normal((2, 3, 9))
    np.testing.assert_allclose(run("maxpool1d", seq, size=3, stride=2),
                               F.max_pool1d(t(seq), 3, 2).numpy())
    np.testing.assert_allclose(run("avgpool1d", seq, size=2),
                               F.avg_pool1d(t(seq), 2).numpy(), rtol=1e-12)


def test_l2pool_is_the_root_of_the_window_sum_of_squares(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3, 6, 6))
    got = run("l2pool2d", x, size=3, stride=2)
    want = np.zeros((2, 3, 2, 2))
    for i in range(2):
        for j in range(2):
            window = x[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
            want[:, :, i, j] = np.sqrt((window**2).sum(axis=(2, 3)))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(got, F.lp_pool2d(t(np.abs(x)), 2, 3, 2).numpy(), rtol=1e-10)


def test_global_pools_and_kmax(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3, 4, 5))
    np.testing.assert_allclose(run("global_avgpool", x), x.mean(axis=(2, 3)), rtol=1e-12)
    np.testing.assert_array_equal(run("global_maxpool", x), x.max(axis=(2, 3)))
    seq = rng.standard_normal((2, 3, 8))
    got = run("kmaxpool", seq, k=3)
    for n in range(2):
        for c in range(3):
            top = sorted(sorted(range(8), key=lambda i, n=n, c=c: -seq[n, c, i])[:3])
            np.testing.assert_array_equal(got[n, c], seq[n, c, top])
    got1 = run("kmaxpool", seq, k=2, axis=1)
    idx = torch.topk(t(seq), 2, dim=1).indices.sort(dim=1).values
    np.testing.assert_array_equal(got1, torch.gather(t(seq), 1, idx).numpy())


# ---- normalisation and noise -----------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (2, 3, 4, 5)])
def test_batchnorm_against_torch(shape: tuple[int, ...], rng: np.random.Generator) -> None:
    x = rng.standard_normal(shape) * 2 + 1
    g, b = rng.standard_normal(3), rng.standard_normal(3)
    rm, rv = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    w = dict(gamma=g, beta=b, running_mean=rm, running_var=rv)
    want = F.batch_norm(t(x), t(rm), t(rv), t(g), t(b), training=False, eps=1e-3)
    np.testing.assert_allclose(run("batchnorm", x, eps=1e-3, **w), want.numpy(), rtol=1e-12)
    out = run("batchnorm", x, training=True, momentum=0.3, **w)
    trm, trv = t(rm.copy()), t(rv.copy())
    want = F.batch_norm(t(x), trm, trv, t(g), t(b), training=True, momentum=0.3)
    np.testing.assert_allclose(out.value, want.numpy(), rtol=1e-10)
    np.testing.assert_allclose(out.updates["running_mean"], trm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(out.updates["running_var"], trv.numpy(), rtol=1e-12)


def test_batchnorm_needs_two_values_per_channel_in_training() -> None:
    w = {k: np.ones(3) for k in ("gamma", "beta", "running_mean", "running_var")}
    with pytest.raises(ValueError, match="more than one value per channel"):
        run("batchnorm", np.ones((1, 3)), training=True, **w)


def test_batchnorm_weights() -> None:
    specs = OPS["batchnorm"].weights(ty("b", 3, 4, 4))
    assert {k: (s.shape, s.role, str(s.init), s.trainable) for k, s in specs.items()} == {
        "gamma": ((3,), "other", "const(value=1.0)", True),
        "beta": ((3,), "bias", "const(value=0.0)", True),
        "running_mean": ((3,), "buffer", "const(value=0.0)", False),
        "running_var": ((3,), "buffer", "const(value=1.0)", False)}


def test_dropout_is_inverted_and_rate_means_drop(rng: np.random.Generator) -> None:
    x = rng.uniform(1, 2, (200, 100))
    np.testing.assert_array_equal(run("dropout", x, rate=0.3), x)
    y = run("dropout", x, training=True, seed=3, rate=0.3)
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / 0.7, rtol=1e-12)
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_array_equal(run("dropout", x, training=True, seed=3, keep=0.7), y)
    np.testing.assert_array_equal(run("dropout", x, training=True, rate=0.0), x)


def test_noise_layers(rng: np.random.Generator) -> None:
    x = rng.uniform(1, 2, (300, 100))
    np.testing.assert_array_equal(run("gaussian_noise", x, std=0.5), x)
    noise = (run("gaussian_noise", x, training=True, std=0.5) - x) / 0.5
    assert abs(noise.mean()) < 0.01 and abs(noise.std() - 1) < 0.01
    np.testing.assert_array_equal(run("mask_noise", x, rate=0.25), x)
    y = run("mask_noise", x, training=True, rate=0.25)
    assert abs((y == 0).mean() - 0.25) < 0.01
    np.testing.assert_array_equal(y[y != 0], x[y != 0])  # no rescaling


def test_reparameterize(rng: np.random.Generator) -> None:
    mu, logvar = rng.standard_normal((400, 50)), rng.uniform(-2, 2, (400, 50))
    np.testing.assert_array_equal(run("reparameterize", mu, logvar), mu)
    eps = (run("reparameterize", mu, logvar, training=True) - mu) / np.exp(logvar / 2)
    assert abs(eps.mean()) < 0.01 and abs(eps.std() - 1) < 0.01


# ---- rbf, hopfield, prelu, rrelu, maxout -----------------------------------------------------


@pytest.mark.parametrize("kernel", ["gaussian", "ricker"])
def test_rbf_against_loops(kernel: str, rng: np.random.Generator) -> None:
    x, c, s = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.uniform(0.5, 2, 5)
    phi = {"gaussian": lambda r: math.exp(-r * r),
           "ricker": lambda r: (1 - r * r) * math.exp(-r * r / 2)}[kernel]
    want = [[phi(s[i] * math.dist(x[n], c[i])) for i in range(5)] for n in range(3)]
    np.testing.assert_allclose(run("rbf", x, units=5, kernel=kernel, centers=c, scales=s), want,
                               rtol=1e-12)


def hopfield_loops(x: np.ndarray, w: np.ndarray, b: np.ndarray, steps: int,
                   asynchronous: bool, sign: int = 1) -> np.ndarray:
    """sign⁺(x W + sign b) by loops; async visits units 0, 1, ... in every sweep."""
    x = x.copy()
    n = len(b)
    b = sign * b
    for _ in range(steps):
        if asynchronous:
            for row in x:
                for k in range(n):
                    row[k] = 1.0 if sum(row[i] * w[i, k] for i in range(n)) + b[k] >= 0 else -1.0
        else:
            x = np.array([[1.0 if sum(r[i] * w[i, k] for i in range(n)) + b[k] >= 0 else -1.0
                           for k in range(n)] for r in x])
    return x


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_hopfield_against_loops(mode: str, sign: int, rng: np.random.Generator) -> None:
    x = rng.choice([-1.0, 1.0], (3, 6))
    w = rng.standard_normal((6, 6))
    w = w + w.T
    b = rng.standard_normal(6) * 0.5
    got = run("hopfield", x, steps=3, mode=mode, bias_sign=sign, weight=w, bias=b)
    np.testing.assert_array_equal(got, hopfield_loops(x, w, b, 3, mode == "async", sign))


def test_hopfield_recalls_a_stored_pattern(rng: np.random.Generator) -> None:
    patterns = rng.choice([-1.0, 1.0], (2, 40))
    w = patterns.T @ patterns / 2 - np.eye(40)  # Hebbian storage (INIT-15)
    noisy = patterns.copy()
    noisy[:, :4] *= -1
    out = run("hopfield", noisy, steps=5, weight=w, bias=np.zeros(40))
    np.testing.assert_array_equal(out, patterns)


def test_prelu_against_torch(rng: np.random.Generator) -> None:
    x, a = rng.standard_normal((2, 3, 4, 4)), rng.uniform(0, 0.5, 3)
    np.testing.assert_allclose(run("prelu", x, alpha=a), F.prelu(t(x), t(a)).numpy())
    x2 = rng.standard_normal((5, 3))
    np.testing.assert_allclose(run("prelu", x2, alpha=a), F.prelu(t(x2), t(a)).numpy())
    one = np.array([0.1])
    np.testing.assert_allclose(run("prelu", x, shared=True, alpha=one),
                               F.prelu(t(x), t(one)).numpy())
    specs = OPS["prelu"].weights(ty("b", 3, 4, 4))
    assert specs["alpha"].shape == (3,) and str(specs["alpha"].init) == "const(value=0.25)"
    assert OPS["prelu"].weights(ty("b", 3), shared=True)["alpha"].shape == (1,)


def test_rrelu(rng: np.random.Generator) -> None:
    x = rng.standard_normal((100, 50))
    np.testing.assert_allclose(run("rrelu", x, lower=0.1, upper=0.3),
                               F.rrelu(t(x), 0.1, 0.3, training=False).numpy(), rtol=1e-12)
    y = run("rrelu", x, training=True, lower=0.1, upper=0.3)
    np.testing.assert_array_equal(y[x >= 0], x[x >= 0])
    slopes = y[x < 0] / x[x < 0]
    assert slopes.min() >= 0.1 and slopes.max() <= 0.3 and slopes.std() > 0.03


def test_maxout_against_loops(rng: np.random.Generator) -> None:
    x, w, b = rng.standard_normal((3, 5)), rng.standard_normal((8, 5)), rng.standard_normal(8)
    got = run("maxout", x, k=2, units=4, weight=w, bias=b)
    want = [[max(x[n] @ w[u * 2 + j] + b[u * 2 + j] for j in range(2)) for u in range(4)]
            for n in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    specs = OPS["maxout"].weights(ty("b", 5), k=3)
    assert specs["weight"].shape == (15, 5) and specs["bias"].shape == (15,)


# ---- recurrent layers against torch ------------------------------------------------------------


def load_torch(module: Any, w: dict[str, np.ndarray]) -> None:
    with torch.no_grad():
        for name, value in w.items():
            stem, _, rev = name.partition("_reverse")
            getattr(module, f"{stem}_l0{'_reverse' if name.endswith('_reverse') else ''}").copy_(
                t(value))
            assert rev == ""


def recurrent_weights(name: str, features: int, rng: np.random.Generator,
                      **params: Any) -> dict[str, np.ndarray]:
    specs = OPS[name].weights(ty("b", "t", features), **params)
    return {k: rng.standard_normal(s.shape) * 0.6 for k, s in specs.items()}


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("sequences", [True, False])
@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_recurrent_against_torch(name: str, bidirectional: bool, sequences: bool,
                                 rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 5, 3))
    params = dict(units=4, bidirectional=bidirectional, sequences=sequences)
    w = recurrent_weights(name, 3, rng, **params)
    module = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[name](
        3, 4, batch_first=True, bidirectional=bidirectional).double()
    load_torch(module, w)
    y, state = module(t(x))
    h_n = (state[0] if name == "lstm" else state).detach().numpy()  # [directions, batch, units]
    want = y.detach().numpy() if sequences else np.concatenate(list(h_n), axis=-1)
    np.testing.assert_allclose(run(name, x, **params, **w), want, rtol=1e-10, atol=1e-12)


def test_rnn_activation_is_any_weightless_activation(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 4, 3))
    w = recurrent_weights("rnn", 3, rng, units=5)
    module = torch.nn.RNN(3, 5, nonlinearity="relu", batch_first=True).double()
    load_torch(module, w)
    np.testing.assert_allclose(run("rnn", x, units=5, activation="relu", **w),
                               module(t(x))[0].detach().numpy(), rtol=1e-10)
    h = np.zeros((2, 5))
    for step in range(4):
        h = 1 / (1 + np.exp(-(x[:, step] @ w["weight_ih"].T + w["bias_ih"]
                              + h @ w["weight_hh"].T + w["bias_hh"])))
    np.testing.assert_allclose(run("rnn", x, units=5, activation="sigmoid", sequences=False, **w),
                               h, rtol=1e-12)


# ---- recurrent variants torch lacks: ONNX reference evaluator with the documented mapping ------


def blocks(a: np.ndarray, order: list[int], units: int) -> np.ndarray:
    """Reorder the stacked gate blocks (axis 0) of a weight or bias."""
    return np.concatenate([a[i * units:(i + 1) * units] for i in order])


def onnx_recurrent(op_type: str, x: np.ndarray, w: dict[str, np.ndarray], units: int,
                   order: list[int], peephole_order: list[int] | None = None,
                   **attrs: Any) -> np.ndarray:
    """Run one ONNX RNN/LSTM/GRU node on our weights mapped as recurrent.py documents."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    suffixes = ["", "_reverse"] if "weight_ih_reverse" in w else [""]
    W = np.stack([blocks(w[f"weight_ih{s}"], order, units) for s in suffixes])
    R = np.stack([blocks(w[f"weight_hh{s}"], order, units) for s in suffixes])
    B = np.stack([np.concatenate([blocks(w[f"bias_ih{s}"], order, units),
                                  blocks(w[f"bias_hh{s}"], order, units)]) for s in suffixes])
    feeds = {"X": x.transpose(1, 0, 2), "W": W, "R": R, "B": B}
    inputs = ["X", "W", "R", "B"]
    if peephole_order is not None:
        feeds["P"] = np.stack([blocks(w[f"weight_peephole{s}"], peephole_order, units)
                               for s in suffixes])
        inputs += ["", "", "", "P"]
    direction = "bidirectional" if len(suffixes) == 2 else "forward"
    node = helper.make_node(op_type, inputs, ["Y"], hidden_size=units, direction=direction,
                            **attrs)
    y_shape = (x.shape[1], len(suffixes), x.shape[0], units)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(k, TensorProto.DOUBLE, v.shape) for k, v in feeds.items()],
        [helper.make_tensor_value_info("Y", TensorProto.DOUBLE, y_shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)],
                              ir_version=8)
    onnx.checker.check_model(model)
    y = ReferenceEvaluator(model).run(None, feeds)[0]  # [T, D, batch, H]
    return y.transpose(2, 0, 1, 3).reshape(x.shape[0], x.shape[1], -1)


ONNX_LSTM_ORDER = [0, 3, 1, 2]  # ONNX (i, o, f, c) from our (i, f, g, o)
ONNX_GRU_ORDER = [1, 0, 2]  # ONNX (z, r, h) from our (r, z, n)
ONNX_PEEPHOLE_ORDER = [0, 2, 1]  # ONNX (i, o, f) from our (i, f, o)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_onnx_mapping_lstm_peephole(bidirectional: bool, rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 5, 3))
    params = dict(units=4, bidirectional=bidirectional, peephole=True)
    w = recurrent_weights("lstm", 3, rng, **params)
    want = onnx_recurrent("LSTM", x, w, 4, ONNX_LSTM_ORDER, ONNX_PEEPHOLE_ORDER)
    np.testing.assert_allclose(run("lstm", x, **params, **w), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("linear_before_reset", [False, True])
def test_onnx_mapping_gru(linear_before_reset: bool, bidirectional: bool,
                          rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 5, 3))
    params = dict(units=4, bidirectional=bidirectional, linear_before_reset=linear_before_reset)
    w = recurrent_weights("gru", 3, rng, **params)
    want = onnx_recurrent("GRU", x, w, 4, ONNX_GRU_ORDER,
                          linear_before_reset=int(linear_before_reset))
    np.testing.assert_allclose(run("gru", x, **params, **w), want, rtol=1e-10, atol=1e-12)


def test_onnx_mapping_rnn(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 5, 3))
    w = recurrent_weights("rnn", 3, rng, units=4, bidirectional=True)
    want = onnx_recurrent("RNN", x, w, 4, [0], activations=["Tanh", "Tanh"])
    np.testing.assert_allclose(run("rnn", x, units=4, bidirectional=True, **w), want,
                               rtol=1e-10)


def sig(v: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-v))


def test_gru_reset_before_the_matmul_against_per_gate_loops(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 4, 3))
    w = recurrent_weights("gru", 3, rng, units=2)
    Wr, Wz, Wn = np.split(w["weight_ih"], 3)
    Ur, Uz, Un = np.split(w["weight_hh"], 3)
    br, bz, bn = np.split(w["bias_ih"], 3)
    cr, cz, cn = np.split(w["bias_hh"], 3)
    h = np.zeros((2, 2))
    outs = []
    for step in range(4):
        xt = x[:, step]
        r = sig(xt @ Wr.T + br + h @ Ur.T + cr)
        z = sig(xt @ Wz.T + bz + h @ Uz.T + cz)
        n = np.tanh(xt @ Wn.T + bn + (r * h) @ Un.T + cn)  # the seed's reset placement
        h = (1 - z) * n + z * h
        outs.append(h)
    got = run("gru", x, units=2, linear_before_reset=False, **w)
    np.testing.assert_allclose(got, np.stack(outs, axis=1), rtol=1e-12)


@pytest.mark.parametrize("peephole", [False, True])
def test_coupled_lstm_against_per_gate_loops(peephole: bool, rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 4, 3))
    params = dict(units=2, coupled=True, peephole=peephole)
    w = recurrent_weights("lstm", 3, rng, **params)
    assert w["weight_ih"].shape == (6, 3)  # (f, g, o): no input-gate weights
    Wf, Wg, Wo = np.split(w["weight_ih"], 3)
    Uf, Ug, Uo = np.split(w["weight_hh"], 3)
    bf, bg, bo = np.split(w["bias_ih"] + w["bias_hh"], 3)
    pf, po = np.split(w["weight_peephole"], 2) if peephole else (0.0, 0.0)
    h = c = np.zeros((2, 2))
    for step in range(4):
        xt = x[:, step]
        f = sig(xt @ Wf.T + h @ Uf.T + bf + pf * c)
        c = f * c + (1 - f) * np.tanh(xt @ Wg.T + h @ Ug.T + bg)  # i = 1 − f (LAY-32)
        h = sig(xt @ Wo.T + h @ Uo.T + bo + po * c) * np.tanh(c)
    np.testing.assert_allclose(run("lstm", x, sequences=False, **params, **w), h, rtol=1e-12)


def test_coupled_lstm_is_onnx_input_forget(rng: np.random.Generator) -> None:
    """onnxruntime couples the other way (f = 1 − i): our f block, negated, goes in its i slot."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    params = dict(units=4, coupled=True, peephole=True)
    w = {k: v.astype(np.float32) for k, v in recurrent_weights("lstm", 3, rng, **params).items()}

    def onnx_gates(a: np.ndarray) -> np.ndarray:  # ours (f, g, o) -> ONNX (i, o, f, c)
        f, g, o = np.split(a, 3)
        return np.concatenate([-f, o, np.zeros_like(f), g])

    pf, po = np.split(w["weight_peephole"], 2)
    feeds = {"X": x.transpose(1, 0, 2), "W": onnx_gates(w["weight_ih"])[None],
             "R": onnx_gates(w["weight_hh"])[None],
             "B": np.concatenate([onnx_gates(w["bias_ih"]), onnx_gates(w["bias_hh"])])[None],
             "P": np.concatenate([-pf, po, np.zeros_like(pf)])[None]}  # (i, o, f)
    node = helper.make_node("LSTM", ["X", "W", "R", "B", "", "", "", "P"], ["Y"], hidden_size=4,
                            input_forget=1)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in feeds.items()],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, (5, 1, 2, 4))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = session.run(None, feeds)[0].transpose(2, 0, 1, 3).reshape(2, 5, 4)
    np.testing.assert_allclose(run("lstm", x, **params, **w), y, rtol=1e-4, atol=1e-5)


# ---- attention --------------------------------------------------------------------------------


def test_attention_against_torch(rng: np.random.Generator) -> None:
    q, k, v = (rng.standard_normal(s) for s in ((2, 3, 4), (2, 5, 4), (2, 5, 6)))
    want = F.scaled_dot_product_attention(t(q), t(k), t(v))
    np.testing.assert_allclose(run("attention", q, k, v), want.numpy(), rtol=1e-10)
    want = F.scaled_dot_product_attention(t(q), t(k), t(v), scale=1.0)
    np.testing.assert_allclose(run("attention", q, k, v, scale=False), want.numpy(), rtol=1e-10)
