"""Multi-head attention read back from nndsl's export (opset 17 has no attention operator).

The exporter writes, for queries, keys and values, a projection (MatMul by Wᵀ, Add b) split into
heads (Reshape [0, 0, heads, −1], Transpose (0, 2, 1, 3)); then q·kᵀ (Transpose (0, 1, 3, 2),
MatMul), Div by √(d/heads), Softmax, ·v, the heads joined (Transpose, Reshape [0, 0, −1]) and the
output projection. The match starts at the query projection, the first of these nodes. Masks and
causal=true (Where nodes between Div and Softmax) are not matched.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx

from nndsl.importer.context import Importer
from nndsl.importer.patterns import _chain, _ints, _other
from nndsl.importer.rules import bias_after, source_name


def _perm(imp: Importer, node: onnx.NodeProto | None, perm: list[int]) -> bool:
    return node is not None and node.op_type == "Transpose" and \
        list(imp.attr(node, "perm", [])) == perm


def _heads_of(imp: Importer, value: str) -> tuple[int, onnx.NodeProto, onnx.NodeProto] | None:
    """(heads, Reshape, Transpose) splitting projection `value` into heads."""
    nodes = _chain(imp, value, ("Reshape", "Transpose"))
    if nodes is None or not _perm(imp, nodes[1], [0, 2, 1, 3]):
        return None
    target = _ints(imp, nodes[0].input[1])
    if target is None or len(target) != 4 or target[:2] != [0, 0] or target[3] != -1:
        return None
    return target[2], nodes[0], nodes[1]


def _projection(imp: Importer, split: str) -> dict[str, Any] | None:
    """The projection behind the head-split value `split`: source, W, b and its nodes."""
    transpose = imp.view.producer.get(split)
    reshape = imp.view.producer.get(transpose.input[0]) if transpose is not None else None
    add = imp.view.producer.get(reshape.input[0]) if reshape is not None else None
    if add is None or add.op_type != "Add":
        return None
    matmul = next((imp.view.producer.get(v) for v in add.input
                   if (p := imp.view.producer.get(v)) is not None and p.op_type == "MatMul"),
                  None)
    if matmul is None or not imp.view.is_const(matmul.input[1]):
        return None
    bias = imp.view.const(_other(add, matmul.output[0]))
    return {"source": matmul.input[0], "w": imp.array(matmul.input[1], matmul, "weight").T,
            "b": bias, "nodes": [matmul, add, reshape, transpose],
            "name": source_name(imp, matmul.input[1])}


def mha_after(imp: Importer, node: onnx.NodeProto, w: np.ndarray, out: str,
              extra: list[onnx.NodeProto]) -> bool:
    """Whether the dense MatMul `node` (+ `extra`) is the query projection of an attention."""
    split = _heads_of(imp, out)
    if split is None or not extra:
        return False
    heads, *q_split = split
    scores = imp.view.only_user(q_split[1].output[0])
    if scores is None or scores.op_type != "MatMul" or scores.input[0] != q_split[1].output[0]:
        return False
    keys_t = imp.view.producer.get(scores.input[1])
    tail = _chain(imp, scores.output[0], ("Div", "Softmax", "MatMul", "Transpose", "Reshape",
                                          "MatMul"))
    if not _perm(imp, keys_t, [0, 1, 3, 2]) or tail is None:
        return False
    div, softmax, context, join, flat, out_mm = tail
    k, v = _projection(imp, keys_t.input[0]), _projection(imp, context.input[1])
    scale = imp.view.const(div.input[1])
    if k is None or v is None or context.input[0] != softmax.output[0] or \
            not _perm(imp, join, [0, 2, 1, 3]) or _ints(imp, flat.input[1]) != [0, 0, -1] or \
            not isinstance(scale, np.ndarray) or not imp.view.is_const(out_mm.input[1]) or \
            not math.isclose(float(scale.ravel()[0]), math.sqrt(w.shape[1] // heads),
                             rel_tol=1e-6):
        return False
    w_out = imp.array(out_mm.input[1], out_mm, "weight").T
    b_out, result, last = bias_after(imp, out_mm.output[0], w_out.shape[0])
    q = {"source": node.input[0], "w": w.T, "b": imp.view.const(extra[0].input[1])
         if extra else None, "name": source_name(imp, node.input[1])}
    roles = {"q": q, "k": k, "v": v}
    biases = [q["b"], k["b"], v["b"], b_out]
    if any(b is None for b in biases) or not last:
        return False
    imp.take(*extra, *q_split, keys_t, scores, *k["nodes"], *v["nodes"], *tail, *last)
    sources = [q["source"]] + [r["source"] for r in (k, v)]
    inputs = sources[:1] if len(set(sources)) == 1 else \
        sources[:2] if sources[1] == sources[2] else sources
    weights = {**{f"weight_{r}": roles[r]["w"] for r in roles}, "weight_out": w_out,
               **{f"bias_{r}": np.asarray(roles[r]["b"]).reshape(-1) for r in roles},
               "bias_out": b_out}
    width = w.shape[1]
    params = {"heads": heads, "dim": None if width == w.shape[0] else width}
    imp.emit(node, "multi_head_attention", [imp.tensor(s, node) for s in inputs], params,
             result, weights=weights, label=imp.label_for(q["name"], "multi_head_attention"))
    return True
