"""Data sets shipped with nndsl or generated on the spot (never downloaded): `builtin(name)`.

Each set is a generator `make(rng, n) -> {name: array}` registered with `@dataset(name)`; its
docstring is the line the docs show. Adding a set is adding one decorated function here.
Data ops take `fn(base_dir, *, params) -> {name: ndarray}`.
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
Make = Callable[[np.random.Generator, int | None], Arrays]


@dataclass(frozen=True, slots=True)
class _Builtin:
    make: Make
    doc: str
    noise: float = 0.0  # default std of the Gaussian noise added to "x"
    length: int | None = None  # a sequence set's default number of steps; `length=` changes it


BUILTINS: dict[str, _Builtin] = {}


def dataset(name: str, noise: float = 0.0, doc: str | None = None,
            length: int | None = None) -> Callable[[Make], Make]:
    """Register a built-in data set; a second registration of a name is an error. A set with a
    `length` makes sequences of that many steps: make(rng, n, length)."""

    def register(make: Make) -> Make:
        if name in BUILTINS:
            raise ValueError(f"built-in data set {name!r} is defined twice")
        BUILTINS[name] = _Builtin(make, " ".join((doc or make.__doc__ or "").split()), noise,
                                  length)
        return make

    return register


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
dataset("xor", doc="x f32 [4, 2] (00, 01, 10, 11), y f32 [4, 1] = x1 XOR x2.")(
    _table(_XOR_X, [[0], [1], [1], [0]]))
dataset("and", doc="x f32 [4, 2] (00, 01, 10, 11), y f32 [4, 1] = x1 AND x2.")(
    _table(_XOR_X, [[0], [0], [0], [1]]))
dataset("or", doc="x f32 [4, 2] (00, 01, 10, 11), y f32 [4, 1] = x1 OR x2.")(
    _table(_XOR_X, [[0], [1], [1], [1]]))


@dataset("mazur")
def _mazur(rng: np.random.Generator, n: int | None) -> Arrays:
    """x f64 [1, 2] = (0.05, 0.10), y f64 [1, 2] = (0.01, 0.99): the one example of Mazur's
    step-by-step backpropagation (float64, so an f64 model reproduces it digit for digit)."""
    rows = np.zeros(1 if n is None else n, dtype=np.int64)
    return {"x": np.array([[0.05, 0.10]])[rows], "y": np.array([[0.01, 0.99]])[rows]}


_PATTERNS8 = np.eye(8, dtype=int).tolist()
# The lecture notes' own patterns are not reproduced; these five are nndsl's.
_BINARY_WORLD = [
    [1, 1, 1, 1, 0, 0, 0, 0],
    [0, 0, 0, 0, 1, 1, 1, 1],
    [1, 0, 1, 0, 1, 0, 1, 0],
    [0, 1, 1, 0, 0, 1, 1, 0],
    [1, 1, 0, 0, 0, 0, 1, 1],
]
_SINE_STEPS, _SINE_DT = 20, 0.3
dataset("patterns8", doc="x = y = the 8 one-hot 8-bit patterns (the 8-3-8 autoencoder).")(
    _table(_PATTERNS8, _PATTERNS8))
dataset("binary_world", doc="x = y = 5 distinct 8-bit patterns of nndsl's choosing (the "
        "lecture's own are lost).")(_table(_BINARY_WORLD, _BINARY_WORLD))


@dataset("hopfield16")
def _hopfield16(rng: np.random.Generator, n: int | None) -> Arrays:
    """x = y = four mutually orthogonal ±1 patterns of 16 bits (Hadamard rows 1-4)."""
    h = np.array([[1]])
    while len(h) < 16:
        h = np.block([[h, h], [h, -h]])
    return _table(h[1:5].tolist(), h[1:5].tolist())(rng, n)


@dataset("spirals")
def _spirals(rng: np.random.Generator, n: int | None) -> Arrays:
    """two interleaved spirals, n = 200 points, x f32 [n, 2], y f32 [n, 1] in {0, 1}."""
    n = n if n is not None else 200
    i = np.arange(n)
    label = i % 2
    radius = (i // 2 + 1) / ((n + 1) // 2)
    theta = 3.5 * np.pi * radius + np.pi * label  # 1.75 turns, the arms half a turn apart
    x = np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1)
    return {"x": x.astype(F32), "y": label[:, None].astype(F32)}


@dataset("sine")
def _sine(rng: np.random.Generator, n: int | None) -> Arrays:
    """n = 64 windows of sin(phase + 0.3 k), x f32 [n, 20, 1], y f32 [n, 1] the next value."""
    n = n if n is not None else 64
    phase = rng.uniform(0.0, 2 * np.pi, size=(n, 1))
    wave = np.sin(phase + _SINE_DT * np.arange(_SINE_STEPS + 1))
    return {"x": wave[:, :-1, None].astype(F32), "y": wave[:, -1:].astype(F32)}


@dataset("discrete_mapping", noise=0.1)
def _discrete_mapping(rng: np.random.Generator, n: int | None) -> Arrays:
    """n = 300 samples of 3 random prototypes in R^6 (the lecture's example), noise 0.1."""
    prototypes = 3.0 * (rng.random((3, 6)) - 0.5)  # the course's 3 (rand - 0.5)
    labels = rng.integers(0, 3, n if n is not None else 300)
    return _classes(prototypes[labels], labels, 3)


@dataset("digits")
def _digits(rng: np.random.Generator, n: int | None) -> Arrays:
    """the UCI 8x8 digits (shipped), x f32 [1797, 1, 8, 8] in [0, 1]; n keeps the first n."""
    with resources.as_file(resources.files("nndsl.data") / "digits.npz") as path:
        with np.load(path, allow_pickle=False) as archive:
            x, y = archive["X"], archive["y"]
    require(n is None or n <= len(x), "n", n, f"at most {len(x)} for digits")
    return _classes(x[:n], y[:n], 10)


_MAJORITY_VOCAB, _MAJORITY_STEPS = 4, 12


@dataset("majority")
def _majority(rng: np.random.Generator, n: int | None) -> Arrays:
    """n = 600 sequences of 12 tokens from {0, 1, 2, 3}, x i64 [n, 12]; the class y is the
    token that occurs most often (rows with a tie are never drawn)."""
    n = n if n is not None else 600
    rows: list[np.ndarray] = []
    while sum(len(r) for r in rows) < n:
        x = rng.integers(0, _MAJORITY_VOCAB, size=(2 * n, _MAJORITY_STEPS))
        counts = np.stack([(x == t).sum(axis=1) for t in range(_MAJORITY_VOCAB)], axis=1)
        top = np.sort(counts, axis=1)
        rows.append(x[top[:, -1] > top[:, -2]])  # a unique majority
    x = np.concatenate(rows)[:n]
    labels = np.argmax(np.stack([(x == t).sum(axis=1) for t in range(_MAJORITY_VOCAB)], 1), 1)
    return {"x": x.astype(np.int64), "y": labels.astype(np.int64),
            "onehot": np.eye(_MAJORITY_VOCAB, dtype=F32)[labels]}


@dataset("bars_stripes")
def _bars_stripes(rng: np.random.Generator, n: int | None) -> Arrays:
    """the 30 distinct 4x4 bars-and-stripes images, x f32 [30, 16] in {0, 1} (row-major): each
    set of rows on (16 stripes), then each set of columns but none or all (14 bars); n draws n
    of them uniformly."""
    masks = (np.arange(16)[:, None] >> np.arange(4)) & 1  # [16, 4]: every on/off choice
    stripes = np.repeat(masks, 4, axis=1)  # row r of the image is on when masks[:, r] is
    bars = np.tile(masks[1:-1], 4)  # column c is on when masks[:, c] is
    x = np.concatenate([stripes, bars]).astype(F32)
    return {"x": x if n is None else x[rng.integers(0, len(x), n)]}


_RING_MODES, _RING_RADIUS = 8, 2.0


@dataset("ring8", noise=0.05)
def _ring8(rng: np.random.Generator, n: int | None) -> Arrays:
    """n = 2000 points of a mixture of 8 Gaussians (std = noise, 0.05) centred on a circle of
    radius 2 at angles 2πk/8, x f32 [n, 2]; the mode k as c i64 [n] and c_onehot f32 [n, 8]
    (a GAN's test of mode coverage, and its condition)."""
    mode = rng.integers(0, _RING_MODES, n if n is not None else 2000)
    angle = 2 * np.pi * mode / _RING_MODES
    x = _RING_RADIUS * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return {"x": x.astype(F32), "c": mode.astype(np.int64),
            "c_onehot": np.eye(_RING_MODES, dtype=F32)[mode]}


@dataset("long_sine", length=1000)
def _long_sine(rng: np.random.Generator, n: int | None, length: int) -> Arrays:
    """n = 32 sine waves of `length` steps (default 1,000), sin(phase + w t) with the phase
    uniform and the frequency w uniform in [0.1, 0.4] per wave, x f32 [n, length, 1]; y f32
    [n, length, 1] is the next value at every step (a long-sequence task for truncated BPTT)."""
    n = n if n is not None else 32
    phase = rng.uniform(0.0, 2 * np.pi, size=(n, 1))
    w = rng.uniform(0.1, 0.4, size=(n, 1))
    wave = np.sin(phase + w * np.arange(length + 1))[:, :, None].astype(F32)
    return {"x": wave[:, :-1], "y": wave[:, 1:]}


_ECHO_SYMBOLS, _ECHO_STEPS = 4, 10


@dataset("echo")
def _echo(rng: np.random.Generator, n: int | None) -> Arrays:
    """n = 400 sequences of 10 one-hot symbols from 4, x f32 [n, 10, 4]; y i64 [n, 10] labels
    each step with the previous step's symbol mod 3 (class 0 at the first step): a task that
    needs one step of memory."""
    n = n if n is not None else 400
    symbols = rng.integers(0, _ECHO_SYMBOLS, size=(n, _ECHO_STEPS))
    previous = np.concatenate([np.zeros((n, 1), np.int64), symbols[:, :-1] % 3], axis=1)
    return {"x": np.eye(_ECHO_SYMBOLS, dtype=F32)[symbols], "y": previous.astype(np.int64)}


@dataset("sequence_compare")
def _sequence_compare(rng: np.random.Generator, n: int | None) -> Arrays:
    """n = 400 sequences of 12 steps of 3 features N(0, 1), x f32 [n, 12, 3]; y i64 [n] is 1
    when feature 0's mean over time exceeds feature 2's, else 0."""
    n = n if n is not None else 400
    x = rng.standard_normal((n, 12, 3)).astype(F32)
    return {"x": x, "y": (x[:, :, 0].mean(axis=1) > x[:, :, 2].mean(axis=1)).astype(np.int64)}


_PATCH = 4  # digit_patches: 4x4 patches


@dataset("digit_patches")
def _digit_patches(rng: np.random.Generator, n: int | None) -> Arrays:
    """n = 4000 patches of 4x4 pixels cut at random places from the shipped digits, each minus
    its mean and the whole set scaled to a mean squared norm of 1, x f32 [n, 16]; patches that
    are nearly flat (std < 0.1 of the image range) are not drawn (natural-ish image data for
    sparse coding)."""
    n = n if n is not None else 4000
    images = _digits(rng, None)["x"][:, 0]
    out: list[np.ndarray] = []
    while sum(len(p) for p in out) < n:
        which = rng.integers(0, len(images), 2 * n)
        r, c = (rng.integers(0, 8 - _PATCH + 1, 2 * n) for _ in range(2))
        rows = r[:, None, None] + np.arange(_PATCH)[None, :, None]
        cols = c[:, None, None] + np.arange(_PATCH)[None, None, :]
        patches = images[which[:, None, None], rows, cols].reshape(2 * n, -1)
        out.append(patches[patches.std(axis=1) >= 0.1])
    x = np.concatenate(out)[:n]
    x = x - x.mean(axis=1, keepdims=True)
    return {"x": (x / np.sqrt((x**2).sum(axis=1).mean())).astype(F32)}


_LOOKUP_ROWS, _LOOKUP_WIDTH, _LOOKUP_SHIFTS = 8, 12, 3


@dataset("key_lookup")
def _key_lookup(rng: np.random.Generator, n: int | None) -> Arrays:
    """n = 2000 memories of 8 rows x 12 N(0, 1), memory f32 [n, 8, 12]; a query f32 [n, 12]
    that is one row seen through a fixed random linear map, plus noise 0.05; previous f32
    [n, 8], a one-hot focus on a random row; a flag f32 [n, 1]; shift f32 [n, 3], a one-hot
    shift of -1, 0 or +1. The class y i64 [n] is the row to read: the queried row (flag 0) or
    the previous focus (flag 1), plus the shift, modulo 8 (an NTM head's addressing task)."""
    n = n if n is not None else 2000
    mix = np.random.default_rng(8128).standard_normal((_LOOKUP_WIDTH,) * 2)  # fixed: learnt
    memory = rng.standard_normal((n, _LOOKUP_ROWS, _LOOKUP_WIDTH))
    row, previous = (rng.integers(0, _LOOKUP_ROWS, n) for _ in range(2))
    query = memory[np.arange(n), row] @ mix.T / np.sqrt(_LOOKUP_WIDTH)
    query += 0.05 * rng.standard_normal(query.shape)
    flag = rng.integers(0, 2, n)
    shift = rng.integers(0, _LOOKUP_SHIFTS, n)  # 0, 1, 2 for -1, 0, +1
    y = (np.where(flag == 1, previous, row) + shift - 1) % _LOOKUP_ROWS
    return {"memory": memory.astype(F32), "query": query.astype(F32),
            "previous": np.eye(_LOOKUP_ROWS, dtype=F32)[previous],
            "flag": flag[:, None].astype(F32),
            "shift": np.eye(_LOOKUP_SHIFTS, dtype=F32)[shift], "y": y.astype(np.int64)}


BuiltinName = Literal[tuple(BUILTINS)]  # type: ignore[valid-type]  # every set above


@op("builtin", "data")
def builtin(base_dir: Path, *, name: BuiltinName, n: int | None = None,
            noise: float | None = None, seed: int = 0, bipolar: bool = False,
            length: int | None = None) -> Arrays:
    """A shipped or generated data set {x, y, ...}; x += noise N(0, 1); same arguments, same arrays.

    Class data sets give y i64 [n] labels and onehot f32 [n, classes]. For the fixed tables
    (xor, and, or, patterns8, binary_world) n draws n rows uniformly. Targets never get the
    noise. `bipolar = true` maps a set of 0/1 values to -1/+1 (2v - 1), the encoding of sign
    units and Hopfield nets. `length` sets the steps of a sequence set that takes it (long_sine).
    The sets are listed below (from their registrations).
    """
    spec = BUILTINS.get(name)
    if spec is None:
        raise NndslError(f"unknown built-in data set '{name}'", hint=did_you_mean(name, BUILTINS))
    require(n is None or n >= 1, "n", n, "an integer >= 1")
    std = noise if noise is not None else spec.noise
    require(std >= 0, "noise", std, "a number >= 0")
    sized = sorted(k for k, b in BUILTINS.items() if b.length is not None)
    require(length is None or spec.length is not None, "length", length,
            f"left out: {name} has no length (sets with one: {', '.join(sized)})")
    require(length is None or length >= 1, "length", length, "an integer >= 1")
    rng = np.random.default_rng(seed)
    data = spec.make(rng, n) if spec.length is None else \
        spec.make(rng, n, length or spec.length)  # type: ignore[call-arg]
    if bipolar:
        binary = all(np.isin(a, (0, 1)).all() for a in data.values() if a.dtype.kind == "f")
        require(binary, "bipolar", bipolar, f"false: {name} is not a set of 0/1 values")
        data = {k: (2 * v - 1).astype(v.dtype) if v.dtype.kind == "f" else v
                for k, v in data.items()}
    if std > 0:
        require(data["x"].dtype.kind == "f", "noise", std, f"0: {name} holds integer tokens")
        data["x"] = (data["x"] + std * rng.standard_normal(data["x"].shape)).astype(F32)
    return data


builtin.__doc__ = (builtin.__doc__ or "") + "".join(
    f"\n    - {name}: {spec.doc}" for name, spec in BUILTINS.items())
