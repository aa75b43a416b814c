"""The op registry: one decorated function per op, keyed by name, never an `if op == ...` chain.

An op's user-facing parameters are the keyword-only arguments of its function, so the checker
reads the signature and there is no second schema to keep in sync. Annotations say what a
parameter accepts; `Annotated[..., "<kind>"]` names another registry kind (an initializer, an
activation, ...), `Weight` marks a tensor the layer owns.

Tensor kinds (activation, layer, loss, metric) take `(P, *inputs, **params)`: the positional
parameters after `P` are the op's tensor inputs. Other kinds take framework-provided positional
context first (documented per kind in their modules) and user parameters as keywords.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args, get_origin

from nndsl.errors import NndslError, Span, did_you_mean
from nndsl.ir import Call, TensorType

KINDS = (
    "activation", "layer", "loss", "metric", "initializer", "regularizer", "constraint",
    "optimizer", "schedule", "clip", "noise", "early_stop", "data", "trainer",
)
TENSOR_KINDS = frozenset({"activation", "layer", "loss", "metric"})
LAYER_LIKE = frozenset({"activation", "layer"})

Weight = Annotated[Any, "weight"]  # a tensor owned by the layer (kernel, bias, ...)
Label = Annotated[str, "label"]  # a reference to a labelled layer (`tied=enc`)
ModelName = Annotated[str, "model"]  # a model of the spec (`adversarial(generator=G)`)
Init = Annotated[Call, "initializer"]
Regularizer = Annotated[Call, "regularizer"]
Constraint = Annotated[Call, "constraint"]
ActivationName = Annotated[str, "activation"]
REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True, slots=True)
class WeightSpec:
    """What a layer owns: shape, role (weight/bias/buffer/other), default init and fans."""

    shape: tuple[int, ...]
    role: str = "weight"
    init: Call | None = None  # None: the role's default (layer init / bias_init / model defaults)
    fan_in: int = 1
    fan_out: int = 1
    trainable: bool = True


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    annotation: Any
    default: Any = REQUIRED

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def same_type(x: TensorType, *_: TensorType, **__: Any) -> TensorType:
    """Default shape rule: the output looks like the first input."""
    return x


def scalar_type(*_: TensorType, **__: Any) -> TensorType:
    """Shape rule of losses and metrics: a scalar."""
    return TensorType((), "f32")


@dataclass(frozen=True)
class OpDef:
    """Everything every consumer needs to know about one op."""

    name: str
    kind: str
    compute: Callable[..., Any]
    infer: Callable[..., TensorType] | None = None
    weights: Callable[..., dict[str, WeightSpec]] | None = None
    samples: tuple[tuple[tuple[int, ...], ...], ...] = (((2, 8),),)
    sample_params: dict[str, Any] = field(default_factory=dict)
    sample_inputs: Callable[[Any], tuple[Any, ...]] | None = None  # rng -> inputs (over samples)
    native: dict[str, Callable[..., Any]] = field(default_factory=dict)
    # regularizers: d penalty / d w in closed form, fn(P, w, **params); the torch engine adds it
    # to the loss gradient outside autograd (tests/test_regularizers.py checks it)
    grad: Callable[..., Any] | None = None
    training_only: bool = False  # vanishes from inference graphs (dropout, noise)
    differentiable: bool = True
    # the backward pass is a surrogate the op documents (a spiking layer's smooth stand-in for
    # the derivative of a hard spike), not the derivative of the forward value: it trains, but
    # finite differences cannot check it
    surrogate: bool = False
    # (Label parameter, the ops it may name): the op owns no weights but reads that layer's as
    # its Weight parameters of the same names (a hopfield layer's energy); see builder.borrow
    borrows: tuple[str, tuple[str, ...]] | None = None
    positional: tuple[str, ...] | None = None  # params allowed by position; default: all hypers
    inputs: tuple[str, ...] = ()
    variadic: bool = False
    params: tuple[Param, ...] = ()
    weight_params: tuple[str, ...] = ()
    integer_inputs: bool = False  # may take i64 tensors (lookups, moves); others compute on floats
    # (input position, exclusive bound) when that input holds integer indices, e.g. class labels
    # or token ids: data fed there is range-checked before training (a bad id would crash a
    # backend's gather, or be silently wrapped around by another).
    index_bound: Callable[..., tuple[int, int] | None] | None = None

    @property
    def doc(self) -> str:
        return inspect.cleandoc(self.compute.__doc__ or "").split("\n\n")[0]

    @property
    def hyper(self) -> dict[str, Param]:
        return {p.name: p for p in self.params}

    @property
    def positional_names(self) -> tuple[str, ...]:
        if self.positional is not None:
            return self.positional
        return tuple(p.name for p in self.params)

    def function_for(self, P: Any) -> Callable[..., Any]:
        """What computes this op on primitive table `P`: its native form for P's backend if it
        registers one, else the decomposition."""
        return self.native.get(getattr(P, "backend", ""), self.compute)

    def output_type(self, *inputs: TensorType, **params: Any) -> TensorType:
        if self.kind in LAYER_LIKE and not self.integer_inputs:
            _need_floats(self.name, inputs)
        rule = self.infer or (scalar_type if self.kind in ("loss", "metric") else same_type)
        return rule(*inputs, **params)


def _need_floats(name: str, inputs: tuple[TensorType, ...]) -> None:
    """Layers and activations compute on floats; an i64 tensor holds indices (NumPy would quietly
    promote it, ONNX has no integer kernel for most ops, and `/` would truncate there)."""
    index = next((t for t in inputs if t.dtype == "i64"), None)
    if index is not None:
        raise NndslError(f"{name} computes on floating-point values, got integer indices {index}",
                         expected="an f32 or f64 tensor", received=str(index),
                         hint="i64 values are indices: look them up with `embedding(vocab, dim)`")


TABLES: dict[str, dict[str, OpDef]] = {}  # namespace -> name -> op
OPS: dict[str, OpDef] = TABLES.setdefault("tensor", {})  # the ops graph nodes can apply
# Kinds registered by packages that themselves build on the ops (trainers use the training
# session, which uses the ops): imported the first time their kind is looked up.
PROVIDERS: dict[str, str] = {"trainer": "nndsl.training.trainers"}


def _provide(*kinds: str) -> None:
    for kind in kinds or tuple(PROVIDERS):
        module = PROVIDERS.pop(kind, None)
        if module is not None:
            import importlib

            importlib.import_module(module)


def namespace(kind: str) -> str:
    """Tensor kinds share one namespace (they appear in the same places in a spec); every
    other kind has its own, so `step` can be both an activation and a schedule."""
    return "tensor" if kind in TENSOR_KINDS else kind


def table(kind: str) -> dict[str, OpDef]:
    _provide(kind)
    return TABLES.setdefault(namespace(kind), {})


def all_ops() -> list[OpDef]:
    """Every registered op of every kind."""
    _provide()
    return [d for t in TABLES.values() for d in t.values()]


def _read_signature(fn: Callable[..., Any], kind: str) -> dict[str, Any]:
    hints = typing.get_type_hints(fn, include_extras=True)
    sig = inspect.signature(fn)
    inputs: list[str] = []
    params: list[Param] = []
    weights: list[str] = []
    variadic = False
    positional = list(sig.parameters.values())
    if kind in TENSOR_KINDS:
        positional = positional[1:]  # skip P
    for p in positional:
        ann = hints.get(p.name, Any)
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            variadic = True
            inputs.append(p.name)
        elif p.kind is inspect.Parameter.KEYWORD_ONLY:
            if _meta(ann) == "weight":
                weights.append(p.name)
            else:
                params.append(Param(p.name, ann, p.default))
        elif p.kind is inspect.Parameter.VAR_KEYWORD:
            raise TypeError(f"op {fn.__name__}: **kwargs would hide parameters from the checker")
        elif kind in TENSOR_KINDS:
            inputs.append(p.name)
    return dict(inputs=tuple(inputs), params=tuple(params), weight_params=tuple(weights),
                variadic=variadic)


def op(name: str, kind: str, **fields: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `fn` as op `name` of `kind`; a second registration of a name is an error."""
    if kind not in KINDS:
        raise ValueError(f"unknown op kind {kind!r}")

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        target = table(kind)
        if name in target:
            raise ValueError(f"op {name!r} is defined twice")
        target[name] = OpDef(name, kind, fn, **fields, **_read_signature(fn, kind))
        return fn

    return register


def names(*kinds: str) -> list[str]:
    """Registered names of the given kinds (all kinds when none is given)."""
    return sorted({d.name for d in all_ops() if not kinds or d.kind in kinds})


def _article(kind: str) -> str:
    return "an" if kind[0] in "aeiou" else "a"


def get(name: str, kinds: tuple[str, ...] | str | None = None, span: Span | None = None) -> OpDef:
    """The op called `name`, of one of `kinds`; a positioned error with a hint otherwise."""
    if kinds is None and name in OPS:  # the interpreter's lookup, per node and step: be quick
        return OPS[name]
    if isinstance(kinds, str):
        kinds = (kinds,)
    _provide(*(kinds or ()))
    spaces = {namespace(k) for k in kinds} if kinds else {"tensor"}
    opdef = next((TABLES[s][name] for s in sorted(spaces) if name in TABLES.get(s, {})), None)
    if opdef is None:  # a known name of another kind: say which
        opdef = next((d for d in all_ops() if d.name == name), None)
    wanted = " or ".join(kinds) if kinds else "op"
    if kinds and set(kinds) >= LAYER_LIKE:
        wanted = "layer or activation"
    if opdef is None:
        hint = did_you_mean(name, names(*(kinds or ()))) or did_you_mean(name, names())
        if hint is None and kinds:
            hint = f"known {wanted}s: " + ", ".join(names(*kinds)[:12])
            hint += ", ..." if len(names(*kinds)) > 12 else ""
        raise NndslError(f"unknown {wanted} '{name}'", span, hint=hint)
    if kinds and opdef.kind not in kinds:
        raise NndslError(
            f"'{name}' is {_article(opdef.kind)} {opdef.kind}, not {_article(wanted)} {wanted}",
            span, hint=did_you_mean(name, names(*kinds)),
        )
    return opdef


def _meta(annotation: Any) -> str | None:
    if get_origin(annotation) is Annotated:
        return next((m for m in annotation.__metadata__ if isinstance(m, str)), None)
    return None


def describe(annotation: Any) -> str:
    """A reader-friendly name for a parameter annotation (used in errors and docs)."""
    meta = _meta(annotation)
    if meta == "label":
        return "a layer label"
    if meta == "model":
        return "a model name"
    if meta == "names":
        return 'NAME="value" pairs'

    if meta is not None:
        return f"{_article(meta)} {meta}"
    origin = get_origin(annotation)
    if origin is Literal:
        return " | ".join(str(a) for a in get_args(annotation))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(describe(a) for a in get_args(annotation) if a is not type(None))
    if origin is tuple:
        item = describe(get_args(annotation)[0])
        return "a list of " + item.removeprefix("an ").removeprefix("a ") + "s"
    if origin is list:
        return "a list"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a name",
            Any: "a value"}.get(annotation, getattr(annotation, "__name__", str(annotation)))


@dataclass(frozen=True, slots=True)
class WithUpdates:
    """What a stateful layer returns in training mode: its output and new buffer values.

    `updates` maps the op's weight parameter names (e.g. `running_mean`) to their new arrays;
    the interpreter reports them under the weights' global names.
    """

    value: Any
    updates: dict[str, Any]


def register_natives(backend: str, forms: dict[str | tuple[str, str], Callable[..., Any]]) -> None:
    """A backend registers its native forms of ops (as JAX registers lowerings): op name ->
    function with the op's signature; ops of a kind outside the tensor namespace are keyed
    (kind, name), e.g. ("optimizer", "adam"). The op catalog never names a backend."""
    for key, fn in forms.items():
        kind, name = key if isinstance(key, tuple) else ("activation", key)
        opdef = table(kind).get(name)
        if opdef is None:
            raise ValueError(f"the {backend} backend has a native form of unknown {kind} {name!r}")
        if backend in opdef.native and opdef.native[backend] is not fn:
            raise ValueError(f"op {name!r} has two native {backend} forms")
        opdef.native[backend] = fn
