"""The state of one import: the ONNX graph being read and the nndsl graph being built.

Rules (nndsl/importer/rules.py and its neighbours) read ONNX nodes through `Importer` and create
nndsl nodes with `emit`, which goes through the same `GraphBuilder` as the front end: the op's
shape rule types the node and its weight rule declares the weights, whose arrays the import
keeps under the names nndsl gives them (`<label>.<param>`).
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import onnx

from nndsl import ops
from nndsl.builder import GraphBuilder
from nndsl.errors import NndslError
from nndsl.importer.graph import Filled, OnnxView, attrs, describe, node_error
from nndsl.ir import NUMPY_DTYPE

Rule = Callable[["Importer", onnx.NodeProto], None]
RULES: dict[str, Rule] = {}  # ONNX op type -> the rule that imports a node of that type

# words a spec cannot use as a name: statements, booleans, the block input
RESERVED = {"input", "output", "model", "train", "block", "import", "defaults", "repeat",
            "target", "phase", "true", "false", "in", "none"}


def rule(*op_types: str) -> Callable[[Rule], Rule]:
    """Register the importer of ONNX `op_types` (one function may handle several)."""

    def register(fn: Rule) -> Rule:
        for op_type in op_types:
            if op_type in RULES:
                raise ValueError(f"ONNX op {op_type} has two import rules")
            RULES[op_type] = fn
        return fn

    return register


def identifier(text: str, fallback: str) -> str:
    """`text` as an nndsl name: runs of other characters become '_'; `fallback` if nothing is
    left or it would read as a keyword."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_")
    if not name or name.lower() in RESERVED or keyword.iskeyword(name):
        return fallback
    return name if not name[0].isdigit() else f"{fallback}_{name}"


def _stem(initializer: str) -> str | None:
    """`fc1` of `fc1.weight`; None for names an exporter made up (`onnx::LSTM_106`)."""
    if "." not in initializer or "::" in initializer:
        return None
    return initializer.rsplit(".", 1)[0]


class Importer:
    """What rules see: ONNX values mapped to nndsl values, constants, and the builder."""

    def __init__(self, model: onnx.ModelProto, builder: GraphBuilder) -> None:
        self.builder = builder
        self.values: dict[str, str] = {}  # ONNX value -> nndsl value
        self.view = OnnxView(model, self._ir_type)
        self.consumed: set[int] = set()  # ids of ONNX nodes a rule has taken
        self.arrays: dict[str, np.ndarray] = {}  # nndsl weight name -> trained array
        self.owner: dict[str, str] = {}  # ONNX initializer -> nndsl weight reading it
        self.time_major: set[str] = set()  # ONNX sequences [time, batch, F] between stacked
        # recurrent nodes, held as the batch-first nndsl value of the layer that made them
        self.short_names: dict[str, str | None] = {}  # last path part -> its stem if unique
        for name in self.view.initializers:
            stem = _stem(name)
            if stem is not None:
                short = stem.rsplit("/", 1)[-1]
                self.short_names[short] = stem if self.short_names.get(short, stem) == stem \
                    else None

    def _ir_type(self, value: str) -> Any:
        mapped = self.values.get(value)
        return None if mapped is None else self.builder.types.get(mapped)

    # ---- reading ---------------------------------------------------------------------------
    def tensor(self, value: str, node: onnx.NodeProto) -> str:
        """The nndsl value for ONNX tensor `value` (computed from the model's inputs)."""
        if value in self.values:
            return self.values[value]
        if self.view.is_const(value):
            raise node_error(node, f"input '{value}' is a constant where nndsl needs a tensor "
                             "computed from the model's inputs",
                             hint="nndsl layers own their constants as weights: this pattern "
                             "has no nndsl layer")
        producer = self.view.producer.get(value)
        where = describe(producer) if producer is not None else f"'{value}'"
        raise node_error(node, f"its input comes from {where}, which was not imported")

    def array(self, value: str, node: onnx.NodeProto, role: str) -> np.ndarray:
        """The constant array behind `value` (a weight, a shape, an epsilon)."""
        const = self.view.const(value)
        if const is None or isinstance(const, Filled) or const.dtype == object:
            raise node_error(node, f"its {role} must be a constant (an initializer)",
                             received=f"'{value}', computed when the model runs")
        return const

    def attr(self, node: onnx.NodeProto, key: str, default: Any = None) -> Any:
        return attrs(node).get(key, default)

    def take(self, *nodes: onnx.NodeProto) -> None:
        """Mark nodes as imported by the current rule (the walk skips them)."""
        self.consumed.update(id(n) for n in nodes)

    def alias(self, onnx_value: str, value: str) -> None:
        """`onnx_value` is the same tensor as nndsl `value` (Identity, inference Dropout)."""
        self.values[onnx_value] = value

    # ---- building ----------------------------------------------------------------------------
    def label_for(self, initializer: str, op: str) -> str | None:
        """A readable layer label from a weight's ONNX name (`fc1.weight` -> `fc1`; a block
        path `block_1/dense_1.weight` -> `dense_1` unless another block has a `dense_1` too)."""
        stem = _stem(initializer)
        if stem is None:
            return None
        short = stem.rsplit("/", 1)[-1]
        label = identifier(short if self.short_names.get(short) == stem else stem, op)
        free = label not in self.builder.labels and label not in self.builder.types
        return label if free and label not in ops.OPS else None

    def emit(self, node: onnx.NodeProto, op: str, inputs: list[str], params: Mapping[str, Any],
             out: str, *, weights: Mapping[str, np.ndarray] | None = None,
             label: str | None = None, sources: Mapping[str, str] | None = None) -> str:
        """Create nndsl op `op` for ONNX value `out`; `weights` are its arrays by op parameter,
        `sources` the ONNX initializers they come from (so a shared initializer is tied)."""
        opdef = ops.get(op)
        try:
            value = self.builder.add(opdef, inputs, dict(params), label=label)
        except NndslError as e:
            raise node_error(node, e.message, expected=e.expected, received=e.received,
                             hint=e.hint) from None
        created = self.builder.nodes[-1]
        for param, wname in created.weights:
            self._keep(node, wname, param, (weights or {}).get(param))
            if sources and param in sources:
                self.owner.setdefault(sources[param], wname)
        self.values[out] = value
        return value

    def _keep(self, node: onnx.NodeProto, wname: str, param: str, array: Any) -> None:
        decl = self.builder.weights.get(wname)
        if decl is None or wname in self.arrays:  # a tied or shared weight: kept where declared
            return
        if array is None:
            raise node_error(node, f"no value for the layer's '{param}'")
        array = np.asarray(array)
        if array.shape != decl.shape:
            raise node_error(node, f"'{param}' has shape {list(array.shape)}, the nndsl layer "
                             f"declares {list(decl.shape)}")
        self.arrays[wname] = array.astype(NUMPY_DTYPE[decl.dtype])
