"""Step plans: a graph (and its loss) compiled once per backend into straight-line calls.

The interpreter (nndsl/interpreter.py) is the reference: for every node it looks the op up in
the registry, picks the backend's native or the decomposition, and builds the keyword
arguments from the node's parameters and weights. A training step runs the same graph
thousands of times, so a plan does that once: each step is a list of resolved functions with
their input names, fixed keyword arguments and weight slots; the loss graph's inputs are
resolved to the model's values, the targets or the weights before the first step.

A plan calls the same functions with the same arguments in the same order as the interpreter,
so its values are the interpreter's bit for bit (tests/test_plan.py checks every spec that
trains, node by node).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nndsl import ops
from nndsl.errors import ExecutionError, NndslError
from nndsl.interpreter import RunResult
from nndsl.ir import Graph, Node
from nndsl.ops.registry import WithUpdates


@dataclass(frozen=True)
class Call:
    """One node, resolved: fn(P, *env[inputs], **params, **{param: weights[name]})."""

    node: Node
    fn: Callable[..., Any]
    inputs: tuple[str, ...]
    params: dict[str, Any]  # passed as **params: the callee gets its own copy
    weights: tuple[tuple[str, str], ...]


class Plan:
    """One graph's nodes resolved for one backend's tables."""

    def __init__(self, graph: Graph, backend_P: Any, needs: set[str] | None = None) -> None:
        self.graph = graph
        self.calls = [Call(n, ops.get(n.op, span=n.span).function_for(backend_P), n.inputs,
                           dict(n.params), tuple(n.weights)) for n in graph.nodes]
        if needs is not None:
            self.calls = _trimmed(self.calls, needs)

    def run(self, P: Any, feeds: Mapping[str, Any], weights: Mapping[str, Any]) -> RunResult:
        """The interpreter's `run`, without its per-node lookups."""
        result = RunResult(dict(feeds))
        env, updates = result.env, result.updates
        for call in self.calls:
            kwargs = call.params
            if call.weights:
                kwargs = {**kwargs, **{param: weights[w] for param, w in call.weights}}
            try:
                value = call.fn(P, *[env[name] for name in call.inputs], **kwargs)
            except NndslError:
                raise
            except Exception as e:  # a backend failure: at the user's line, with the cause
                raise ExecutionError(f"{call.node.op} failed: {e}", call.node.span) from e
            if isinstance(value, WithUpdates):
                wnames = dict(call.weights)
                updates.update({wnames[k]: v for k, v in value.updates.items() if k in wnames})
                value = value.value
            env[call.node.name] = value
        return result


def _trimmed(calls: list[Call], needs: set[str]) -> list[Call]:
    """`calls` without the trailing ones whose values nothing in `needs` reads (a classifier's
    softmax output when the loss reads its logits). Only trailing calls, and only those that
    hold no weights, go: an earlier call's random draws would shift the later calls' draws,
    and a call with weights may update them."""
    keep = len(calls)
    while keep and not calls[keep - 1].weights and calls[keep - 1].node.name not in needs:
        keep -= 1
    return calls[:keep]


class LossPlan:
    """The model, then its loss graph (core.run_loss): the loss's inputs read the model's
    values where the model computes them, else the targets in the feeds, else the weights.
    `trim`: the model's trailing values that the loss does not read are not computed (a
    training step's; its run then lacks them)."""

    def __init__(self, model: Graph, loss: Graph, backend_P: Any, trim: bool = False) -> None:
        needs = {n for n, _ in loss.inputs} if trim else None
        self.model, self.loss = Plan(model, backend_P, needs), Plan(loss, backend_P)
        self.model_inputs = [n for n, _ in model.inputs]
        computed = {*self.model_inputs, *(n.name for n in model.nodes)}
        self.from_model = [n for n, _ in loss.inputs if n in computed]
        self.from_outside = [n for n, _ in loss.inputs if n not in computed]
        self.output = loss.outputs[0]

    def run(self, P: Any, feeds: Mapping[str, Any], weights: Mapping[str, Any]
            ) -> tuple[Any, RunResult]:
        result = self.model.run(P, {n: feeds[n] for n in self.model_inputs}, weights)
        env = result.env
        loss_feeds = {n: env[n] for n in self.from_model}
        for n in self.from_outside:
            loss_feeds[n] = feeds[n] if n in feeds else weights[n]
        return self.loss.run(P, loss_feeds, weights).env[self.output], result


_PLANS: dict[tuple[int, int, str, bool], tuple[Graph, Graph, LossPlan]] = {}


def loss_plan(model: Graph, loss: Graph, P: Any, trim: bool = False) -> LossPlan:
    """The plan of (model, loss) for P's backend, compiled on first use. Keyed by identity:
    a graph is immutable, and hashing one would walk every node each step."""
    key = (id(model), id(loss), getattr(P, "backend", ""), trim)
    found = _PLANS.get(key)
    if found is None or found[0] is not model or found[1] is not loss:
        if len(_PLANS) >= 256:  # graphs made and dropped (tests, fuzzing): start again
            _PLANS.clear()
        found = _PLANS[key] = (model, loss, LossPlan(model, loss, P, trim))
    return found[2]
