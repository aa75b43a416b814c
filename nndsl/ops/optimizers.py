"""Optimizers: pure update rules `fn(P, w, g, state, rate, t, *, hyper) -> (new_w, new_state)`.

The trainer calls each rule positionally, once per trainable weight per update:

- `w`, `g`: the weight and its gradient (after penalties, gradient noise and clipping);
- `state`: this weight's slots from the previous call, `{}` on the first call. A rule fills it
  (zeros, ones, ...) and returns a new dict; it never mutates the one it is given;
- `rate`: the learning rate of this update: the schedule applied to the optimizer's `lr`
  (`rate = schedule(lr, step, epoch)`, or `rate = lr` without a schedule);
- `t`: the 1-based update count (Adam's bias correction needs t >= 1).

Every optimizer has an `lr` hyper-parameter: the configured base rate a user writes
(`sgd(lr=0.5)`), which the trainer hands to the schedule. The rules use `rate` only, so one
schedule scales every rule alike. Rules stated without a learning rate (Adadelta,
Rprop) take `lr=1` and multiply their step by `rate`, as torch's Adadelta does.

The math uses only `P.*`, so NumPy and torch share it. Bad hyper-parameters raise `NndslError`
without a span (the caller adds the position of the optimizer call), through `require`
(nndsl/errors.py), which the schedules, trainers and data sources use too.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

from nndsl.errors import require
from nndsl.ops.registry import op

State = dict[str, Any]
Update = tuple[Any, State]


def _positive(**values: float) -> None:
    for name, value in values.items():
        require(value > 0, name, value, "a positive number")


def _fraction(**values: float) -> None:
    for name, value in values.items():
        require(0 <= value < 1, name, value, "a number in [0, 1)")


def _slot(P: Any, state: State, key: str, like: Any, fill: float = 0.0) -> Any:
    """`state[key]`, or a fresh array shaped like `like` holding `fill` (first call)."""
    if key in state:
        return state[key]
    zeros = P.zeros_like(like)
    return zeros if fill == 0.0 else P.add(zeros, fill)


def _ema(P: Any, avg: Any, x: Any, decay: float) -> Any:
    """decay * avg + (1 - decay) * x."""
    return P.add(P.mul(decay, avg), P.mul(1.0 - decay, x))


def _root(P: Any, x: Any, eps: float, eps_inside: bool) -> Any:
    """sqrt(x) + eps (torch, the papers), or sqrt(x + eps) (the lecture notes' placement)."""
    return P.sqrt(P.add(x, eps)) if eps_inside else P.add(P.sqrt(x), eps)


def _sign_agreement(P: Any, g: Any, prev: Any, same: Any, flipped: Any, other: Any) -> Any:
    """`same` where g * prev > 0, `flipped` where g * prev < 0, `other` where it is 0."""
    prod = P.mul(g, prev)
    return P.where(P.gt(prod, 0.0), same, P.where(P.lt(prod, 0.0), flipped, other))


def _clamp(P: Any, x: Any, low: float, high: float) -> Any:
    return P.minimum(P.maximum(x, low), high)


Form = Literal["torch", "classic", "ema"]


@op("sgd", "optimizer")
def sgd(P: Any, w: Any, g: Any, state: State, rate: float, t: int, *, lr: float,
        momentum: float = 0.0, nesterov: bool = False, form: Form = "torch") -> Update:
    """w <- w - rate v, v <- momentum v + g  (torch form; `form` picks the classic or EMA one).

    momentum = 0 is plain gradient descent, w <- w - rate g, whatever the form. Otherwise
    (mu = momentum, v_0 = 0):
    - torch (torch.optim.SGD, the form the course notes call commonly used): v <- mu v + g
      (so v_1 = g); w <- w - rate v; nesterov: w <- w - rate (g + mu v).
    - classic (the lecture notes'): v <- mu v - rate g; w <- w + v; nesterov:
      w <- w + mu v - rate g (the look-ahead gradient re-parameterised). Same path as torch's
      while the rate is constant.
    - ema (the course notes' moving-average form): v <- mu v + (1 - mu) g (so v_1 = (1 - mu) g);
      w <- w - rate v. Nesterov is not defined for it (torch also refuses nesterov with dampening).
    """
    _check_sgd(lr, momentum, nesterov, form)
    if momentum == 0.0:
        return P.sub(w, P.mul(rate, g)), {}
    v = _slot(P, state, "velocity", w)
    if form == "classic":
        v = P.sub(P.mul(momentum, v), P.mul(rate, g))
        step = P.sub(P.mul(momentum, v), P.mul(rate, g)) if nesterov else v
        return P.add(w, step), {"velocity": v}
    v = _ema(P, v, g, momentum) if form == "ema" else P.add(P.mul(momentum, v), g)
    direction = P.add(g, P.mul(momentum, v)) if nesterov else v
    return P.sub(w, P.mul(rate, direction)), {"velocity": v}


def _check_sgd(lr: float, momentum: float, nesterov: bool, form: str) -> None:
    _positive(lr=lr)
    _fraction(momentum=momentum)
    if nesterov:
        require(momentum > 0, "momentum", momentum, "positive when nesterov=true")
        require(form != "ema", "form", form, "torch or classic when nesterov=true")


@op("nesterov", "optimizer")
def nesterov(P: Any, w: Any, g: Any, state: State, rate: float, t: int, *, lr: float,
             momentum: float = 0.9, form: Literal["torch", "classic"] = "torch") -> Update:
    """sgd(lr, momentum, nesterov=true): w <- w - rate (g + momentum v), v <- momentum v + g."""
    return sgd(P, w, g, state, rate, t, lr=lr, momentum=momentum, nesterov=True, form=form)


@op("adagrad", "optimizer")
def adagrad(P: Any, w: Any, g: Any, state: State, rate: float, t: int, *, lr: float,
            eps: float = 1e-10, eps_inside: bool = False) -> Update:
    """G <- G + g^2; w <- w - rate g / (sqrt(G) + eps)  (eps_inside: sqrt(G + eps)).

    Defaults and eps placement are torch.optim.Adagrad's (lr_decay = 0, G_0 = 0); eps_inside is
    how the lecture notes write it.
    """
    _positive(lr=lr)
    require(eps >= 0, "eps", eps, "a number >= 0")
    total = P.add(_slot(P, state, "sum", w), P.mul(g, g))
    return P.sub(w, P.mul(rate, P.div(g, _root(P, total, eps, eps_inside)))), {"sum": total}


@op("adadelta", "optimizer")
def adadelta(P: Any, w: Any, g: Any, state: State, rate: float, t: int, *, decay: float = 0.9,
             eps: float = 1e-6, lr: float = 1.0) -> Update:
    """d = sqrt(E[d^2] + eps) / sqrt(E[g^2] + eps) g; w <- w - rate d; E[.] decays by `decay`.

    E[g^2] <- decay E[g^2] + (1 - decay) g^2 first; the numerator uses E[d^2] of the previous
    step (Zeiler's paper; some notes misprint it), then E[d^2] <- decay E[d^2] + (1 - decay) d^2.
    torch.optim.Adadelta with rho = decay; Zeiler's rule has no rate, which is lr = 1.
    """
    _positive(lr=lr, eps=eps)
    _fraction(decay=decay)
    sq = _ema(P, _slot(P, state, "sq", w), P.mul(g, g), decay)
    acc = _slot(P, state, "acc", w)
    delta = P.mul(P.div(P.sqrt(P.add(acc, eps)), P.sqrt(P.add(sq, eps))), g)
    acc = _ema(P, acc, P.mul(delta, delta), decay)
    return P.sub(w, P.mul(rate, delta)), {"sq": sq, "acc": acc}


@op("rmsprop", "optimizer")
def rmsprop(P: Any, w: Any, g: Any, state: State, rate: float, t: int, *, lr: float = 1e-3,
            decay: float = 0.9, eps: float = 1e-8, momentum: float = 0.0,
            eps_inside: bool = False) -> Update:
    """E[g^2] <- decay E[g^2] + (1 - decay) g^2; w <- w - rate g / (sqrt(E[g^2]) + eps).

    torch.optim.RMSprop with alpha = decay (torch defaults to 0.99 and lr 0.01; Hinton's 0.9
    and 1e-3, as the lecture notes give them, are the defaults here). momentum > 0:
    b <- momentum b + g / (sqrt(E[g^2]) + eps), w <- w - rate b (torch's RMSprop momentum: the
    lecture notes' "combine with momentum").
    """
    _positive(lr=lr)
    _fraction(decay=decay, momentum=momentum)
    require(eps >= 0, "eps", eps, "a number >= 0")
    sq = _ema(P, _slot(P, state, "sq", w), P.mul(g, g), decay)
    step = P.div(g, _root(P, sq, eps, eps_inside))
    if momentum == 0.0:
        return P.sub(w, P.mul(rate, step)), {"sq": sq}
    buf = P.add(P.mul(momentum, _slot(P, state, "buf", w)), step)
    return P.sub(w, P.mul(rate, buf)), {"sq": sq, "buf": buf}


@op("adam", "optimizer")
def adam(P: Any, w: Any, g: Any, state: State, rate: float, t: int, *, lr: float = 1e-3,
         beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
         eps_inside: bool = False) -> Update:
    """w <- w - rate m^ / (sqrt(v^) + eps); m^ = m / (1 - beta1^t), v^ = v / (1 - beta2^t).

    m <- beta1 m + (1 - beta1) g and v <- beta2 v + (1 - beta2) g^2, from m_0 = v_0 = 0 (the
    paper and torch.optim.Adam). eps_inside = true puts eps under the root, sqrt(v^ + eps), as
    the lecture notes write it.
    """
    check_adam(lr, beta1, beta2, eps)
    m = _ema(P, _slot(P, state, "m", w), g, beta1)
    v = _ema(P, _slot(P, state, "v", w), P.mul(g, g), beta2)
    m_hat, v_hat = P.div(m, 1.0 - beta1**t), P.div(v, 1.0 - beta2**t)
    return P.sub(w, P.mul(rate, P.div(m_hat, _root(P, v_hat, eps, eps_inside)))), {"m": m, "v": v}


@functools.cache  # once per setting, not once per weight and step
def check_adam(lr: float, beta1: float, beta2: float, eps: float) -> None:
    """adam's hyper-parameter rules (shared with its torch native)."""
    _positive(lr=lr)
    _fraction(beta1=beta1, beta2=beta2)
    require(eps >= 0, "eps", eps, "a number >= 0")


@op("rprop", "optimizer")
def rprop(P: Any, w: Any, g: Any, state: State, rate: float, t: int, *, step: float = 0.01,
          eta_plus: float = 1.2, eta_minus: float = 0.5, step_min: float = 1e-6,
          step_max: float = 50.0, variant: Literal["irprop", "plain"] = "irprop",
          lr: float = 1.0) -> Update:
    """w <- w - rate sign(g) d; d <- d eta_plus if g g_prev > 0, d eta_minus if < 0, clamped.

    Per-weight step sizes d start at `step` and stay in [step_min, step_max]; a zero product
    (the first update) keeps d.
    - irprop (iRprop-, torch.optim.Rprop): where the sign flipped, the weight does not move and
      the stored gradient becomes 0, so the next update keeps its step size.
    - plain (the lecture notes' rule, Rprop without backtracking): the weight moves by
      sign(g) d even after a flip, and the stored gradient is g.
    torch's `lr` is `step` here; `lr` (default 1) multiplies the step so a schedule can scale it.
    """
    _check_rprop(step, eta_plus, eta_minus, step_min, step_max, lr)
    prev = _slot(P, state, "prev", w)
    d = _slot(P, state, "step", w, fill=step)
    d = _sign_agreement(P, g, prev, P.mul(d, eta_plus), P.mul(d, eta_minus), d)
    d = _clamp(P, d, step_min, step_max)
    if variant == "irprop":
        g = P.where(P.lt(P.mul(g, prev), 0.0), P.zeros_like(g), g)
    return P.sub(w, P.mul(rate, P.mul(P.sign(g), d))), {"step": d, "prev": g}


def _check_rprop(step: float, eta_plus: float, eta_minus: float, step_min: float,
                 step_max: float, lr: float) -> None:
    _positive(step=step, step_min=step_min, lr=lr)
    require(eta_plus > 1, "eta_plus", eta_plus, "a number > 1")
    require(0 < eta_minus < 1, "eta_minus", eta_minus, "a number in (0, 1)")
    require(step_min <= step_max, "step_max", step_max, f"at least step_min ({step_min})")


@op("adaptive_gains", "optimizer")
def adaptive_gains(P: Any, w: Any, g: Any, state: State, rate: float, t: int, *, lr: float,
                   increment: float = 0.05, decay: float = 0.95, gain_min: float = 0.1,
                   gain_max: float = 10.0) -> Update:
    """w <- w - rate k g; per-weight gain k += increment if g g_prev > 0, k *= decay if < 0.

    The lecture notes' adaptive learning-rate gains (additive increase, multiplicative decrease,
    as in Jacobs' delta-bar-delta); gains start at 1 and are clamped to [gain_min, gain_max]
    (the notes suggest [0.1, 10] or [0.01, 100]). A zero product
    (the first update, or a zero gradient) leaves the gain unchanged. Meant for full batches.
    """
    _positive(lr=lr, increment=increment)
    require(0 < decay < 1, "decay", decay, "a number in (0, 1)")
    require(0 < gain_min <= 1 <= gain_max, "gain_min, gain_max", (gain_min, gain_max),
            "0 < gain_min <= 1 <= gain_max (gains start at 1)")
    gain = _slot(P, state, "gain", w, fill=1.0)
    prev = _slot(P, state, "prev", w)
    gain = _sign_agreement(P, g, prev, P.add(gain, increment), P.mul(gain, decay), gain)
    gain = _clamp(P, gain, gain_min, gain_max)
    return P.sub(w, P.mul(rate, P.mul(gain, g))), {"gain": gain, "prev": g}
