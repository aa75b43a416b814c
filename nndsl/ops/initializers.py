"""Initializers (kind `initializer`): `fn(rng, shape, fan_in, fan_out, *, ...)`.

They run once, in NumPy, with the spec's seeded generator `rng` (and nothing else), and return
float64 arrays; every backend then starts from the same numbers. Fans come from the layer's
`WeightSpec` (dense [out, in]: fan_in = in, fan_out = out). Where an initializer needs "units",
the weight is seen as a matrix [shape[0], rest]: one row per output unit, its incoming weights
along the row (torch's convention). Normal initializers are plain (not truncated) normals, as
in torch's `kaiming_normal_` / `xavier_normal_`.
"""

from __future__ import annotations

import math

import numpy as np

from nndsl.errors import NndslError
from nndsl.ops import weight_files  # noqa: F401  (registers from_npz)
from nndsl.ops.registry import op

Shape = tuple[int, ...]


def _matrix(shape: Shape) -> tuple[int, int]:
    """[rows, cols] of the weight seen as one row per output unit."""
    rows = shape[0] if shape else 1
    return rows, math.prod(shape[1:])


def _normal(rng: np.random.Generator, shape: Shape, std: float) -> np.ndarray:
    return rng.normal(0.0, std, shape)


def _uniform(rng: np.random.Generator, shape: Shape, bound: float) -> np.ndarray:
    return rng.uniform(-bound, bound, shape)


def _positive(name: str, **values: float) -> None:
    for key, value in values.items():
        if value < 0:
            raise NndslError(f"{name} needs {key} >= 0, got {key}={value}")


@op("zeros", "initializer")
def zeros(rng: np.random.Generator, shape: Shape, fan_in: int, fan_out: int) -> np.ndarray:
    """0 everywhere: fine for biases, a symmetry trap for weights (every unit learns the same)."""
    return np.zeros(shape)


@op("ones", "initializer")
def ones(rng: np.random.Generator, shape: Shape, fan_in: int, fan_out: int) -> np.ndarray:
    """1 everywhere."""
    return np.ones(shape)


@op("const", "initializer")
def const(rng: np.random.Generator, shape: Shape, fan_in: int, fan_out: int, *,
          value: float) -> np.ndarray:
    """value everywhere, e.g. bias_init=const(0.01) so ReLU units start active (CS231n's advice)."""
    return np.full(shape, float(value))


@op("normal", "initializer")
def normal(rng: np.random.Generator, shape: Shape, fan_in: int, fan_out: int, *,
           mean: float = 0.0, std: float = 1.0) -> np.ndarray:
    """N(mean, std^2); normal(0, 1) is (mean, std), e.g. normal(std=0.001) for small weights."""
    _positive("normal", std=std)
    return rng.normal(mean, std, shape)


@op("uniform", "initializer")
def uniform(rng: np.random.Generator, shape: Shape, fan_in: int, fan_out: int, *,
            low: float = -0.05, high: float = 0.05) -> np.ndarray:
    """U[low, high)."""
    if high < low:
        raise NndslError(f"uniform needs low <= high, got low={low}, high={high}")
    return rng.uniform(low, high, shape)


@op("he_normal", "initializer")
def he_normal(rng: np.random.Generator, shape: Shape, fan_in: int, fan_out: int) -> np.ndarray:
    """N(0, 2 / fan_in): std = sqrt(2 / fan_in), for ReLU (He et al., 2015; kaiming_normal_)."""
    return _normal(rng, shape, math.sqrt(2.0 / max(fan_in, 1)))


@op("he_uniform", "initializer")
def he_uniform(rng: np.random.Generator, shape: Shape, fan_in: int, fan_out: int) -> np.ndarray:
    """U[-b, b], b = sqrt(6 / fan_in): variance 2 / fan_in, as he_normal."""
    return _uniform(rng, shape, math.sqrt(6.0 / max(fan_in, 1)))


@op("glorot_normal", "initializer")
def glorot_normal(rng: np.random.Generator, shape: Shape, fan_in: int,
                  fan_out: int) -> np.ndarray:
    """N(0, 2 / (fan_in + fan_out)): Glorot and Bengio (2010), torch's xavier_normal_."""
    return _normal(rng, shape, math.sqrt(2.0 / max(fan_in + fan_out, 1)))


@op("glorot_normal_half", "initializer")
def glorot_normal_half(rng: np.random.Generator, shape: Shape, fan_in: int,
                       fan_out: int) -> np.ndarray:
    """N(0, 1 / (fan_in + fan_out)): a Xavier variant some course notes give, half the variance.

    Kept under its own name so `glorot_normal` means what torch means.
    """
    return _normal(rng, shape, math.sqrt(1.0 / max(fan_in + fan_out, 1)))


@op("glorot_uniform", "initializer")
def glorot_uniform(rng: np.random.Generator, shape: Shape, fan_in: int,
                   fan_out: int) -> np.ndarray:
    """U[-b, b], b = sqrt(6 / (fan_in + fan_out)): Glorot and Bengio, torch xavier_uniform_."""
    return _uniform(rng, shape, math.sqrt(6.0 / max(fan_in + fan_out, 1)))


@op("lecun_normal", "initializer")
def lecun_normal(rng: np.random.Generator, shape: Shape, fan_in: int,
                 fan_out: int) -> np.ndarray:
    """N(0, 1 / fan_in): LeCun's initialization, the one SELU networks assume."""
    return _normal(rng, shape, math.sqrt(1.0 / max(fan_in, 1)))


@op("lecun_uniform", "initializer")
def lecun_uniform(rng: np.random.Generator, shape: Shape, fan_in: int,
                  fan_out: int) -> np.ndarray:
    """U[-b, b], b = sqrt(3 / fan_in): variance 1 / fan_in, as lecun_normal."""
    return _uniform(rng, shape, math.sqrt(3.0 / max(fan_in, 1)))


@op("torch_default", "initializer")
def torch_default(rng: np.random.Generator, shape: Shape, fan_in: int,
                  fan_out: int) -> np.ndarray:
    """U[-1/sqrt(fan_in), 1/sqrt(fan_in)], torch's nn.Linear / nn.Conv default."""
    return _uniform(rng, shape, 1.0 / math.sqrt(max(fan_in, 1)))


@op("orthogonal", "initializer")
def orthogonal(rng: np.random.Generator, shape: Shape, fan_in: int, fan_out: int, *,
               gain: float = 1.0) -> np.ndarray:
    """gain * Q, Q from the QR of a Gaussian [rows, rest]: orthonormal rows or columns.

    Saxe et al. (2014). Q's columns are sign-corrected by diag(R), so Q is Haar-distributed
    (torch orthogonal_).
    """
    rows, cols = _matrix(shape)
    q, r = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
    return gain * (q if rows >= cols else q.T).reshape(shape)


@op("sparse", "initializer")
def sparse(rng: np.random.Generator, shape: Shape, fan_in: int, fan_out: int, *,
           connections: int = 10, std: float = 1.0) -> np.ndarray:
    """Each unit (row) gets exactly `connections` N(0, std^2) incoming weights, the rest 0.

    Martens' (2010) sparse initialization: a count, not torch sparse_'s fraction; a unit with
    fewer inputs than `connections` is fully connected.
    """
    _positive("sparse", std=std, connections=connections)
    rows, cols = _matrix(shape)
    chosen = np.argsort(rng.random((rows, cols)), axis=1)[:, :min(connections, cols)]
    w = np.zeros((rows, cols))
    np.put_along_axis(w, chosen, rng.normal(0.0, std, chosen.shape), axis=1)
    return w.reshape(shape)


@op("identity", "initializer")
def identity(rng: np.random.Generator, shape: Shape, fan_in: int, fan_out: int, *,
        gain: float = 1.0) -> np.ndarray:
    """gain * I for a 2-D weight (ones on the main diagonal of a rectangular one)."""
    if len(shape) != 2:
        raise NndslError(f"identity initializes 2-D weights, got a {len(shape)}-D weight",
                         hint="use it for dense or recurrent matrices")
    return gain * np.eye(*shape)
