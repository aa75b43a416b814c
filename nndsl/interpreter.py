"""The one evaluation loop. NumPy runs it directly, torch inside a module's forward, and the
ONNX emitter with a table whose 'arrays' are value names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nndsl import ops
from nndsl.errors import ExecutionError, NndslError
from nndsl.ir import Graph, Node
from nndsl.ops.registry import WithUpdates


@dataclass
class RunResult:
    """Every value computed (by name) and the buffer updates stateful layers asked for."""

    env: dict[str, Any]
    updates: dict[str, Any] = field(default_factory=dict)

    def outputs(self, graph: Graph) -> list[Any]:
        return [self.env[name] for name in graph.outputs]


def node_kwargs(node: Node, weights: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of an op call: hyper-parameters plus the node's weight arrays."""
    kwargs = dict(node.params)
    for param, wname in node.weights:
        kwargs[param] = weights[wname]
    return kwargs


def call_node(P: Any, node: Node, args: list[Any], weights: Mapping[str, Any]) -> Any:
    """Run one node through its op (or the backend's native override)."""
    fn = ops.get(node.op, span=node.span).function_for(P)
    return fn(P, *args, **node_kwargs(node, weights))


def run(graph: Graph, P: Any, feeds: Mapping[str, Any], weights: Mapping[str, Any]) -> RunResult:
    """Evaluate `graph` with primitive table `P`; backend failures carry the node's position."""
    result = RunResult(dict(feeds))
    env = result.env
    for node in graph.nodes:
        args = [env[name] for name in node.inputs]
        try:
            value = call_node(P, node, args, weights)
        except NndslError:
            raise
        except Exception as e:  # a backend failure: report it at the user's line, keep the cause
            raise ExecutionError(f"{node.op} failed: {e}", node.span) from e
        if isinstance(value, WithUpdates):  # kept where the node binds that name: a
            wnames = dict(node.weights)  # recurrent layer's final state only while truncated
            result.updates.update({wnames[k]: v for k, v in value.updates.items()
                                   if k in wnames})
            value = value.value
        env[node.name] = value
    return result
