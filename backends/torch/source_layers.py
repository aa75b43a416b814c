"""Hand-written torch forms of layers for `nndsl compile --emit torch`, keyed by op name.

A template writes a layer as the torch module or function that computes exactly the same thing
(`nn.Linear` for dense, `nn.LSTM` for a plain lstm, `torch.relu`, ...) and returns its forward
lines; it returns None where the layer's settings have no exact torch equivalent (a peephole
LSTM, asymmetric padding), and the layer is then written from its decomposition
(backends/torch/source_prims.py). Recurrent layers without a torch module get an explicit loop
over time whose body is written from the op's own step function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from nndsl.backends.torch.source_prims import Code, Tracer, make_source_prims, render

from nndsl.ir import Node, TensorType
from nndsl.ops import recurrent as rec
from nndsl.ops.conv import pads, sizes
from nndsl.ops.layers import dropout_keep


@dataclass
class Ctx:
    """What a template sees: the node, its inputs as code, and how to own a torch module."""

    node: Node
    inputs: list[Code]
    types: list[TensorType]
    out: str
    module: Callable[[str, dict[str, str]], str]  # (constructor, param -> attribute) -> self.x
    weights: Callable[[], dict[str, Code]]  # the node's weights as explicit tensors (Weights)
    fresh: Callable[[], str]

    def param(self, key: str) -> Any:
        return self.node.param(key)

    @property
    def x(self) -> str:
        return self.inputs[0].text


Template = Callable[[Ctx], list[str] | None]
LAYERS: dict[str, Template] = {}


def layer(*names: str) -> Callable[[Template], Template]:
    def register(fn: Template) -> Template:
        for name in names:
            LAYERS[name] = fn
        return fn

    return register


def _int_or_tuple(values: Sequence[int]) -> str:
    return str(values[0]) if len(set(values)) == 1 else render(tuple(values))


# ---- layers with a torch module ------------------------------------------------------------


@layer("dense")
def dense(c: Ctx) -> list[str] | None:
    if c.param("tied") is not None or c.param("shared_bias"):
        return None  # x @ W + b with another layer's W, or one bias [1]: written out
    bias = "" if c.param("use_bias") else ", bias=False"
    m = c.module(f"nn.Linear({c.types[0].shape[-1]}, {c.param('units')}{bias})",
                 {"weight": "weight", "bias": "bias"})
    return [f"{c.out} = {m}({c.x})"]


@layer("conv1d", "conv2d")
def conv(c: Ctx) -> list[str] | None:
    n = 1 if c.node.op == "conv1d" else 2
    k = sizes(c.node.op, "kernel", c.param("kernel"), n)
    d = sizes(c.node.op, "dilation", c.param("dilation"), n)
    s = sizes(c.node.op, "stride", c.param("stride"), n)
    pairs = pads(c.node.op, c.param("padding"), k, d)
    if any(lo != hi for lo, hi in pairs):
        return None  # torch pads both sides alike: written out with F.pad
    extra = [f"stride={_int_or_tuple(s)}" if set(s) != {1} else "",
             f"padding={_int_or_tuple([lo for lo, _ in pairs])}" if any(lo for lo, _ in pairs)
             else "",
             f"dilation={_int_or_tuple(d)}" if set(d) != {1} else "",
             "" if c.param("use_bias") else "bias=False"]
    args = ", ".join([str(c.types[0].shape[1]), str(c.param("channels")), _int_or_tuple(k),
                      *[e for e in extra if e]])
    m = c.module(f"nn.Conv{n}d({args})", {"weight": "weight", "bias": "bias"})
    return [f"{c.out} = {m}({c.x})"]


@layer("batchnorm")
def batchnorm(c: Ctx) -> list[str] | None:
    kind = {2: "1d", 3: "1d", 4: "2d", 5: "3d"}.get(c.types[0].rank)
    if kind is None:
        return None
    m = c.module(f"nn.BatchNorm{kind}({c.types[0].shape[1]}, eps={c.param('eps')!r}, "
                 f"momentum={c.param('momentum')!r})",
                 {"gamma": "weight", "beta": "bias", "running_mean": "running_mean",
                  "running_var": "running_var"})
    return [f"{c.out} = {m}({c.x})"]


@layer("embedding")
def embedding(c: Ctx) -> list[str] | None:
    m = c.module(f"nn.Embedding({c.param('vocab')}, {c.param('dim')})", {"weight": "weight"})
    return [f"{c.out} = {m}({c.x})"]


@layer("dropout")
def dropout(c: Ctx) -> list[str] | None:
    """nn.Dropout: the same inverted dropout in train(), the identity in eval()."""
    rate = 1.0 - dropout_keep(c.param("rate"), c.param("keep"))
    m = c.module(f"nn.Dropout({round(rate, 12)!r})", {})
    return [f"{c.out} = {m}({c.x})"]


# ---- recurrent layers ----------------------------------------------------------------------

TORCH_RNN = {"lstm": "nn.LSTM", "gru": "nn.GRU", "rnn": "nn.RNN"}
TORCH_NAMES = {"weight_ih": "weight_ih_l0", "weight_hh": "weight_hh_l0",
               "bias_ih": "bias_ih_l0", "bias_hh": "bias_hh_l0"}


def _torch_module_fits(node: Node) -> bool:
    """Whether torch's own module computes this layer (nndsl/ops/recurrent.py's mapping)."""
    if node.op == "lstm":
        return not node.param("peephole") and not node.param("coupled")
    if node.op == "gru":
        return bool(node.param("linear_before_reset"))
    return node.param("activation") in ("tanh", "relu")


@layer("lstm", "gru", "rnn")
def recurrent(c: Ctx) -> list[str] | None:
    if not _torch_module_fits(c.node) or c.param("initial_state") == "learned":
        return recurrent_loop(c)  # (a learned initial state: the loop starts from it)
    units, bidirectional = c.param("units"), bool(c.param("bidirectional"))
    extra = ", bidirectional=True" if bidirectional else ""
    if c.node.op == "rnn" and c.param("activation") != "tanh":
        extra += ", nonlinearity='relu'"
    names = {f"{ours}{s}": f"{theirs}{s}" for ours, theirs in TORCH_NAMES.items()
             for s in ("", "_reverse")[: 1 + bidirectional]}
    m = c.module(f"{TORCH_RNN[c.node.op]}({c.types[0].shape[-1]}, {units}, batch_first=True"
                 f"{extra})", names)
    if c.param("sequences"):
        return [f"{c.out}, _ = {m}({c.x})"]
    state = "_, (h_n, _)" if c.node.op == "lstm" else "_, h_n"
    last = "torch.cat((h_n[0], h_n[1]), dim=-1)" if bidirectional else "h_n[-1]"
    return [f"{state} = {m}({c.x})", f"{c.out} = {last}  # the last state of each direction"]


STEPS: dict[str, Callable[[Node], Any]] = {  # op -> its step function (nndsl/ops/recurrent.py)
    "lstm": lambda n: partial(rec._lstm_step, units=n.param("units"),
                              coupled=n.param("coupled")),
    "gru": lambda n: partial(rec._gru_step, units=n.param("units"),
                             linear_before_reset=n.param("linear_before_reset")),
    "rnn": lambda n: partial(rec._rnn_step, activation=n.param("activation")),
}


def recurrent_loop(c: Ctx) -> list[str]:
    """The layer as an explicit loop over time, its step written from the op's step function."""
    w, units, x = c.weights(), c.param("units"), c.inputs[0]
    batch = [np.shape(s)[0] for s in x.samples]
    lines, finals = [f"# {c.node.op}: no torch module has this form; the loop of "
                     "nndsl/ops/recurrent.py, written out"], []
    for d, suffix in enumerate(("", "_reverse")[: 1 + bool(c.param("bidirectional"))]):
        direction = rec.Direction(*(w.get(f"{k}{suffix}") for k in
                                    ("weight_ih", "weight_hh", "bias_ih", "bias_hh",
                                     "weight_peephole")))
        xw, h, cell, seq = (f"{c.out}_{s}{d}" for s in ("xw", "h", "c", "steps"))
        tracer = Tracer(c.fresh, x.text)
        P = make_source_prims(tracer)
        blocks = np.shape(direction.weight_ih.samples[0])[0]
        state = [np.zeros((b, units), np.float32) for b in batch]
        xt = Code(f"{xw}[:, step]", [np.zeros((b, blocks), np.float32) for b in batch])
        new_h, new_c = STEPS[c.node.op](c.node)(P, xt, Code(h, state), Code(cell, state),
                                                direction)
        steps = f"range({x.text}.shape[1])"
        zeros = f"{x.text}.new_zeros({x.text}.shape[0], {units})"
        start = {s: f" + {w[f'initial_{s}{suffix}'].text}" if f"initial_{s}{suffix}" in w
                 else "" for s in ("h", "c")}
        lines += [f"{xw} = {x.text} @ {direction.weight_ih.text}.T + {direction.bias_ih.text}",
                  f"{h} = {zeros}{start['h']}", f"{cell} = {zeros}{start['c']}",
                  f"{seq} = []",
                  f"for step in {f'reversed({steps})' if d else steps}:",
                  *[f"    {line}" for line in tracer.lines],
                  f"    {h}, {cell} = {render(new_h)}, {render(new_c)}",
                  f"    {seq}.{'insert(0, ' if d else 'append('}{h})"]
        finals.append(f"torch.stack({seq}, 1)" if c.param("sequences") else h)
    joined = finals[0] if len(finals) == 1 else f"torch.cat([{', '.join(finals)}], dim=-1)"
    return [*lines, f"{c.out} = {joined}"]


# ---- weightless layers and activations -----------------------------------------------------


def _call(template: str) -> Template:
    """`template` formatted with the input (`{x}`), the inputs (`{xs}`) and the parameters."""
    def write(c: Ctx) -> list[str]:
        values = {k: render(v) for k, v in c.node.params}
        xs = [i.text for i in c.inputs]
        return [f"{c.out} = " + template.format(x=xs[0] if xs else "", xs=xs, **values)]

    return write


def _join(symbol: str) -> Template:
    return lambda c: [f"{c.out} = " + f" {symbol} ".join(i.text for i in c.inputs)]


LAYERS.update({
    "relu": _call("torch.relu({x})"), "sigmoid": _call("torch.sigmoid({x})"),
    "tanh": _call("torch.tanh({x})"), "selu": _call("torch.selu({x})"),
    "silu": _call("F.silu({x})"),
    "softmax": _call("torch.softmax({x}, dim={axis})"),
    "log_softmax": _call("torch.log_softmax({x}, dim={axis})"),
    "leaky_relu": _call("F.leaky_relu({x}, {slope})"), "elu": _call("F.elu({x}, {alpha})"),
    "gelu": _call("F.gelu({x}, approximate={approximate})"),
    "hardtanh": _call("F.hardtanh({x}, {low}, {high})"),
    "flatten": _call("torch.flatten({x}, 1)"),
    "add": _join("+"), "mul": _join("*"),
    "sub": _call("{xs[0]} - {xs[1]}"), "div": _call("{xs[0]} / {xs[1]}"),
    "neg": _call("-{x}"), "scalar": _call("{value}"),
})
