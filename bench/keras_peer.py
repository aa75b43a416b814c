"""Keras 3 on its torch backend, the way a Keras user trains: a `keras.Sequential` of built-in
layers, `model.compile` (jit_compile=False: the torch backend runs eagerly) and `model.fit` on
arrays already in memory, `verbose=0`.

Each network starts from nndsl's initial weights, copied from the hand-written torch twin
(bench/models.py) into Keras's layouts. The spec's train block becomes: Adam with the spec's lr,
betas and eps; `l2(s)` as an L2(s/2) kernel regulariser (its gradient s*w is torch's coupled
weight_decay=s, on weights, not biases); `step(every, gamma)` as a staircase ExponentialDecay of
`every` epochs' steps; `norm(max)` as `global_clipnorm` (clip_grad_norm_ over all weights);
`validation_data` for a spec that holds rows out (one batch per epoch).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn

from bench.models import Workload
from nndsl.ops.metrics import metric_column

Layers = Callable[[Any, Any], list[Any]]


def keras_module() -> Any:
    """keras on the torch backend (the variable must be set before keras is first imported)."""
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "torch"
    import keras

    if keras.backend.backend() != "torch":
        raise RuntimeError(f"keras was imported with the {keras.backend.backend()} backend")
    return keras


def _mlp(k: Any, reg: Any) -> list[Any]:
    return [k.layers.Flatten(), k.layers.Dense(128, "relu", kernel_regularizer=reg),
            k.layers.Dropout(0.2), k.layers.Dense(64, "relu", kernel_regularizer=reg),
            k.layers.Dense(10, kernel_regularizer=reg)]


def _cnn(k: Any, reg: Any) -> list[Any]:
    def conv_pool(channels: int) -> list[Any]:
        return [k.layers.Conv2D(channels, 3, padding="same", activation="relu",
                                data_format="channels_first", kernel_regularizer=reg),
                k.layers.MaxPooling2D(2, data_format="channels_first")]

    return [*conv_pool(16), *conv_pool(32), k.layers.Flatten(),
            k.layers.Dense(64, "relu", kernel_regularizer=reg),
            k.layers.Dense(10, kernel_regularizer=reg)]


def _lstm(k: Any, reg: Any) -> list[Any]:
    return [k.layers.LSTM(16, kernel_regularizer=reg, recurrent_regularizer=reg),
            k.layers.Dense(1, kernel_regularizer=reg)]


LAYERS: dict[str, Layers] = {"digits_mlp": _mlp, "digits_cnn": _cnn, "sine_lstm": _lstm}


def _keras_weights(m: nn.Module) -> list[np.ndarray]:
    """One torch layer's parameters in Keras's layout (LSTM: both biases summed into one;
    torch and Keras order the gates alike: input, forget, cell, output)."""
    p = {name: t.detach().cpu().numpy() for name, t in m.named_parameters()}
    if isinstance(m, nn.Linear):
        return [p["weight"].T, p["bias"]]
    if isinstance(m, nn.Conv2d):
        return [p["weight"].transpose(2, 3, 1, 0), p["bias"]]
    if isinstance(m, nn.LSTM):
        return [p["weight_ih_l0"].T, p["weight_hh_l0"].T, p["bias_ih_l0"] + p["bias_hh_l0"]]
    raise TypeError(f"no Keras layout for {type(m).__name__}")


def build(w: Workload, device: str) -> Any:
    """The spec's network as a compiled keras.Sequential holding nndsl's initial weights."""
    k = keras_module()
    reg = w.setting("regularize")
    l2 = k.regularizers.L2(float(reg.get("strength")) / 2) if reg is not None else None
    x = w.data.train[w.graph.inputs[0][0]]
    with k.device(device):
        model = k.Sequential([k.Input(x.shape[1:]), *LAYERS[w.name](k, l2)])
        torch_layers = [m for m in w.module().modules()
                        if isinstance(m, nn.Linear | nn.Conv2d | nn.LSTM)]
        for layer, twin in zip([lay for lay in model.layers if lay.weights], torch_layers,
                               strict=True):
            layer.set_weights(_keras_weights(twin))
        model.compile(optimizer=_optimizer(k, w), loss=_loss(k, w), metrics=_metrics(k, w),
                      jit_compile=False)
    return model


def _optimizer(k: Any, w: Workload) -> Any:
    opt, sched, clip = w.setting("optimizer"), w.setting("schedule"), w.setting("clip")
    lr: Any = float(opt.get("lr"))
    if sched is not None:
        per_epoch = -(-w.data.rows // int(w.setting("batch")))
        lr = k.optimizers.schedules.ExponentialDecay(
            lr, int(sched.get("every")) * per_epoch, float(sched.get("gamma")), staircase=True)
    return k.optimizers.Adam(lr, beta_1=float(opt.get("beta1")), beta_2=float(opt.get("beta2")),
                             epsilon=float(opt.get("eps")),
                             global_clipnorm=float(clip.get("max")) if clip else None)


def _loss(k: Any, w: Workload) -> Any:
    if w.recipe.classifier:
        return k.losses.SparseCategoricalCrossentropy(from_logits=True)
    return k.losses.MeanSquaredError()


def _metrics(k: Any, w: Workload) -> list[Any]:
    known = {"accuracy": k.metrics.SparseCategoricalAccuracy}
    wanted = tuple(metric_column(m) for m in w.setting("metrics") or ())
    unknown = [m for m in wanted if m not in known]
    if unknown:
        raise ValueError(f"the Keras peer knows accuracy only, not {', '.join(unknown)}")
    return [known[m](name=m) for m in wanted]


def _arrays(w: Workload, part: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    x, y = part[w.graph.inputs[0][0]], part[w.train.targets[0][0]]
    return x, y.astype(np.int64) if w.recipe.classifier else y


def fit(w: Workload, epochs: int, device: str) -> list[float]:
    """A fresh model trained by `model.fit`; returns the epoch losses."""
    model = build(w, device)
    x, y = _arrays(w, w.data.train)
    val = _arrays(w, w.data.val) if w.data.val else None
    with keras_module().device(device):
        history = model.fit(x, y, batch_size=int(w.setting("batch")), epochs=epochs,
                            shuffle=bool(w.setting("shuffle")), validation_data=val,
                            validation_batch_size=len(val[0]) if val else None, verbose=0)
    return [float(v) for v in history.history["loss"]]
