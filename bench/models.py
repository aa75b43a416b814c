"""The benchmark's workloads: three shipped specs, each with the same network written by hand as
an idiomatic torch `nn.Module`, started from nndsl's own initial weights so that both sides
do exactly the same arithmetic."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nndsl.data.dataset import Dataset, load_dataset
from nndsl.initialize import initialize
from nndsl.ir import Graph, Program, TrainSpec
from nndsl.program import load
from nndsl.training.run import pick_train
from nndsl.training.stages import DEFAULTS

SPECS = Path(__file__).resolve().parent.parent / "specs"


def digits_mlp() -> nn.Module:
    """specs/digits_mlp.nn; returns logits (the spec's softmax is folded into the loss)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


def digits_cnn() -> nn.Module:
    """specs/digits_cnn.nn (conv_pool = 3x3 'same' conv, relu, 2x2 max pool); logits."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


class SineLSTM(nn.Module):
    """specs/sine_lstm.nn: the last hidden state of an LSTM, then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(1, 16, batch_first=True)
        self.head = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(x)
        return self.head(h[-1])


class WithSoftmax(nn.Module):
    """A classifier's inference form: the spec's `softmax` output, as nndsl exports it."""

    def __init__(self, logits: nn.Module) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=-1)


def _dense_names(*pairs: tuple[str, str]) -> dict[str, str]:
    return {f"{ours}.{p}": f"{theirs}.{p}" for ours, theirs in pairs for p in ("weight", "bias")}


@dataclass(frozen=True)
class Recipe:
    """A spec and its hand-written twin: `names` maps nndsl weights to state_dict keys."""

    spec: str
    build: Callable[[], nn.Module]
    names: dict[str, str]
    classifier: bool  # softmax output trained by cross-entropy on class ids (else mse)


RECIPES = {
    "digits_mlp": Recipe("digits_mlp.nn", digits_mlp, _dense_names(
        ("dense_1", "1"), ("dense_2", "4"), ("dense_3", "6")), True),
    "digits_cnn": Recipe("digits_cnn.nn", digits_cnn, _dense_names(
        ("conv_pool_1/conv2d_1", "0"), ("conv_pool_2/conv2d_1", "3"), ("dense_1", "7"),
        ("dense_2", "9")), True),
    "sine_lstm": Recipe("sine_lstm.nn", SineLSTM, {
        **{f"lstm_1.{p}": f"lstm.{p}_l0" for p in ("weight_ih", "weight_hh", "bias_ih",
                                                   "bias_hh")},
        **_dense_names(("dense_1", "head"))}, False),
}


@dataclass
class Workload:
    """One spec loaded once: its program, model graph, train block, data and initial weights."""

    name: str
    recipe: Recipe
    spec_file: str
    program: Program
    graph: Graph
    train: TrainSpec
    data: Dataset
    weights: dict[str, np.ndarray]

    def module(self, device: str = "cpu") -> nn.Module:
        """The hand-written network holding nndsl's initial weights (logits for classifiers)."""
        net = self.recipe.build()
        state = {theirs: torch.as_tensor(self.weights[ours])
                 for ours, theirs in self.recipe.names.items()}
        net.load_state_dict(state, strict=True)
        return net.to(device)

    def inference_module(self, device: str = "cpu") -> nn.Module:
        """What the spec outputs (class probabilities for classifiers), in eval mode."""
        net = self.module(device)
        return (WithSoftmax(net) if self.recipe.classifier else net).eval()

    def inputs(self, rows: int) -> np.ndarray:
        """`rows` input examples (training rows repeated when there are fewer)."""
        x = self.data.train[self.graph.inputs[0][0]]
        return np.resize(x, (rows, *x.shape[1:])).astype(x.dtype)

    def setting(self, key: str) -> Any:
        """A train-block setting, with the trainer's defaults (batch 32, shuffle, ...)."""
        return self.train.get(key, DEFAULTS.get(key))


def load_workload(name: str, rows: int | None = None) -> Workload:
    """The spec's program, data and initial weights; `rows` keeps only that many training (and
    half as many validation) rows, for the smoke test."""
    recipe = RECIPES[name]
    spec_file = str(SPECS / recipe.spec)
    program, _ = load(spec_file)
    train = pick_train(program, None)
    graph = program.model(train.model)
    wanted = {**dict(graph.inputs), **dict(train.targets)}
    data = load_dataset(wanted, [graph], train, Path(spec_file).parent)
    if rows is not None:
        data = Dataset({k: v[:rows] for k, v in data.train.items()},
                       {k: v[:rows // 2] for k, v in data.val.items()})
    return Workload(name, recipe, spec_file, program, graph, train, data,
                    initialize(graph, train.get("seed", 0)))
