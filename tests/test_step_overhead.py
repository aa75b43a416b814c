"""The torch step's cheaper bookkeeping gives the same numbers: penalties grouped through the
list table (foreach calls) equal the penalty taken weight by weight bit for bit, the
one-reduction finiteness check names the same array as the exact per-array check, and a
training step's trimmed plan gives the full plan's loss and updates."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from nndsl.backends.torch.engine import TorchEngine  # noqa: E402
from nndsl.backends.torch.prims import make_torch_prims  # noqa: E402

from nndsl.data.dataset import load_dataset  # noqa: E402
from nndsl.initialize import initialize  # noqa: E402
from nndsl.ir import Call  # noqa: E402
from nndsl.program import load  # noqa: E402
from nndsl.training.stages import stages  # noqa: E402
from nndsl.training.step_plan import LossPlan  # noqa: E402

from .conftest import ROOT  # noqa: E402
from .test_step_plan import CASES, _equal, _tables  # noqa: E402

L2, L1 = Call("l2", (("strength", 1e-3),)), Call("l1", (("strength", 3e-4),))
ELASTIC = Call("elastic", (("l1", 2e-4), ("l2", 5e-3)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_grouped_penalties_equal_the_per_weight_ones(dtype: torch.dtype) -> None:
    engine = TorchEngine("cpu")
    gen = torch.Generator().manual_seed(3)
    shapes = {"a.weight": (7, 5), "b.weight": (5, 3), "c.weight": (3,), "d.weight": (4, 4)}
    weights = {k: torch.randn(s, generator=gen, dtype=dtype) for k, s in shapes.items()}
    grads = {k: torch.randn(s, generator=gen, dtype=dtype) for k, s in shapes.items()}
    block = [L2, L1]  # the train block's, shared; c and d have their own
    penalties = {"a.weight": block, "b.weight": block, "c.weight": [ELASTIC],
                 "d.weight": [L2]}
    regs, traced, groups = engine._penalties(penalties, list(shapes))
    assert not traced and sorted(map(len, (g[0] for g in groups))) == [1, 1, 2]
    out = dict(grads)
    values = engine._closed_penalties(groups, weights, out)
    assert len(values) == 3  # one summed value per group: l1, l2 and elastic have that form
    for k, calls in penalties.items():  # the gradients bit for bit
        if calls == [L2]:  # added in one kernel, as torch.optim's weight_decay adds it
            want_grad = grads[k].add(weights[k], alpha=L2.get("strength"))
        else:
            want_grad = grads[k] + engine._penalty(calls, weights[k], part=1)
        assert torch.equal(out[k], want_grad)
    want = sum(float(engine._penalty(calls, weights[k])) for k, calls in penalties.items())
    rel = 1e-6 if dtype == torch.float32 else 1e-13  # the values: summed in another order
    assert math.isclose(sum(float(v) for v in values), want, rel_tol=rel)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("call", [L2, L1])
def test_a_gradient_added_in_one_kernel_is_the_reference_within_a_rounding(
        call: Call, dtype: torch.dtype) -> None:
    """l2's g + strength·w may be one fused multiply-add, not the reference's two roundings;
    l1's product strength·sign(w) is exact, so its sum is the reference's bit for bit."""
    engine = TorchEngine("cpu")
    gen = torch.Generator().manual_seed(5)
    weights = {k: torch.randn(257, generator=gen, dtype=dtype) for k in ("a.w", "b.w")}
    grads = {k: torch.randn(257, generator=gen, dtype=dtype) * 1e-3 for k in weights}
    _, _, groups = engine._penalties({k: [call] for k in weights}, list(weights))
    out = dict(grads)
    engine._closed_penalties(groups, weights, out)
    for k in weights:
        product = engine._penalty([call], weights[k], part=1)
        reference = grads[k] + product  # rounded twice: the product's rounding bounds it
        bound = torch.finfo(dtype).eps * (reference.abs() + product.abs())
        assert torch.all((out[k] - reference).abs() <= bound)
        if call is L1:
            assert torch.equal(out[k], reference)


def test_a_regularizer_without_a_summed_form_is_valued_weight_by_weight() -> None:
    from nndsl.backends.torch import multi

    engine = TorchEngine("cpu")
    weights = {"a.weight": torch.ones(3, 2), "b.weight": torch.full((2,), 2.0)}
    grads = {k: torch.zeros_like(v) for k, v in weights.items()}
    penalties = {k: [L2] for k in weights}
    _, _, groups = engine._penalties(penalties, list(weights))
    summed = multi.PENALTY_TOTALS.pop("l2")
    try:
        values = engine._closed_penalties(groups, weights, dict(grads))
    finally:
        multi.PENALTY_TOTALS["l2"] = summed
    assert [float(v) for v in values] == pytest.approx([0.5e-3 * 6, 0.5e-3 * 8])
    values = engine._closed_penalties(groups, weights, dict(grads))
    assert [float(v) for v in values] == pytest.approx([0.5e-3 * 14])


@pytest.mark.parametrize(("arrays", "bad"), [
    ({"a": torch.full((4,), 1e30), "b": torch.full((3,), -2e30)}, None),  # norms overflow
    ({"a": torch.ones(3), "b": torch.tensor([1.0, math.nan]), "c": torch.tensor([math.inf])},
     "b"),
    ({"a": torch.ones(2, dtype=torch.float16), "b": torch.tensor([6e4, -6e4],
                                                                 dtype=torch.float16)}, None),
    ({"a": torch.ones(2, dtype=torch.bfloat16), "b": torch.tensor([-math.inf],
                                                                  dtype=torch.bfloat16)}, "b"),
])
def test_the_fast_check_agrees_with_the_exact_one(arrays: dict, bad: str | None) -> None:
    assert TorchEngine("cpu").nonfinite(arrays) == bad
    before = {k: v.clone() for k, v in arrays.items()}
    assert TorchEngine("cpu").nonfinite(arrays, scratch=True) == bad  # written back as read
    assert all(torch.equal(v.view(torch.int16 if v.element_size() == 2 else torch.int32),
                           before[k].view(torch.int16 if v.element_size() == 2 else torch.int32))
               for k, v in arrays.items())


def test_a_gradient_check_leaves_the_bits_and_takes_what_it_cannot_write_elsewhere() -> None:
    """The check a step's gradients get (`scratch`) stores every element back as it was
    (-0.0, subnormals, NaN payloads), and arrays it cannot write in place (an expanded view,
    a leaf that requires grad, mixed dtypes) are checked without writing."""
    bits = torch.tensor([0x80000000, 0x00000001, 0x7FC00001, 0x7F800000, 0x3F800000],
                        dtype=torch.int64).to(torch.int32)
    odd = bits.view(torch.float32)
    kept = odd.clone()
    assert TorchEngine("cpu").nonfinite({"a": torch.ones(3), "b": odd}, scratch=True) == "b"
    assert torch.equal(odd.view(torch.int32), kept.view(torch.int32))
    for arrays, bad in (({"a": torch.tensor([math.inf]).expand(4)}, "a"),
                        ({"a": torch.ones(2, requires_grad=True)}, None),
                        ({"a": torch.ones(2), "b": torch.tensor([math.nan],
                                                              dtype=torch.float64)}, "b")):
        with torch.no_grad():
            assert TorchEngine("cpu").nonfinite(arrays, scratch=True) == bad


@pytest.mark.parametrize(("path", "model", "index"), CASES,
                         ids=[f"{p.stem}-{m}-{i}" for p, m, i in CASES])
def test_a_trimmed_plan_gives_the_loss_and_updates_of_the_full_one(path: Path, model: str,
                                                                    index: int) -> None:
    """A training step's plan skips the model's trailing values the loss does not read; the
    loss, the buffer updates and every value it does compute stay the full plan's."""
    program, _ = load(path)
    train = next(t for t in program.trains if t.model == model)
    stage = stages(train)[index]
    graph = program.model(model)
    data = load_dataset({**dict(graph.inputs), **dict(train.targets)}, [graph], train,
                        path.parent)
    make, convert = _tables("torch")
    feeds = {k: convert(v[:8]) for k, v in data.train.items()}
    weights = {k: convert(v) for k, v in initialize(graph, train.get("seed", 0)).items()}
    full_loss, full = LossPlan(graph, stage.loss, make()).run(make(), feeds, weights)
    plan = LossPlan(graph, stage.loss, make(), trim=True)
    loss, trimmed = plan.run(make(), feeds, weights)
    _equal(loss, full_loss, "loss")
    assert trimmed.updates.keys() == full.updates.keys()
    for k, v in trimmed.updates.items():
        _equal(v, full.updates[k], k)
    for k, v in trimmed.env.items():
        _equal(v, full.env[k], k)


def test_a_classifier_step_skips_its_softmax_output() -> None:
    program, _ = load(ROOT / "specs" / "digits_mlp.nn")
    train = program.trains[0]
    plan = LossPlan(program.model(train.model), train.loss, make_torch_prims(), trim=True)
    assert [c.node.name for c in plan.model.calls][-2:] == ["h", "dense_3"]
