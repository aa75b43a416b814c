"""IR invariants, checked after lowering (and after every pass in the tests)."""

from __future__ import annotations

from nndsl import ops
from nndsl.errors import NndslError
from nndsl.ir import Graph


def verify(graph: Graph) -> Graph:
    """Each value defined once, used after its definition, typed; ops and weights exist."""
    defined = {name for name, _ in graph.inputs}
    if len(defined) != len(graph.inputs):
        raise NndslError(f"model '{graph.name}': an input is declared twice", graph.span)
    weights = {w.name for w in graph.weights}
    if len(weights) != len(graph.weights):
        raise NndslError(f"model '{graph.name}': a weight is declared twice", graph.span)
    for node in graph.nodes:
        if node.op not in ops.OPS:
            raise NndslError(f"internal: unknown op '{node.op}'", node.span)
        missing = [i for i in node.inputs if i not in defined]
        if missing:
            raise NndslError(f"internal: '{node.name}' uses {missing} before definition",
                             node.span)
        if node.name in defined:
            raise NndslError(f"internal: value '{node.name}' is defined twice", node.span)
        if node.type is None:
            raise NndslError(f"internal: '{node.name}' has no type", node.span)
        unknown = [w for _, w in node.weights if w not in weights]
        if unknown:
            raise NndslError(f"internal: '{node.name}' uses undeclared weights {unknown}",
                             node.span)
        defined.add(node.name)
    for name in graph.outputs:
        if name not in defined:
            raise NndslError(f"internal: output '{name}' is never defined", graph.span)
    return graph
