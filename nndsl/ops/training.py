"""The other training kinds: gradient clipping, gradient noise, early stopping, data, trainers.

Calling conventions (the trainer supplies the leading positional arguments):

- `clip`: `fn(P, grads: list, *, params) -> list`, all of a model's gradients at once (a norm
  clip needs the global norm); applied after gradient noise, before the optimizer.
- `noise`: `fn(P, g, step, *, params) -> g`, once per gradient; `step` counts the updates
  already applied (0 for the first), as for schedules.
- `early_stop`: `fn(history, *, params) -> bool` (True = stop), pure Python; `history` holds the
  monitored value once per completed epoch, oldest first. The trainer picks the series named
  by the op's `monitor` parameter.
- `data`: `fn(base_dir, *, params) -> {name: ndarray}`. Relative paths are relative to
  `base_dir` (the spec file's folder). Errors are `NndslError`s; those about one place in a
  CSV file carry that file's span, the others none (the caller adds the data call's position).
- `trainer`: `fn(*, params) -> config`, a frozen dataclass the trainers run from.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np

from nndsl.errors import NndslError, Span, did_you_mean
from nndsl.ops.optimizers import require
from nndsl.ops.registry import Label, natives, op

Arrays = dict[str, np.ndarray]
F32 = np.float32

# --- gradient clipping -----------------------------------------------------------------------


@op("norm", "clip", native=natives("clip_norm", "torch"))
def clip_norm(P: Any, grads: list[Any], *, max: float) -> list[Any]:
    """g <- g min(1, max / (||G|| + 1e-6)), ||G|| the L2 norm of all gradients together.

    torch.nn.utils.clip_grad_norm_(max_norm=max) (the 1e-6 included).
    """
    require(max > 0, "max", max, "a positive number")
    if not grads:
        return []
    total = P.sqrt(_sum(P, [P.sum(P.mul(g, g)) for g in grads]))
    scale = P.minimum(P.div(max, P.add(total, 1e-6)), 1.0)
    return [P.mul(g, scale) for g in grads]


def _sum(P: Any, xs: list[Any]) -> Any:
    total = xs[0]
    for x in xs[1:]:
        total = P.add(total, x)
    return total


@op("value", "clip")
def clip_value(P: Any, grads: list[Any], *, max: float) -> list[Any]:
    """g <- min(max(g, -max), max) elementwise  (torch.nn.utils.clip_grad_value_)."""
    require(max > 0, "max", max, "a positive number")
    return [P.minimum(P.maximum(g, -max), max) for g in grads]


# --- gradient noise --------------------------------------------------------------------------


@op("annealed", "noise")
def annealed(P: Any, g: Any, step: int, *, eta: float = 0.3, gamma: float = 0.55) -> Any:
    """g + N(0, sigma_t^2), sigma_t^2 = eta / (1 + t)^gamma, t = step (seed 000, OPT-23).

    Defaults from Neelakantan et al. (2015); t = 0 at the first update.
    """
    require(eta >= 0, "eta", eta, "a number >= 0")
    require(gamma >= 0, "gamma", gamma, "a number >= 0")
    std = math.sqrt(eta / (1.0 + step) ** gamma)
    return P.add(g, P.mul(std, P.random_normal_like(g)))


# --- early stopping --------------------------------------------------------------------------


@op("patience", "early_stop")
def patience(history: list[float], *, epochs: int, monitor: str = "val_loss",
             min_delta: float = 0.0, mode: Literal["min", "max"] = "min") -> bool:
    """Stop once `epochs` epochs in a row fail to beat the best value by more than min_delta.

    mode = min: an improvement is value < best - min_delta; mode = max: value > best + min_delta
    (Keras EarlyStopping's rule). NaN never improves.
    """
    require(epochs >= 1, "epochs", epochs, "an integer >= 1")
    require(min_delta >= 0, "min_delta", min_delta, "a number >= 0")
    require(bool(monitor), "monitor", monitor, "the name of a logged value")
    sign = 1.0 if mode == "min" else -1.0
    best, waited = math.inf, 0
    for value in history:
        if sign * value < best - min_delta:
            best, waited = sign * value, 0
        else:
            waited += 1
    return waited >= epochs


# --- data: built-in data sets ----------------------------------------------------------------


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


# --- data: files -----------------------------------------------------------------------------


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise NndslError(f"data file '{file}' does not exist",
                         hint="relative paths are relative to the spec file's folder") from None
    except UnicodeDecodeError:
        raise NndslError(f"data file '{file}' is not UTF-8 text") from None
    except OSError as e:
        raise NndslError(f"cannot read data file '{file}': {e.strerror}") from None


def _cell_span(file: Path, line: int, raw: str, record: list[str], j: int, sep: str) -> Span:
    """The cell's position; its column is exact for unquoted lines, else the line start."""
    column = 1 if '"' in raw else 1 + sum(len(cell) + len(sep) for cell in record[:j])
    return Span(str(file), line, column, line, column + max(1, len(record[j])))


def _is_number(cell: str) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


@dataclass
class _CsvReader:
    """Turns CSV text into column names and rows of floats, reporting file:line:col errors."""

    file: Path
    header: bool
    sep: str

    def read(self, text: str) -> tuple[list[str], list[list[float]]]:
        lines = text.splitlines()
        reader = csv.reader(io.StringIO(text), delimiter=self.sep)
        names: list[str] | None = None
        rows: list[list[float]] = []
        for record in reader:
            if not any(cell.strip() for cell in record):
                continue
            if names is None:
                names = [c.strip() for c in record] if self.header else [""] * len(record)
                if self.header:
                    continue
            raw = lines[reader.line_num - 1] if reader.line_num <= len(lines) else ""
            rows.append(self._row(record, names, len(rows) + 1, reader.line_num, raw))
        if names is None or not rows:
            raise NndslError(f"data file '{self.file}' has no data rows")
        return names, rows

    def _row(self, record: list[str], names: list[str], row: int, line: int,
             raw: str) -> list[float]:
        if len(record) != len(names):
            first = "the header" if self.header else "the first row"
            raise NndslError(
                f"data row {row} has {len(record)} fields, {first} has {len(names)}",
                Span(str(self.file), line, 1, line, len(raw) + 1),
                expected=f"{len(names)} fields", received=f"{len(record)} fields",
                hint="every row needs the same number of fields")
        if all(_is_number(cell) for cell in record):
            return [float(cell) for cell in record]
        j = next(j for j, cell in enumerate(record) if not _is_number(cell))
        column = f"column {j + 1}" + (f" ('{names[j]}')" if names[j] else "")
        shown = f"'{record[j].strip()}'" if record[j].strip() else "an empty cell"
        raise NndslError(
            f"data row {row}, {column}: {shown} is not a number",
            _cell_span(self.file, line, raw, record, j, self.sep),
            expected="a finite number", received=shown,
            hint="encode classes as integers; nndsl does not fill in missing values")


Columns = str | int | tuple[str, ...] | tuple[int, ...] | None


def _column_index(key: str | int, names: list[str], header: bool) -> int:
    if isinstance(key, int):
        require(-len(names) <= key < len(names), "target", key,
                f"a column number in [{-len(names)}, {len(names) - 1}]")
        return key % len(names)
    if not header:
        raise NndslError(f"target '{key}' names a column, but the file has no header",
                         hint="give 0-based column numbers, or header = true")
    if key not in names:
        raise NndslError(f"the CSV header has no column '{key}'", expected=", ".join(names),
                         received=key, hint=did_you_mean(key, names))
    return names.index(key)


def _target_indices(target: Columns, names: list[str], header: bool) -> list[int]:
    keys: Iterable[str | int] = target if isinstance(target, tuple) else (target,)
    indices = [_column_index(key, names, header) for key in keys]
    require(len(set(indices)) == len(indices) > 0, "target", target, "distinct columns")
    require(len(indices) < len(names), "target", target, "to leave at least one input column")
    return indices


@op("csv", "data")
def csv_data(base_dir: Path, *, path: str, target: Columns = None, header: bool = True,
             delimiter: str = ",") -> Arrays:
    """x = the non-target columns, y = the target column(s), each f32 [rows, columns].

    target names header columns or gives 0-based column numbers (negative count from the end);
    without a target, x holds every column. Every cell must be a finite number; blank lines are
    skipped. y keeps two axes ([rows, 1] for one column): the trainer shapes it as declared.
    """
    require(len(delimiter) == 1, "delimiter", delimiter, "a single character")
    file = base_dir / path
    names, rows = _CsvReader(file, header, delimiter).read(_read_text(file))
    table = np.asarray(rows, dtype=F32)
    if target is None:
        return {"x": table}
    picked = _target_indices(target, names, header)
    rest = [j for j in range(len(names)) if j not in picked]
    return {"x": table[:, rest], "y": table[:, picked]}


# A parameter the front end fills from free-form keyword arguments, `npz(path, x="X")`: each
# NAME="value" the op's signature does not name becomes one (NAME, value) pair, in order.
Names = Annotated[tuple[tuple[str, str], ...], "names"]


def _open_npz(file: Path) -> Any:
    try:
        archive = np.load(file, allow_pickle=False)
    except FileNotFoundError:
        raise NndslError(f"data file '{file}' does not exist",
                         hint="relative paths are relative to the spec file's folder") from None
    except (OSError, ValueError) as e:
        raise NndslError(f"data file '{file}' is not a NumPy .npz archive ({e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise NndslError(f"data file '{file}' holds one array (.npy), not an .npz archive",
                         hint="save named arrays with numpy.savez('f.npz', X=..., y=...)")
    return archive


def _npz_array(archive: Any, file: Path, key: str) -> np.ndarray:
    if key not in archive.files:
        raise NndslError(f"'{file.name}' has no array '{key}'", expected=", ".join(archive.files),
                         received=key, hint=did_you_mean(key, archive.files))
    try:
        return np.asarray(archive[key])
    except ValueError:
        raise NndslError(f"array '{key}' in '{file.name}' holds Python objects",
                         hint="store numeric arrays") from None


@op("npz", "data")
def npz(base_dir: Path, *, path: str, arrays: Names = ()) -> Arrays:
    """data[NAME] = file[ARRAY] for each NAME="ARRAY" given; without any, every array as named.

    `npz("digits.npz", x="X", y="y")` feeds the array X to the model input or target x. Arrays
    keep their stored dtype; the trainer casts them to the declared types.
    """
    file = base_dir / path
    with _open_npz(file) as archive:
        pairs = arrays or tuple((key, key) for key in archive.files)
        return {name: _npz_array(archive, file, key) for name, key in pairs}


# --- trainers --------------------------------------------------------------------------------




@dataclass(frozen=True, slots=True)
class Backprop:
    """Forward, loss, backward, optimizer update: the default for every train block."""


@op("backprop", "trainer")
def backprop() -> Backprop:
    """Gradient descent on the loss with the train block's optimizer (the default trainer)."""
    return Backprop()


@dataclass(frozen=True, slots=True)
class Adversarial:
    """GAN training (PROC-20): per round, k discriminator updates, then one generator update."""

    generator: str
    discriminator: str
    k: int
    generator_loss: str
    prior: str

    def sample_prior(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """z ~ N(0, I) (prior = normal) or U(-1, 1) (prior = uniform), float32."""
        if self.prior == "normal":
            return rng.standard_normal(shape).astype(F32)
        return rng.uniform(-1.0, 1.0, shape).astype(F32)


@op("adversarial", "trainer")
def adversarial(*, generator: Label, discriminator: Label, k: int = 1,
                generator_loss: Literal["non_saturating", "saturating"] = "non_saturating",
                prior: Literal["normal", "uniform"] = "normal") -> Adversarial:
    """k discriminator steps on -log D(x) - log(1 - D(G(z))), then one generator step.

    The generator minimises -log D(G(z)) (non_saturating) or log(1 - D(G(z))) (saturating, the
    original minimax form); z is drawn from `prior` with the generator's input shape (CONV-26).
    """
    require(generator != discriminator, "discriminator", discriminator,
            "a different model from the generator")
    require(k >= 1, "k", k, "an integer >= 1")
    return Adversarial(generator, discriminator, k, generator_loss, prior)


@dataclass(frozen=True, slots=True)
class Hebbian:
    """One-shot Hebbian storage of patterns (Hopfield, PROC-25); no iterative training."""

    normalize: bool
    zero_diagonal: bool
    bias: str

    def store(self, patterns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(W, b) for patterns [M, N]: W = (1/M) sum x x^T (or the sum), b = 0 or mean(x)."""
        x = np.asarray(patterns, dtype=np.float64)
        weight = x.T @ x / (len(x) if self.normalize else 1)
        if self.zero_diagonal:
            np.fill_diagonal(weight, 0.0)
        bias = x.mean(axis=0) if self.bias == "mean_activity" else np.zeros(x.shape[1])
        return weight, bias


@op("hebbian", "trainer")
def hebbian(*, normalize: bool = True, zero_diagonal: bool = True,
            bias: Literal["zero", "mean_activity"] = "zero") -> Hebbian:
    """W = (1/M) sum_m x_m x_m^T with zero diagonal, b = 0 (seed 001's storage rule, CONV-16).

    normalize = false drops the 1/M; bias = mean_activity is the seed demo's mean pattern
    activity (CONV-15). The patterns are the training data's input rows.
    """
    return Hebbian(normalize, zero_diagonal, bias)


@dataclass(frozen=True, slots=True)
class ContrastiveDivergence:
    """RBM training by CD-k: k alternating Gibbs steps from the data for the negative phase."""

    k: int


@op("contrastive_divergence", "trainer")
def contrastive_divergence(*, k: int = 1) -> ContrastiveDivergence:
    """dW = <v h^T>_data - <v h^T>_k, the second after k Gibbs steps from the data (CD-k)."""
    require(k >= 1, "k", k, "an integer >= 1")
    return ContrastiveDivergence(k)


@dataclass(frozen=True, slots=True)
class Annealing:
    """Simulated annealing of the weights (OPT-19, OPT-20); t counts sweeps from 1."""

    t0: float
    cooling: str
    rho: float
    k: float

    def temperature(self, t: int) -> float:
        """T0 / log(1 + t) (boltzmann, PROC-04) or T0 / (1 + t) (cauchy, PROC-05), t >= 1."""
        return self.t0 / (math.log1p(t) if self.cooling == "boltzmann" else 1.0 + t)

    def step(self, rng: np.random.Generator, shape: tuple[int, ...], t: int) -> np.ndarray:
        """A random weight change: N(0, (rho T)^2 / 2) or rho T tan(U(-pi/2, pi/2)) (Cauchy)."""
        scale = self.rho * self.temperature(t)
        if self.cooling == "boltzmann":
            return scale / math.sqrt(2.0) * rng.standard_normal(shape)
        return scale * np.tan(rng.uniform(-np.pi / 2, np.pi / 2, shape))

    def accept(self, cost_change: float, t: int, u: float) -> bool:
        """Keep a change that lowers the cost; else keep it if u < exp(-change / (k T))."""
        if cost_change <= 0:
            return True
        return u < math.exp(-cost_change / (self.k * self.temperature(t)))


@op("anneal", "trainer")
def anneal(*, t0: float = 10.0, cooling: Literal["boltzmann", "cauchy"] = "cauchy",
           rho: float = 1.0, k: float = 1.0) -> Annealing:
    """Random weight changes kept with probability exp(-dc / (k T(t))) while T(t) cools.

    Boltzmann: Gaussian steps, T = t0 / log(1 + t); Cauchy: Cauchy steps scaled by rho (seed
    000's learning coefficient), T = t0 / (1 + t). k is the Boltzmann constant of the rule.
    """
    for name, value in (("t0", t0), ("rho", rho), ("k", k)):
        require(value > 0, name, value, "a positive number")
    return Annealing(t0, cooling, rho, k)


@dataclass(frozen=True, slots=True)
class Evolve:
    """A generational GA over flat weight vectors (CNE, PROC-27): one generation per epoch."""

    population: int
    sigma: float
    elite: int
    crossover: bool

    def next_generation(self, rng: np.random.Generator, genomes: np.ndarray,
                        fitness: np.ndarray) -> np.ndarray:
        """Keep the `elite` fittest (higher is better); breed the rest from them and mutate."""
        parents = genomes[np.argsort(-np.asarray(fitness), kind="stable")[: self.elite]]
        count = self.population - self.elite
        mothers = parents[rng.integers(0, self.elite, count)]
        children = mothers
        if self.crossover:
            fathers = parents[rng.integers(0, self.elite, count)]
            children = np.where(rng.random(mothers.shape) < 0.5, mothers, fathers)
        children = children + self.sigma * rng.standard_normal(children.shape)
        return np.concatenate([parents, children])


@op("evolve", "trainer")
def evolve(*, population: int = 64, sigma: float = 0.1, elite: int | None = None,
           crossover: bool = True) -> Evolve:
    """Each generation: keep the elite, refill with mutated children w + N(0, sigma^2).

    Fitness is minus the training loss; elite defaults to population // 4 (at least 1);
    crossover = true mixes two elite parents gene by gene before mutating. No gradients.
    """
    require(population >= 2, "population", population, "an integer >= 2")
    require(sigma > 0, "sigma", sigma, "a positive number")
    kept = elite if elite is not None else max(1, population // 4)
    require(1 <= kept < population, "elite", kept, f"an integer in [1, {population - 1}]")
    return Evolve(population, sigma, kept, crossover)
