"""The hand-written PyTorch script the large-data case runs as a process, against `nndsl train`
on the same spec (bench/largedata.py writes both). It does what the command does, as a user
would write it: load the .npz, hold out a seeded share of the rows, train the MLP with Adam in
shuffled batches (tensors indexed by a permutation), after every epoch compute the loss and
accuracy on the training and held-out rows, then save the weights and export ONNX with
`torch.onnx.export(dynamo=False)`.

    python bench/handwritten_script.py DATA.npz OUT_DIR --epochs 2 --batch 128 --lr 1e-3 \\
        --split 0.1 --hidden 128,64 --classes 10

It imports nothing from nndsl or bench, so its process pays only for torch and NumPy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def network(features: int, hidden: list[int], classes: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(features, width), nn.ReLU()]
        features = width
    return nn.Sequential(*layers, nn.Linear(features, classes))


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Loss and accuracy on a whole split, in one pass."""
    model.eval()
    with torch.no_grad():
        logits = model(x)
        return F.cross_entropy(logits, y).item(), (logits.argmax(-1) == y).float().mean().item()


def train(args: argparse.Namespace) -> list[dict[str, float]]:
    torch.manual_seed(args.seed)
    with np.load(args.data) as arrays:
        x, y = torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"]).long()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(args.seed))
    held = int(round(len(x) * args.split))
    xv, yv, xt, yt = x[order[:held]], y[order[:held]], x[order[held:]], y[order[held:]]
    model = network(x.shape[1], [int(h) for h in args.hidden.split(",")], args.classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    history = []
    for _ in range(args.epochs):
        model.train()
        total, steps = 0.0, 0
        for index in torch.randperm(len(xt)).split(args.batch):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xt[index]), yt[index])
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        train_loss, train_acc = evaluate(model, xt, yt)
        val_loss, val_acc = evaluate(model, xv, yv)
        history.append({"loss": total / steps, "accuracy": train_acc, "val_loss": val_loss,
                        "val_accuracy": val_acc})
    export(model, x.shape[1], Path(args.out))
    return history


def export(model: nn.Module, features: int, out: Path) -> None:
    """The weights and an ONNX model that outputs class probabilities, as nndsl exports."""
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "weights.pt")
    probs = nn.Sequential(model, nn.Softmax(dim=-1)).eval()
    torch.onnx.export(probs, (torch.zeros(1, features),), str(out / "model.onnx"),
                      input_names=["x"], output_names=["probs"],
                      dynamic_axes={"x": {0: "batch"}, "probs": {0: "batch"}}, dynamo=False)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("data")
    p.add_argument("out")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--split", type=float, default=0.1)
    p.add_argument("--hidden", default="128,64")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


if __name__ == "__main__":
    history = train(parse_args(sys.argv[1:]))
    print(json.dumps(history[-1]))
