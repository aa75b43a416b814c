"""Data sets shipped with nndsl or generated on the spot (never downloaded): `builtin(name)`.

Each set is a registered generator `make(rng, n) -> {name: array}`; its docstring is the line
the docs show. Data ops take `fn(base_dir, *, params) -> {name: ndarray}`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np

from nndsl.errors import NndslError, did_you_mean
from nndsl.ops.optimizers import require
from nndsl.ops.registry import op

Arrays = dict[str, np.ndarray]
F32 = np.float32

def _classes(x: np.ndarray, labels: np.ndarray, depth: int) -> Arrays:
    labels = labels.astype(np.int64)
    return {"x": x.astype(F32), "y": labels, "onehot": np.eye(depth, dtype=F32)[labels]}


def _table(x: list[list[int]], y: list[list[int]]) -> Callable[..., Arrays]:
    """A fixed table; n rows are drawn from it uniformly (seeded) when n is given."""
    def make(rng: np.random.Generator, n: int | None) -> Arrays:
        xs, ys = np.asarray(x, dtype=F32), np.asarray(y, dtype=F32)
        rows = np.arange(len(xs)) if n is None else rng.integers(0, len(xs), n)
        return {"x": xs[rows], "y": ys[rows]}

    return make


_XOR_X = [[0, 0], [0, 1], [1, 0], [1, 1]]
_PATTERNS8 = np.eye(8, dtype=int).tolist()
# PROC-44's own patterns sit in a table this catalog copy lacks; these five are nndsl's.
_BINARY_WORLD = [
    [1, 1, 1, 1, 0, 0, 0, 0],
    [0, 0, 0, 0, 1, 1, 1, 1],
    [1, 0, 1, 0, 1, 0, 1, 0],
    [0, 1, 1, 0, 0, 1, 1, 0],
    [1, 1, 0, 0, 0, 0, 1, 1],
]
_SINE_STEPS, _SINE_DT = 20, 0.3


def _hopfield16(rng: np.random.Generator, n: int | None) -> Arrays:
    """PROC-45's toy: four mutually orthogonal ±1 patterns of 16 bits (Hadamard rows 1-4)."""
    h = np.array([[1]])
    while len(h) < 16:
        h = np.block([[h, h], [h, -h]])
    return _table(h[1:5].tolist(), h[1:5].tolist())(rng, n)


def _spirals(rng: np.random.Generator, n: int | None) -> Arrays:
    n = n if n is not None else 200
    i = np.arange(n)
    label = i % 2
    radius = (i // 2 + 1) / ((n + 1) // 2)
    theta = 3.5 * np.pi * radius + np.pi * label  # 1.75 turns, the arms half a turn apart
    x = np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1)
    return {"x": x.astype(F32), "y": label[:, None].astype(F32)}


def _sine(rng: np.random.Generator, n: int | None) -> Arrays:
    n = n if n is not None else 64
    phase = rng.uniform(0.0, 2 * np.pi, size=(n, 1))
    wave = np.sin(phase + _SINE_DT * np.arange(_SINE_STEPS + 1))
    return {"x": wave[:, :-1, None].astype(F32), "y": wave[:, -1:].astype(F32)}


def _discrete_mapping(rng: np.random.Generator, n: int | None) -> Arrays:
    prototypes = 3.0 * (rng.random((3, 6)) - 0.5)  # seed 001's intended 3 (rand - 0.5)
    labels = rng.integers(0, 3, n if n is not None else 300)
    return _classes(prototypes[labels], labels, 3)


def _digits(rng: np.random.Generator, n: int | None) -> Arrays:
    with resources.as_file(resources.files("nndsl.data") / "digits.npz") as path:
        with np.load(path, allow_pickle=False) as archive:
            x, y = archive["X"], archive["y"]
    require(n is None or n <= len(x), "n", n, f"at most {len(x)} for digits")
    return _classes(x[:n], y[:n], 10)


@dataclass(frozen=True, slots=True)
class _Builtin:
    make: Callable[[np.random.Generator, int | None], Arrays]
    noise: float = 0.0  # default std of the Gaussian noise added to "x"


BUILTINS: dict[str, _Builtin] = {
    "xor": _Builtin(_table(_XOR_X, [[0], [1], [1], [0]])),
    "patterns8": _Builtin(_table(_PATTERNS8, _PATTERNS8)),
    "binary_world": _Builtin(_table(_BINARY_WORLD, _BINARY_WORLD)),
    "spirals": _Builtin(_spirals),
    "sine": _Builtin(_sine),
    "discrete_mapping": _Builtin(_discrete_mapping, noise=0.1),
    "digits": _Builtin(_digits),
    "hopfield16": _Builtin(_hopfield16),
}
BuiltinName = Literal[
    "xor", "patterns8", "binary_world", "spirals", "sine", "discrete_mapping", "digits",
    "hopfield16",
]


@op("builtin", "data")
def builtin(base_dir: Path, *, name: BuiltinName, n: int | None = None,
            noise: float | None = None, seed: int = 0) -> Arrays:
    """A shipped or generated data set {x, y, ...}; x += noise N(0, 1); same arguments, same arrays.

    - xor: x f32 [4, 2] (00, 01, 10, 11), y f32 [4, 1] = x1 XOR x2.
    - patterns8: x = y = the 8 one-hot 8-bit patterns (the 8-3-8 autoencoder).
    - binary_world: x = y = 5 distinct 8-bit patterns of nndsl's choosing (PROC-44's are lost).
    - spirals: two interleaved spirals, n = 200 points, x f32 [n, 2], y f32 [n, 1] in {0, 1}.
    - sine: n = 64 windows of sin(phase + 0.3 k), x f32 [n, 20, 1], y f32 [n, 1] the next value.
    - discrete_mapping (PROC-43): n = 300 samples of 3 random prototypes in R^6, noise 0.1.
    - digits: the UCI 8x8 digits (shipped), x f32 [1797, 1, 8, 8] in [0, 1]; n keeps the first n.
    - hopfield16: x = y = four mutually orthogonal ±1 patterns of 16 bits (PROC-45).
    Class data sets give y i64 [n] labels and onehot f32 [n, classes]. For the fixed tables
    (xor, patterns8, binary_world) n draws n rows uniformly. Targets never get the noise.
    """
    spec = BUILTINS.get(name)
    if spec is None:
        raise NndslError(f"unknown built-in data set '{name}'", hint=did_you_mean(name, BUILTINS))
    require(n is None or n >= 1, "n", n, "an integer >= 1")
    std = noise if noise is not None else spec.noise
    require(std >= 0, "noise", std, "a number >= 0")
    rng = np.random.default_rng(seed)
    data = spec.make(rng, n)
    if std > 0:
        data["x"] = (data["x"] + std * rng.standard_normal(data["x"].shape)).astype(F32)
    return data
