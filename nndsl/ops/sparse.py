"""Sparse coding: codes inferred per example by an iterative solver, not by an encoder.

The lecture notes' objective (Olshausen & Field 1996) is bilevel: a dictionary D whose atoms
(unit-norm columns) explain each example x by a sparse code z,

    min_D  mean over examples of  min_z ½‖x − D z‖² + λ‖z‖₁.

`sparse_code` solves the inner problem for every example by ISTA (iterative shrinkage-
thresholding; Daubechies, Defrise & De Mol 2004): from z = 0,

    z ← soft(z + η Dᵀ(x − D z), λη),   soft(u, t) = sign(u) max(|u| − t, 0),

`steps` times, with the step η = 1/L for L = ‖D‖₂², the largest eigenvalue of DᵀD, estimated by
30 power iterations from below (within about 1% when its gap to the next eigenvalue is small;
ISTA converges for any η < 2/L), or η as given. Codes are exactly 0 where the
shrinkage stops them. The layer owns the dictionary as `weight` [atoms, features], one atom per
row (Dᵀ in the formula, dense's [out, in] layout), so the reconstruction is z W: in a spec,
`code -> dense(features, tied=LABEL, use_bias=false)`, and `constraint=unit_norm(axis=1)` keeps
the atoms at norm 1.

The outer problem is solved by backpropagation through the unrolled solver: the train block's
loss is the objective itself, `sse(recon, x) + λ l1_activity(code)`, and its gradient reaches
the dictionary both through the reconstruction and through the steps of ISTA (a truncated
solver, as in LISTA, Gregor & LeCun 2010); with enough steps the second part vanishes at the
inner optimum and the update is the classic dictionary gradient (x − D z) zᵀ. An autoencoder
whose encoder is one dense layer with an `l1_activity` penalty on its code is the one-pass
approximation of this: the encoder guesses the codes instead of solving for them.
"""

from __future__ import annotations

from typing import Any

from nndsl.errors import NndslError
from nndsl.ir import TensorType, format_shape
from nndsl.ops.registry import Weight, WeightSpec
from nndsl.ops.shapes import known_dim, layer_op, positive

MAX_STEPS = 1000  # every step is unrolled
POWER_STEPS = 30  # power iterations for the largest eigenvalue of DᵀD


def _code_type(x: TensorType, *, atoms: int, lam: float, steps: int, eta: float | None,
               **_: Any) -> TensorType:
    if x.rank != 2:
        raise NndslError(f"sparse_code expects examples [batch, features], got "
                         f"{format_shape(x.shape)}", expected="[batch, features]",
                         received=str(x), hint="flatten the input first")
    known_dim("sparse_code", x, 1, "features")
    positive("sparse_code", atoms=atoms, steps=steps, eta=eta)
    if lam < 0:
        raise NndslError(f"sparse_code `lam` must be >= 0, got {lam}", expected="lam >= 0",
                         received=f"lam={lam}")
    if steps > MAX_STEPS:
        raise NndslError(f"sparse_code steps={steps} is more than {MAX_STEPS}",
                         expected=f"steps <= {MAX_STEPS}", received=f"steps={steps}",
                         hint="every step is unrolled; ISTA converges in tens to hundreds")
    return x.with_shape((x.shape[0], atoms))


def _code_weights(x: TensorType, *, atoms: int, **params: Any) -> dict[str, WeightSpec]:
    _code_type(x, atoms=atoms, **params)
    n = known_dim("sparse_code", x, 1, "features")
    return {"weight": WeightSpec((atoms, n), fan_in=n, fan_out=atoms)}


def lipschitz(P: Any, weight: Any) -> Any:
    """L = the largest eigenvalue of W Wᵀ (of DᵀD), by power iteration on Wᵀ W from ones."""
    u = P.ones_like(P.slice(weight, 0, 0, 1))  # [1, features]
    for _ in range(POWER_STEPS):
        u = P.matmul(P.matmul(u, P.transpose(weight)), weight)  # u Wᵀ W
        u = P.div(u, P.sqrt(P.maximum(P.sum(P.mul(u, u)), 1e-30)))
    z = P.matmul(u, P.transpose(weight))  # ‖u Wᵀ‖² = uᵀ WᵀW u for a unit u
    return P.maximum(P.sum(P.mul(z, z)), 1e-12)


def shrink(P: Any, u: Any, t: Any) -> Any:
    """soft(u, t) = sign(u) max(|u| − t, 0), as u − clip(u, −t, t) (slope 1 outside, 0 in).
    A number t stays a number (P.neg of a number would be a float64 constant in ONNX)."""
    low = -t if isinstance(t, int | float) else P.neg(t)
    return P.sub(u, P.minimum(P.maximum(u, low), t))


@layer_op("sparse_code", infer=_code_type, weights=_code_weights,
          sample_params={"atoms": 5, "steps": 8, "lam": 0.05})
def sparse_code(P: Any, x: Any, *, atoms: int, lam: float = 0.1, steps: int = 50,
                eta: float | None = None, weight: Weight) -> Any:
    """ISTA codes z of x for the dictionary W (atoms as rows): ½‖x − zW‖² + lam ‖z‖₁."""
    step = P.div(1.0, lipschitz(P, weight)) if eta is None else eta
    threshold = step * lam if eta is not None else P.mul(step, lam)
    xw = P.matmul(x, P.transpose(weight))  # x Wᵀ, the same every step
    gram = P.matmul(weight, P.transpose(weight))  # W Wᵀ [atoms, atoms]
    z = shrink(P, P.mul(step, xw), threshold)  # the first step from z = 0
    for _ in range(steps - 1):
        z = shrink(P, P.add(z, P.mul(step, P.sub(xw, P.matmul(z, gram)))), threshold)
    return z
