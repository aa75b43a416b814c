"""Which weights a loss can train by gradients: a walk back from the loss that stops at ops
without a gradient (step, sign, a Hopfield recall, accuracy). A weight upstream of such an op
and of no differentiable path would never move under backprop, silently; that is an error at
the op that blocks it, naming the trainers that can train such a model."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nndsl import ops
from nndsl.errors import NndslError
from nndsl.ir import Graph, Node

if TYPE_CHECKING:
    from nndsl.training.registry import CheckContext


@dataclass(frozen=True)
class Flow:
    """The outcome of the walk: weights that get gradients, and blocked ones with the node
    (nearest the loss) that blocks each."""

    trained: frozenset[str]
    blocked: dict[str, Node]
    unused: frozenset[str]  # weights the loss does not read at all (another phase's)


def _differentiable(node: Node) -> bool:
    opdef = ops.OPS.get(node.op)
    return opdef is None or opdef.differentiable


def gradient_flow(model: Graph, loss: Graph | None = None) -> Flow:
    """Walk back from the loss (or, without one, from every model output)."""
    nodes = [*model.nodes, *(loss.nodes if loss is not None else ())]
    roots = loss.outputs if loss is not None else model.outputs
    smooth: set[str] = set(roots)  # values whose gradient reaches the roots
    blocker: dict[str, Node] = {}  # values that reach the roots only through this node
    trained: set[str] = set()
    for node in reversed(nodes):
        weights = [w for _, w in node.weights]
        if node.name in smooth and _differentiable(node):
            smooth.update(node.inputs)
            trained.update(weights)
            continue
        stop = node if node.name in smooth else blocker.get(node.name)
        if stop is None:
            continue
        for name in (*node.inputs, *weights):
            blocker.setdefault(name, stop)
    trained |= {w.name for w in model.weights if w.name in smooth}
    blocked = {w.name: blocker[w.name] for w in model.weights
               if w.name not in trained and w.name in blocker}
    unused = frozenset(w.name for w in model.weights
                       if w.name not in trained and w.name not in blocked)
    return Flow(frozenset(trained), blocked, unused)


def _gradient_free(ctx: CheckContext | None) -> list[str]:
    """The gradient-free trainers that would accept this model (made with their defaults)."""
    from dataclasses import replace

    from nndsl.training.registry import TRAINERS

    fits = []
    for name, cls in sorted(TRAINERS.items()):
        if not cls.gradient_free:
            continue
        try:
            if ctx is not None:
                cls().check(replace(ctx, call_span=None))
        except (NndslError, TypeError):  # refuses the model, or needs arguments it lacks
            continue
        fits.append(name)
    return fits


def check_gradient_flow(model: Graph, loss: Graph, frozen: Iterable[str] = (),
                        ctx: CheckContext | None = None) -> None:
    """Backprop refuses a model in which a trainable weight could only be reached through an
    op without a gradient (unless that layer is frozen)."""
    from nndsl.training.core import trainable

    flow = gradient_flow(model, loss)
    wanted = trainable(model, frozen)
    blocked = [w for w in wanted if w in flow.blocked]
    if not blocked:
        return
    node = flow.blocked[blocked[0]]
    layers = sorted({w.rsplit(".", 1)[0] for w in blocked})
    nothing = not any(w in flow.trained for w in wanted)
    lead = "no trainable weight receives a gradient" if nothing else \
        f"{', '.join(layers)} would receive no gradient"
    raise NndslError(f"backprop cannot train this model: {lead}; {node.op} has no gradient",
                     node.span, hint=f"train it with a trainer that needs no gradient "
                     f"({', '.join(_gradient_free(ctx))}), or freeze {', '.join(layers)}")
