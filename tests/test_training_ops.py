"""Optimizers, schedules, clipping, gradient noise, early stopping, data sets and trainer configs.

Every update rule and schedule is checked against a reference written here from the formula
(never calling nndsl), and against torch.optim / torch.optim.lr_scheduler where torch has the
same rule, in float64.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytest
from nndsl.backends.numpy.prims import make_numpy_prims

import nndsl.data.builtin as builtin_data
import nndsl.ops.optimizers  # noqa: F401  (registrations)
import nndsl.ops.schedules  # noqa: F401
from nndsl.errors import NndslError
from nndsl.ops.registry import get

try:
    import torch
except ImportError:  # the NumPy-only tests still run
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

P = make_numpy_prims()
W0 = np.array([1.0, -2.0, 0.5, 3.0, 0.0, -0.7])
CURV = np.array([0.5, 3.0, 10.0, 1.0, 2.0, 0.1])  # g = CURV (w - CENTER): some steps overshoot
CENTER = np.array([0.2, 0.1, -0.3, 0.0, 0.0, 0.4])  # w0[4] = centre[4]: an exactly 0 gradient
STEPS = 12


def grad(w: np.ndarray) -> np.ndarray:
    return CURV * (w - CENTER)


def rates(base: float) -> list[float]:
    """A schedule that changes the rate, so rules that scale `rate` differently would differ."""
    return [base * (1.0 if t < 5 else 0.5) for t in range(STEPS)]


def run_ours(name: str, base: float, P: Any = P, w0: np.ndarray = W0, **hyper: Any) -> list:
    fn = get(name, "optimizer").compute
    w, state, out = w0.copy(), {}, []
    for t, rate in enumerate(rates(base), start=1):
        w, state = fn(P, w, grad(np.asarray(w)), state, rate, t, **hyper)
        out.append(np.asarray(w).copy())
    return out


def run_reference(rule: Any, base: float) -> list:
    """`rule(w, g, state, rate, t) -> w` is a hand-written reference that keeps its own state."""
    w, state, out = W0.copy(), {}, []
    for t, rate in enumerate(rates(base), start=1):
        w = rule(w, grad(w), state, rate, t)
        out.append(w.copy())
    return out


def run_torch(make: Any, base: float) -> list:
    p = torch.nn.Parameter(torch.tensor(W0, dtype=torch.float64))
    opt = make([p])
    out = []
    for rate in rates(base):
        for group in opt.param_groups:
            group["lr"] = rate
        p.grad = torch.tensor(grad(p.detach().numpy()), dtype=torch.float64)
        opt.step()
        out.append(p.detach().numpy().copy())
    return out


def assert_paths(got: list, want: list) -> None:
    for t, (a, b) in enumerate(zip(got, want, strict=True), start=1):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=f"step {t}")


# --- independent references of the update rules ----------------------------------------------


def ref_sgd(mu: float, nesterov: bool, form: str) -> Any:
    def rule(w, g, s, rate, t):
        v = s.get("v", np.zeros_like(w))
        if form == "classic":
            v = mu * v - rate * g
            s["v"] = v
            return w + (mu * v - rate * g if nesterov else v)
        v = mu * v + ((1 - mu) * g if form == "ema" else g)
        s["v"] = v
        return w - rate * (g + mu * v if nesterov else v)

    return rule


def ref_adagrad(eps: float, inside: bool) -> Any:
    def rule(w, g, s, rate, t):
        s["G"] = s.get("G", 0.0) + g * g
        return w - rate * g / (np.sqrt(s["G"] + eps) if inside else np.sqrt(s["G"]) + eps)

    return rule


def ref_adadelta(rho: float, eps: float) -> Any:
    def rule(w, g, s, rate, t):
        eg = rho * s.get("eg", 0.0) + (1 - rho) * g**2
        dx = np.sqrt(s.get("ex", 0.0) + eps) / np.sqrt(eg + eps) * g
        s["eg"], s["ex"] = eg, rho * s.get("ex", 0.0) + (1 - rho) * dx**2
        return w - rate * dx

    return rule


def ref_rmsprop(decay: float, eps: float, mu: float) -> Any:
    def rule(w, g, s, rate, t):
        s["ms"] = decay * s.get("ms", 0.0) + (1 - decay) * g**2
        step = g / (np.sqrt(s["ms"]) + eps)
        if mu:
            s["b"] = mu * s.get("b", 0.0) + step
            step = s["b"]
        return w - rate * step

    return rule


def ref_adam(b1: float, b2: float, eps: float, inside: bool) -> Any:
    def rule(w, g, s, rate, t):
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g**2
        mh, vh = s["m"] / (1 - b1**t), s["v"] / (1 - b2**t)
        return w - rate * mh / (np.sqrt(vh + eps) if inside else np.sqrt(vh) + eps)

    return rule


def ref_rprop(d0: float, up: float, down: float, lo: float, hi: float, plain: bool) -> Any:
    def rule(w, g, s, rate, t):  # element by element, straight from the textbook
        d, prev = s.setdefault("d", [d0] * len(w)), s.setdefault("prev", [0.0] * len(w))
        w = w.copy()
        for i in range(len(w)):
            gi = g[i]
            if gi * prev[i] > 0:
                d[i] = min(d[i] * up, hi)
            elif gi * prev[i] < 0:
                d[i] = max(d[i] * down, lo)
                gi = gi if plain else 0.0
            d[i] = min(max(d[i], lo), hi)
            w[i] -= rate * math.copysign(d[i], gi) if gi != 0 else 0.0
            prev[i] = gi
        return w

    return rule


def ref_gains(inc: float, dec: float, lo: float, hi: float) -> Any:
    def rule(w, g, s, rate, t):
        k, prev = s.setdefault("k", [1.0] * len(w)), s.setdefault("prev", [0.0] * len(w))
        for i in range(len(w)):
            if g[i] * prev[i] > 0:
                k[i] += inc
            elif g[i] * prev[i] < 0:
                k[i] *= dec
            k[i] = min(max(k[i], lo), hi)
            prev[i] = g[i]
        return w - rate * np.array(k) * g

    return rule


# --- optimizers against the references and torch ---------------------------------------------

REFERENCE_CASES = [
    ("sgd", 0.05, {"lr": 0.05}, ref_sgd(0.0, False, "torch")),
    ("sgd", 0.05, {"lr": 0.05, "momentum": 0.9}, ref_sgd(0.9, False, "torch")),
    ("sgd", 0.05, {"lr": 0.05, "momentum": 0.9, "nesterov": True}, ref_sgd(0.9, True, "torch")),
    ("sgd", 0.05, {"lr": 0.05, "momentum": 0.8, "form": "classic"}, ref_sgd(0.8, False, "classic")),
    ("sgd", 0.05, {"lr": 0.05, "momentum": 0.8, "nesterov": True, "form": "classic"},
     ref_sgd(0.8, True, "classic")),
    ("sgd", 0.2, {"lr": 0.2, "momentum": 0.9, "form": "ema"}, ref_sgd(0.9, False, "ema")),
    ("nesterov", 0.05, {"lr": 0.05}, ref_sgd(0.9, True, "torch")),
    ("adagrad", 0.3, {"lr": 0.3}, ref_adagrad(1e-10, False)),
    ("adagrad", 0.3, {"lr": 0.3, "eps": 1e-8, "eps_inside": True}, ref_adagrad(1e-8, True)),
    ("adadelta", 1.0, {}, ref_adadelta(0.9, 1e-6)),
    ("adadelta", 2.0, {"decay": 0.8, "eps": 1e-4, "lr": 2.0}, ref_adadelta(0.8, 1e-4)),
    ("rmsprop", 0.01, {"lr": 0.01}, ref_rmsprop(0.9, 1e-8, 0.0)),
    ("rmsprop", 0.01, {"lr": 0.01, "decay": 0.99, "momentum": 0.5}, ref_rmsprop(0.99, 1e-8, 0.5)),
    ("adam", 0.1, {"lr": 0.1}, ref_adam(0.9, 0.999, 1e-8, False)),
    ("adam", 0.1, {"lr": 0.1, "beta1": 0.5, "eps": 1e-3, "eps_inside": True},
     ref_adam(0.5, 0.999, 1e-3, True)),
    ("rprop", 1.0, {}, ref_rprop(0.01, 1.2, 0.5, 1e-6, 50.0, plain=False)),
    ("rprop", 1.0, {"step": 0.1, "eta_plus": 1.5, "eta_minus": 0.4, "step_max": 0.5},
     ref_rprop(0.1, 1.5, 0.4, 1e-6, 0.5, plain=False)),
    ("rprop", 1.0, {"step": 0.1, "variant": "plain"}, ref_rprop(0.1, 1.2, 0.5, 1e-6, 50.0, True)),
    ("adaptive_gains", 0.15, {"lr": 0.15}, ref_gains(0.05, 0.95, 0.1, 10.0)),
    ("adaptive_gains", 0.15, {"lr": 0.15, "increment": 0.2, "gain_max": 1.3},
     ref_gains(0.2, 0.95, 0.1, 1.3)),
]


@pytest.mark.parametrize(("name", "base", "hyper", "rule"), REFERENCE_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(REFERENCE_CASES)])
def test_optimizer_matches_reference(name: str, base: float, hyper: dict, rule: Any) -> None:
    assert_paths(run_ours(name, base, **hyper), run_reference(rule, base))


TORCH_CASES = [
    ("sgd", 0.05, {"lr": 0.05}, lambda p: torch.optim.SGD(p, lr=0.05)),
    ("sgd", 0.05, {"lr": 0.05, "momentum": 0.9},
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    ("sgd", 0.05, {"lr": 0.05, "momentum": 0.9, "nesterov": True},
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True)),
    ("adagrad", 0.3, {"lr": 0.3}, lambda p: torch.optim.Adagrad(p, lr=0.3)),
    ("adadelta", 1.0, {}, lambda p: torch.optim.Adadelta(p, lr=1.0, rho=0.9, eps=1e-6)),
    ("rmsprop", 0.01, {"lr": 0.01, "decay": 0.9},
     lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-8)),
    ("rmsprop", 0.01, {"lr": 0.01, "decay": 0.99, "momentum": 0.5},
     lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.99, eps=1e-8, momentum=0.5)),
    ("adam", 0.1, {"lr": 0.1}, lambda p: torch.optim.Adam(p, lr=0.1)),
    ("adam", 0.1, {"lr": 0.1, "beta1": 0.5, "beta2": 0.9, "eps": 1e-4},
     lambda p: torch.optim.Adam(p, lr=0.1, betas=(0.5, 0.9), eps=1e-4)),
]


@needs_torch
@pytest.mark.parametrize(("name", "base", "hyper", "make"), TORCH_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(TORCH_CASES)])
def test_optimizer_matches_torch(name: str, base: float, hyper: dict, make: Any) -> None:
    assert_paths(run_ours(name, base, **hyper), run_torch(make, base))


@needs_torch
def test_rprop_matches_torch_with_constant_rate() -> None:
    """torch's lr is the initial step size; ours is `step`, with lr (the rate) 1."""
    ours = run_ours_constant("rprop", 1.0, step=0.05, eta_plus=1.3, step_max=0.4)
    want = run_torch_constant(lambda p: torch.optim.Rprop(p, lr=0.05, etas=(0.5, 1.3),
                                                          step_sizes=(1e-6, 0.4)))
    assert_paths(ours, want)


def run_ours_constant(name: str, rate: float, **hyper: Any) -> list:
    fn = get(name, "optimizer").compute
    w, state, out = W0.copy(), {}, []
    for t in range(1, STEPS + 1):
        w, state = fn(P, w, grad(w), state, rate, t, **hyper)
        out.append(w.copy())
    return out


def run_torch_constant(make: Any) -> list:
    p = torch.nn.Parameter(torch.tensor(W0, dtype=torch.float64))
    opt, out = make([p]), []
    for _ in range(STEPS):
        p.grad = torch.tensor(grad(p.detach().numpy()), dtype=torch.float64)
        opt.step()
        out.append(p.detach().numpy().copy())
    return out


def test_rprop_flips_sign_in_this_problem() -> None:
    """The comparison above exercises all three branches (grow, shrink, keep)."""
    ws = run_ours_constant("rprop", 1.0, step=0.05, eta_plus=1.3, step_max=0.4)
    g = np.array([grad(w) for w in [W0, *ws]])
    products = g[1:] * g[:-1]
    assert (products > 0).any() and (products < 0).any() and (products == 0).any()


def test_classic_and_torch_momentum_agree_for_a_constant_rate() -> None:
    """Seed 000's V <- mu V - eta g equals torch's form while eta is constant (CONV-02)."""
    classic = run_ours_constant("sgd", 0.05, lr=0.05, momentum=0.9, form="classic")
    torch_form = run_ours_constant("sgd", 0.05, lr=0.05, momentum=0.9)
    assert_paths(classic, torch_form)
    assert not np.allclose(run_ours("sgd", 0.05, lr=0.05, momentum=0.9, form="classic")[-1],
                           run_ours("sgd", 0.05, lr=0.05, momentum=0.9)[-1])


def test_ema_momentum_damps_the_first_step() -> None:
    """EMA form: v_1 = (1 - mu) g from v_0 = 0; torch's dampening would seed v_1 = g (OPT-11)."""
    ws = run_ours_constant("sgd", 0.1, lr=0.1, momentum=0.9, form="ema")
    g1 = grad(W0)
    np.testing.assert_allclose(ws[0], W0 - 0.1 * 0.1 * g1)


@pytest.mark.parametrize("name", ["sgd", "adagrad", "adadelta", "rmsprop", "adam", "rprop",
                                  "adaptive_gains", "nesterov"])
def test_optimizer_is_pure(name: str) -> None:
    fn = get(name, "optimizer").compute
    hyper = {} if name in ("adadelta", "rprop") else {"lr": 0.1}
    if name == "sgd":
        hyper["momentum"] = 0.5
    w, state = W0.copy(), {}
    w1, state1 = fn(P, w, grad(w), state, 0.1, 1, **hyper)
    frozen = {k: np.array(v, copy=True) for k, v in state1.items()}
    w2, state2 = fn(P, w1, grad(w1), state1, 0.1, 2, **hyper)
    assert state == {} and np.array_equal(w, W0)
    assert all(np.array_equal(state1[k], v) for k, v in frozen.items())
    assert state2 is not state1 and set(state2) == set(state1)


@needs_torch
@pytest.mark.parametrize("name", ["sgd", "adagrad", "adadelta", "rmsprop", "adam", "rprop",
                                  "adaptive_gains", "nesterov"])
def test_optimizer_runs_on_torch_prims(name: str) -> None:
    """The same rule on the torch primitive table gives the NumPy path (float64)."""
    prims = pytest.importorskip("nndsl.backends.torch.prims")
    TP = prims.make_torch_prims()
    hyper = {} if name in ("adadelta", "rprop") else {"lr": 0.1}
    if name == "sgd":
        hyper["momentum"] = 0.5
    fn = get(name, "optimizer").compute
    w_np, w_t, s_np, s_t = W0.copy(), torch.tensor(W0), {}, {}
    for t in range(1, 6):
        w_np, s_np = fn(P, w_np, grad(w_np), s_np, 0.1, t, **hyper)
        w_t, s_t = fn(TP, w_t, torch.tensor(grad(w_t.numpy())), s_t, 0.1, t, **hyper)
    np.testing.assert_allclose(w_t.numpy(), w_np, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("name", "hyper", "word"), [
    ("sgd", {"lr": 0.0}, "lr"),
    ("sgd", {"lr": 0.1, "momentum": 1.0}, "momentum"),
    ("sgd", {"lr": 0.1, "nesterov": True}, "momentum"),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "form": "ema"}, "form"),
    ("adagrad", {"lr": 0.1, "eps": -1.0}, "eps"),
    ("adadelta", {"decay": 1.0}, "decay"),
    ("rmsprop", {"decay": -0.1}, "decay"),
    ("adam", {"beta1": 1.0}, "beta1"),
    ("adam", {"lr": -1e-3}, "lr"),
    ("rprop", {"eta_minus": 1.5}, "eta_minus"),
    ("rprop", {"eta_plus": 1.0}, "eta_plus"),
    ("rprop", {"step_min": 1.0, "step_max": 0.5}, "step_max"),
    ("adaptive_gains", {"lr": 0.1, "gain_min": 2.0}, "gain_min"),
    ("adaptive_gains", {"lr": 0.1, "decay": 1.2}, "decay"),
])
def test_optimizer_rejects_bad_hyper(name: str, hyper: dict, word: str) -> None:
    with pytest.raises(NndslError) as err:
        get(name, "optimizer").compute(P, W0, grad(W0), {}, 0.1, 1, **hyper)
    assert word in err.value.message and err.value.received is not None


def test_optimizer_signatures_follow_the_language() -> None:
    """Positional order = keyword order (language.md: sgd(lr, ...), adadelta(decay), ...)."""
    first = {"sgd": "lr", "adam": "lr", "rmsprop": "lr", "adagrad": "lr", "adadelta": "decay",
             "rprop": "step", "adaptive_gains": "lr", "nesterov": "lr"}
    for name, lead in first.items():
        opdef = get(name, "optimizer")
        assert opdef.positional_names[0] == lead, name
        assert "lr" in opdef.hyper, f"{name} needs an lr for the schedule"
    assert get("sgd", "optimizer").hyper["lr"].required
    assert get("adam", "optimizer").hyper["lr"].default == 1e-3
    assert get("adadelta", "optimizer").hyper["lr"].default == 1.0


# --- schedules ---------------------------------------------------------------------------------


def schedule(name: str, base: float, step: int = 0, epoch: int = 0, **params: Any) -> float:
    return get(name, "schedule").compute(base, step, epoch, **params)


def torch_lrs(make: Any, base: float, n: int) -> list[float]:
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=base)
    sched, out = make(opt), []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


EPOCH_TORCH_CASES = [
    ("step", {"every": 3, "gamma": 0.5}, lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5)),
    ("multistep", {"milestones": (2, 5, 6), "gamma": 0.3},
     lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [2, 5, 6], 0.3)),
    ("exponential", {"gamma": 0.9}, lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9)),
    ("cosine", {"epochs": 10, "min_lr": 0.01},
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10, eta_min=0.01)),
    ("poly", {"total": 8, "power": 2.0},
     lambda o: torch.optim.lr_scheduler.PolynomialLR(o, total_iters=8, power=2.0)),
]


@needs_torch
@pytest.mark.parametrize(("name", "params", "make"), EPOCH_TORCH_CASES,
                         ids=[c[0] for c in EPOCH_TORCH_CASES])
def test_epoch_schedule_matches_torch(name: str, params: dict, make: Any) -> None:
    want = torch_lrs(make, 0.4, 11)
    got = [schedule(name, 0.4, step=123, epoch=e, **params) for e in range(11)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


@needs_torch
def test_warmup_matches_torch_linear_lr_per_step() -> None:
    want = torch_lrs(lambda o: torch.optim.lr_scheduler.LinearLR(o, 0.25, 1.0, total_iters=4),
                     0.4, 9)
    got = [schedule("warmup", 0.4, step=s, epoch=99, steps=4, start=0.25) for s in range(9)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


SCHEDULE_REFERENCES = [
    ("constant", {}, lambda b, s, e: b),
    ("step", {"every": 4}, lambda b, s, e: b * 0.1 ** (e // 4)),
    ("multistep", {"milestones": (3, 7)}, lambda b, s, e: b * 0.1 ** ((e >= 3) + (e >= 7))),
    ("exponential", {"gamma": 0.95}, lambda b, s, e: b * 0.95**e),
    ("inverse_time", {"decay": 0.01}, lambda b, s, e: b / (1 + b * 0.01 * s)),
    ("inv", {"gamma": 1e-3, "power": 0.75}, lambda b, s, e: b * (1 + 1e-3 * s) ** -0.75),
    ("poly", {"total": 10}, lambda b, s, e: b * max(0.0, 1 - e / 10)),
    ("cosine", {"epochs": 6}, lambda b, s, e: b * (1 + math.cos(math.pi * min(e, 6) / 6)) / 2),
    ("sigmoid", {"center": 5.0, "width": 2.0}, lambda b, s, e: b / (1 + math.exp((e - 5) / 2))),
    ("warmup", {"steps": 10}, lambda b, s, e: b * (0.1 + 0.9 * min(s, 10) / 10)),
    ("anneal", {"t0": 50.0}, lambda b, s, e: b / (1 + s / 50)),
    ("anneal", {"t0": 50.0, "cooling": "boltzmann"},
     lambda b, s, e: b * math.log(2) / math.log(2 + s / 50)),
]


@pytest.mark.parametrize(("name", "params", "formula"), SCHEDULE_REFERENCES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(SCHEDULE_REFERENCES)])
def test_schedule_matches_formula(name: str, params: dict, formula: Any) -> None:
    for step, epoch in [(0, 0), (1, 0), (7, 1), (100, 3), (1000, 7), (5000, 12), (10**6, 40)]:
        got = schedule(name, 0.3, step, epoch, **params)
        assert got == pytest.approx(formula(0.3, step, epoch), rel=1e-12), (step, epoch)


def test_inverse_time_catalog_values() -> None:
    """PROC-01 (derived): eta_0 = 0.1, lambda = 0.01 gives 0.1, 0.0909, 0.05 at t = 0, 100, 1000."""
    got = [schedule("inverse_time", 0.1, t, 0, decay=0.01) for t in (0, 100, 1000)]
    assert got == pytest.approx([0.1, 0.1 / 1.1, 0.05], rel=1e-12)


def test_schedules_start_at_the_base_rate() -> None:
    for name, params, _ in SCHEDULE_REFERENCES:
        if name not in ("sigmoid", "warmup"):
            assert schedule(name, 0.3, 0, 0, **params) == pytest.approx(0.3), name


def test_cosine_holds_min_lr_after_its_period_and_sigmoid_is_stable() -> None:
    assert schedule("cosine", 0.3, 0, 50, epochs=10, min_lr=0.02) == pytest.approx(0.02)
    assert schedule("sigmoid", 0.3, 0, 10**6, center=1.0) == 0.0
    assert schedule("sigmoid", 0.3, 0, 0, center=10**6) == pytest.approx(0.3)


@pytest.mark.parametrize(("name", "params", "word"), [
    ("step", {"every": 0}, "every"),
    ("multistep", {"milestones": (5, 3)}, "milestones"),
    ("multistep", {"milestones": ()}, "milestones"),
    ("exponential", {"gamma": 0.0}, "gamma"),
    ("cosine", {"epochs": 5, "min_lr": 1.0}, "min_lr"),
    ("warmup", {"steps": 5, "start": 0.0}, "start"),
    ("anneal", {"t0": 0.0}, "t0"),
    ("inverse_time", {"decay": -1.0}, "decay"),
])
def test_schedule_rejects_bad_params(name: str, params: dict, word: str) -> None:
    with pytest.raises(NndslError, match=word):
        schedule(name, 0.3, 0, 0, **params)


def test_schedule_signatures_follow_the_language() -> None:
    for name, lead in {"step": "every", "exponential": "gamma", "inverse_time": "decay",
                       "cosine": "epochs", "multistep": "milestones"}.items():
        assert get(name, "schedule").positional_names[0] == lead


# --- clipping and gradient noise ---------------------------------------------------------------


def clip(name: str, grads: list, **params: Any) -> list:
    return get(name, "clip").compute(P, grads, **params)


@needs_torch
@pytest.mark.parametrize("limit", [0.5, 3.0, 100.0])
def test_norm_clip_matches_torch(limit: float) -> None:
    rng = np.random.default_rng(3)
    grads = [rng.normal(size=(3, 4)), rng.normal(size=(5,)), np.array(2.0)]
    tensors = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
    for t, g in zip(tensors, grads, strict=True):
        t.grad = torch.tensor(g)
    torch.nn.utils.clip_grad_norm_(tensors, max_norm=limit)
    got = clip("norm", grads, max=limit)
    for a, t in zip(got, tensors, strict=True):
        np.testing.assert_allclose(a, t.grad.numpy(), rtol=1e-12)
    norm = math.sqrt(sum(float(np.sum(g * g)) for g in got))
    assert norm <= limit + 1e-9


@needs_torch
def test_value_clip_matches_torch() -> None:
    g = np.array([[-3.0, -0.2, 0.0], [0.7, 1.0, 9.0]])
    t = torch.nn.Parameter(torch.zeros(2, 3, dtype=torch.float64))
    t.grad = torch.tensor(g)
    torch.nn.utils.clip_grad_value_([t], clip_value=0.8)
    (got,) = clip("value", [g], max=0.8)
    np.testing.assert_array_equal(got, t.grad.numpy())


@needs_torch
def test_clips_run_on_torch_prims() -> None:
    prims = pytest.importorskip("nndsl.backends.torch.prims")
    TP = prims.make_torch_prims()
    grads = [np.array([3.0, 4.0]), np.array([[1.0, -2.0]])]
    for name, limit in (("norm", 2.0), ("value", 1.5)):
        want = clip(name, grads, max=limit)
        got = get(name, "clip").compute(TP, [torch.tensor(g) for g in grads], max=limit)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a.numpy(), b, rtol=1e-12)


def test_clip_edge_cases() -> None:
    g = np.array([0.3, -0.4])
    np.testing.assert_array_equal(clip("norm", [g], max=1.0)[0], g)  # under the limit: as is
    np.testing.assert_allclose(clip("norm", [g], max=0.25)[0], g / 2, rtol=1e-5)
    assert clip("norm", [], max=1.0) == []
    for name in ("norm", "value"):
        with pytest.raises(NndslError, match="max"):
            clip(name, [g], max=0.0)


@pytest.mark.parametrize(("step", "eta", "gamma"),
                         [(0, 0.3, 0.55), (10, 0.3, 0.55), (99, 1.0, 1.0)])
def test_annealed_noise_has_the_scheduled_variance(step: int, eta: float, gamma: float) -> None:
    noisy = make_numpy_prims(training=True, seed=5)
    g = np.full(200_000, 2.0)
    out = get("annealed", "noise").compute(noisy, g, step, eta=eta, gamma=gamma)
    variance = eta / (1 + step) ** gamma
    assert np.mean(out - g) == pytest.approx(0.0, abs=5 * math.sqrt(variance / g.size))
    assert np.var(out - g) == pytest.approx(variance, rel=0.02)


def test_annealed_noise_is_seeded() -> None:
    fn = get("annealed", "noise").compute
    g = np.zeros(10)
    a = fn(make_numpy_prims(True, seed=1), g, 3, eta=0.3, gamma=0.55)
    b = fn(make_numpy_prims(True, seed=1), g, 3, eta=0.3, gamma=0.55)
    c = fn(make_numpy_prims(True, seed=2), g, 3, eta=0.3, gamma=0.55)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(fn(P, g, 0, eta=0.0, gamma=0.55), g)


# --- early stopping ----------------------------------------------------------------------------


def stop(history: list[float], **params: Any) -> bool:
    return get("patience", "early_stop").compute(history, **params)


@pytest.mark.parametrize(("history", "params", "expected"), [
    ([], {"epochs": 1}, False),
    ([1.0], {"epochs": 1}, False),
    ([1.0, 1.0], {"epochs": 1}, True),  # no strict improvement
    ([1.0, 0.9, 0.8, 0.85, 0.84], {"epochs": 3}, False),
    ([1.0, 0.9, 0.8, 0.85, 0.84, 0.81], {"epochs": 3}, True),
    ([1.0, 0.9, 0.8, 0.85, 0.84, 0.79], {"epochs": 3}, False),
    ([1.0, 0.95, 0.93, 0.92], {"epochs": 2, "min_delta": 0.04}, True),  # gains below min_delta
    ([1.0, 0.95, 0.9], {"epochs": 2, "min_delta": 0.04}, False),
    ([0.5, 0.6, 0.7, 0.65, 0.69], {"epochs": 2, "mode": "max"}, True),
    ([0.5, 0.6, 0.7, 0.65, 0.71], {"epochs": 2, "mode": "max"}, False),
    ([1.0, float("nan"), float("nan")], {"epochs": 2}, True),
])
def test_patience(history: list[float], params: dict, expected: bool) -> None:
    assert stop(history, **params) is expected


def test_patience_rejects_bad_params() -> None:
    with pytest.raises(NndslError, match="epochs"):
        stop([1.0], epochs=0)
    with pytest.raises(NndslError, match="min_delta"):
        stop([1.0], epochs=2, min_delta=-0.1)
    assert get("patience", "early_stop").positional_names[:2] == ("epochs", "monitor")


# --- built-in data sets ------------------------------------------------------------------------


def load(name: str, **params: Any) -> dict[str, np.ndarray]:
    return get("builtin", "data").compute(Path("."), name=name, **params)


def test_builtin_names_match_the_literal() -> None:
    assert set(get_args(builtin_data.BuiltinName)) == set(builtin_data.BUILTINS)


@pytest.mark.parametrize(("name", "shapes"), [
    ("xor", {"x": (4, 2), "y": (4, 1)}),
    ("patterns8", {"x": (8, 8), "y": (8, 8)}),
    ("binary_world", {"x": (5, 8), "y": (5, 8)}),
    ("spirals", {"x": (200, 2), "y": (200, 1)}),
    ("sine", {"x": (64, 20, 1), "y": (64, 1)}),
    ("discrete_mapping", {"x": (300, 6), "y": (300,), "onehot": (300, 3)}),
    ("digits", {"x": (1797, 1, 8, 8), "y": (1797,), "onehot": (1797, 10)}),
])
def test_builtin_shapes_dtypes_and_determinism(name: str, shapes: dict) -> None:
    data = load(name)
    assert {k: v.shape for k, v in data.items()} == shapes
    assert data["x"].dtype == np.float32
    assert data["y"].dtype == (np.int64 if "onehot" in data else np.float32)
    again = load(name)
    assert all(np.array_equal(data[k], again[k]) for k in data)


def test_xor_and_patterns() -> None:
    xor = load("xor")
    np.testing.assert_array_equal(xor["y"][:, 0], np.logical_xor(*xor["x"].T.astype(bool)))
    np.testing.assert_array_equal(load("patterns8")["x"], np.eye(8))
    world = load("binary_world")["x"]
    assert set(np.unique(world)) == {0.0, 1.0} and len({tuple(r) for r in world}) == 5
    sampled = load("xor", n=50, seed=4)
    assert sampled["x"].shape == (50, 2)
    np.testing.assert_array_equal(sampled["y"][:, 0], np.logical_xor(*sampled["x"].T > 0.5))


def test_noise_goes_to_inputs_only_and_depends_on_the_seed() -> None:
    a, b = load("binary_world", n=40, noise=0.2, seed=1), load("binary_world", n=40, noise=0.2,
                                                                seed=2)
    assert not np.array_equal(a["x"], b["x"])
    assert set(np.unique(a["y"])) == {0.0, 1.0}
    assert 0.1 < np.std(a["x"] - a["y"]) < 0.3


def test_spirals_are_two_balanced_interleaved_arms() -> None:
    data = load("spirals", n=100)
    label = data["y"][:, 0]
    assert label.sum() == 50
    radius = np.linalg.norm(data["x"], axis=1)
    np.testing.assert_allclose(radius[label == 0], radius[label == 1], rtol=1e-6)
    np.testing.assert_allclose(data["x"][label == 0], -data["x"][label == 1], atol=1e-6)


def test_sine_targets_continue_the_sequence() -> None:
    """sin(a + 2h) = 2 cos(h) sin(a + h) - sin(a): the target is the next sample (h = 0.3)."""
    data = load("sine", n=16, seed=3)
    x = data["x"][:, :, 0].astype(np.float64)
    np.testing.assert_allclose(x[:, 2:], 2 * math.cos(0.3) * x[:, 1:-1] - x[:, :-2], atol=1e-5)
    np.testing.assert_allclose(data["y"][:, 0], 2 * math.cos(0.3) * x[:, -1] - x[:, -2],
                               atol=1e-5)


def test_discrete_mapping_clusters_around_three_prototypes() -> None:
    data = load("discrete_mapping", seed=7)
    assert set(np.unique(data["y"])) == {0, 1, 2}
    np.testing.assert_array_equal(data["onehot"].argmax(1), data["y"])
    centres = np.array([data["x"][data["y"] == c].mean(0) for c in range(3)])
    spread = np.array([data["x"][data["y"] == c].std(0) for c in range(3)])
    assert np.all(np.abs(centres) <= 1.5 + 0.1) and np.allclose(spread, 0.1, atol=0.04)


def test_digits() -> None:
    data = load("digits", n=100)
    assert data["x"].shape == (100, 1, 8, 8)
    assert 0.0 <= data["x"].min() and data["x"].max() <= 1.0
    np.testing.assert_array_equal(data["y"][:10], np.arange(10))
    full = load("digits")
    assert np.bincount(full["y"]).min() > 170


def test_builtin_errors() -> None:
    with pytest.raises(NndslError) as err:
        load("spiral")
    assert err.value.hint == "did you mean 'spirals'?"
    with pytest.raises(NndslError, match="n"):
        load("xor", n=0)
    with pytest.raises(NndslError, match="n"):
        load("digits", n=5000)
    with pytest.raises(NndslError, match="noise"):
        load("xor", noise=-1.0)


# --- CSV and NPZ files -------------------------------------------------------------------------


def read_csv(tmp_path: Path, text: str, **params: Any) -> dict[str, np.ndarray]:
    (tmp_path / "d.csv").write_text(text)
    return get("csv", "data").compute(tmp_path, path="d.csv", **params)


def test_csv_with_header_and_targets(tmp_path: Path) -> None:
    text = "a,b,label\n1,2,0\n\n3.5, -4e-1 ,1\n"
    data = read_csv(tmp_path, text, target="label")
    np.testing.assert_array_equal(data["x"], np.float32([[1, 2], [3.5, -0.4]]))
    np.testing.assert_array_equal(data["y"], [[0], [1]])
    assert data["x"].dtype == data["y"].dtype == np.float32
    two = read_csv(tmp_path, text, target=("label", "a"))
    np.testing.assert_array_equal(two["y"], [[0, 1], [1, 3.5]])
    np.testing.assert_array_equal(two["x"], np.float32([[2], [-0.4]]))
    assert set(read_csv(tmp_path, text)) == {"x"}


def test_csv_without_header_takes_column_numbers(tmp_path: Path) -> None:
    data = read_csv(tmp_path, "1;2;3\n4;5;6\n", header=False, delimiter=";", target=-1)
    np.testing.assert_array_equal(data["y"], [[3], [6]])
    np.testing.assert_array_equal(data["x"], [[1, 2], [4, 5]])
    with pytest.raises(NndslError, match="no header"):
        read_csv(tmp_path, "1,2\n", header=False, target="a")


def test_csv_ragged_row_reports_row_and_line(tmp_path: Path) -> None:
    with pytest.raises(NndslError) as err:
        read_csv(tmp_path, "a,b,c\n1,2,3\n\n4,5\n", target="c")
    e = err.value
    assert "data row 2 has 2 fields, the header has 3" in e.message
    assert (e.span.file, e.span.line, e.span.column) == (str(tmp_path / "d.csv"), 4, 1)


def test_csv_bad_cell_reports_row_column_and_position(tmp_path: Path) -> None:
    with pytest.raises(NndslError) as err:
        read_csv(tmp_path, "a,bb,c\n1,2,3\n10,abc,3\n")
    e = err.value
    assert e.message == "data row 2, column 2 ('bb'): 'abc' is not a number"
    assert (e.span.line, e.span.column, e.span.end_column) == (3, 4, 7)
    assert e.render().startswith(f"{tmp_path / 'd.csv'}:3:4: error:")
    with pytest.raises(NndslError, match="column 3 .*an empty cell"):
        read_csv(tmp_path, "a,b,c\n1,2,\n")
    with pytest.raises(NndslError, match="'nan' is not a number"):
        read_csv(tmp_path, "1,nan\n", header=False)


def test_csv_file_and_target_errors(tmp_path: Path) -> None:
    with pytest.raises(NndslError, match="does not exist") as err:
        get("csv", "data").compute(tmp_path, path="missing.csv")
    assert "relative to the spec" in err.value.hint
    with pytest.raises(NndslError) as err:
        read_csv(tmp_path, "age,label\n1,2\n", target="lable")
    assert err.value.hint == "did you mean 'label'?"
    with pytest.raises(NndslError, match="no data rows"):
        read_csv(tmp_path, "a,b\n")
    with pytest.raises(NndslError, match="input column"):
        read_csv(tmp_path, "a,b\n1,2\n", target=("a", "b"))
    with pytest.raises(NndslError, match="target"):
        read_csv(tmp_path, "a,b\n1,2\n", target=5)


def npz(tmp_path: Path, **params: Any) -> dict[str, np.ndarray]:
    return get("npz", "data").compute(tmp_path, path="d.npz", **params)


def test_npz_maps_names_to_arrays(tmp_path: Path) -> None:
    X, y = np.arange(6.0).reshape(3, 2), np.array([0, 1, 1])
    np.savez(tmp_path / "d.npz", X=X, y=y)
    data = npz(tmp_path, arrays=(("x", "X"), ("target", "y")))
    assert set(data) == {"x", "target"}
    np.testing.assert_array_equal(data["x"], X)
    assert data["target"].dtype == y.dtype
    assert set(npz(tmp_path)) == {"X", "y"}
    assert get("npz", "data").hyper["arrays"].default == ()


def test_npz_errors(tmp_path: Path) -> None:
    with pytest.raises(NndslError, match="does not exist"):
        npz(tmp_path)
    np.savez(tmp_path / "d.npz", X=np.zeros(2), labels=np.zeros(2))
    with pytest.raises(NndslError, match="has no array 'label'") as err:
        npz(tmp_path, arrays=(("y", "label"),))
    assert err.value.hint == "did you mean 'labels'?"
    np.savez(tmp_path / "d.npz", X=np.array([{"a": 1}], dtype=object))
    with pytest.raises(NndslError, match="Python objects"):
        npz(tmp_path)
    (tmp_path / "d.npz").write_text("not an archive")
    with pytest.raises(NndslError, match="not a NumPy .npz archive"):
        npz(tmp_path)
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(NndslError, match=r"\.npy"):
        get("npz", "data").compute(tmp_path, path="one.npy")
