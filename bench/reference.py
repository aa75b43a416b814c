"""Case 3, the NumPy reference: nndsl's pure-NumPy interpreter against torch on the CPU, on one
training batch. Forward is inference mode (NumPy interpreter vs the hand-written module under
no_grad); forward+backward is a training step's loss and every weight's gradient as the NumPy
trainer computes them (reverse mode over the primitive trace; the classifier's softmax output,
which the loss does not read, left out as in a step) vs torch autograd on the logits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from nndsl.backends.numpy.autodiff import loss_and_grad
from nndsl.backends.numpy.prims import make_numpy_prims

from bench.models import Workload
from bench.report import Row, ratio_at_most, row
from bench.timing import Settings
from nndsl.interpreter import run

WORKLOADS = ("digits_mlp", "digits_cnn")
GOALS = {"forward": 3.0, "forward+backward": 1.5}  # the interpreter's, and a training step's


def rows(workloads: list[Workload], settings: Settings) -> list[Row]:
    out: list[Row] = []
    calls = 1 if settings.quick else 20
    for w in workloads:
        batch = 2 if settings.quick else int(w.setting("batch"))
        for what, pair in _contenders(w, batch).items():
            t = settings.per_call(pair, calls)
            goal = GOALS[what]
            out.append(row("3 numpy reference", f"{w.name} {what} batch {batch}",
                           "nndsl NumPy", t["numpy"], "torch CPU", t["torch"],
                           f"<= {goal:g}x", ratio_at_most(goal)))
    return out


def _contenders(w: Workload, batch: int) -> dict[str, dict[str, Callable[[], Any]]]:
    """forward and forward+backward, each as {"numpy": ..., "torch": ...}, on `batch` rows."""
    feeds = {name: array[:batch] for name, array in w.data.train.items()}
    x_name = w.graph.inputs[0][0]
    module = w.module()
    x = torch.as_tensor(feeds[x_name])
    y = torch.as_tensor(feeds[w.train.targets[0][0]])
    y = y.long() if w.recipe.classifier else y
    loss = F.cross_entropy if w.recipe.classifier else F.mse_loss
    params = list(module.parameters())

    def torch_forward() -> Any:
        module.eval()
        with torch.no_grad():
            return module(x)

    def torch_step() -> Any:
        module.train()
        return torch.autograd.grad(loss(module(x), y), params)

    return {
        "forward": {"numpy": lambda: run(w.graph, make_numpy_prims(), {x_name: feeds[x_name]},
                                         w.weights), "torch": torch_forward},
        "forward+backward": {"numpy": lambda: loss_and_grad(w.graph, w.train, feeds, w.weights,
                                                            outputs=False),
                             "torch": torch_step},
    }
