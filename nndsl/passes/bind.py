"""Binding call arguments to an op's signature: positional order, keywords, type checks.

Arguments arrive as AST expressions; each is checked against the parameter's annotation and
turned into a plain value (int, float, bool, str, tuple, or a resolved `Call`). Errors name the
parameter, say what was expected and what was received, and suggest the nearest name.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args, get_origin

from nndsl.errors import NndslError, Span, did_you_mean
from nndsl.grammar import ast
from nndsl.ir import Call
from nndsl.ops import registry
from nndsl.ops.registry import OpDef, Param, _meta, describe

BOOLS = {"true": True, "false": False}


@dataclass
class Consts:
    """Names bound to constant expressions (block parameters), each with its own scope."""

    values: dict[str, tuple[ast.Expr, Consts | None]] = field(default_factory=dict)

    def lookup(self, expr: ast.Expr) -> tuple[ast.Expr, Consts | None]:
        """Follow block-parameter names to the expression the caller wrote."""
        scope: Consts | None = self
        while isinstance(expr, ast.Name) and scope is not None and expr.id in scope.values:
            expr, scope = scope.values[expr.id]
        return expr, scope


class Mismatch(Exception):
    """A value does not fit an annotation (turned into a positioned error by the caller)."""


def show(expr: ast.Expr) -> str:
    """How the user wrote a value, for 'received' lines."""
    match expr:
        case ast.Number(value=v):
            return repr(v)
        case ast.String(value=v):
            return f'"{v}"'
        case ast.Name(id=i):
            return i
        case ast.ListLit(items=items):
            return "[" + ", ".join(show(i) for i in items) + "]"
        case ast.CallExpr(name=n):
            return f"{n}(...)"
        case ast.Neg(operand=o):
            return "-" + show(o)
    return "an expression"


def literal(expr: ast.Expr, consts: Consts | None = None) -> Any:
    """A constant written in the spec as a plain Python value (numbers, strings, lists)."""
    if consts is not None:
        expr, consts = consts.lookup(expr)
    match expr:
        case ast.Number(value=v) | ast.String(value=v):
            return v
        case ast.Neg(operand=o):
            inner = literal(o, consts)
            if isinstance(inner, int | float) and not isinstance(inner, bool):
                return -inner
        case ast.Name(id=i) if i in BOOLS:
            return BOOLS[i]
        case ast.Name(id=i):
            return i
        case ast.ListLit(items=items):
            return tuple(literal(i, consts) for i in items)
    raise Mismatch


def _is_union(ann: Any) -> bool:
    return get_origin(ann) in (typing.Union, types.UnionType)


def coerce(expr: ast.Expr, ann: Any, consts: Consts | None) -> Any:
    """Check `expr` against annotation `ann` and return its value; raise Mismatch if it fails."""
    expr, consts = consts.lookup(expr) if consts is not None else (expr, None)
    if ann is Any or ann is object:
        return literal(expr, consts)
    if _is_union(ann):
        for option in get_args(ann):
            if option is type(None):
                continue
            try:
                return coerce(expr, option, consts)
            except Mismatch:
                continue
        raise Mismatch
    origin = get_origin(ann)
    if origin is Annotated:
        return _coerce_annotated(expr, ann, consts)
    if origin is Literal:
        value = literal(expr, consts)
        if value in get_args(ann) and not isinstance(value, bool):
            return value
        raise Mismatch
    if origin is tuple:
        if not isinstance(expr, ast.ListLit):
            raise Mismatch
        element = get_args(ann)[0]
        return tuple(coerce(item, element, consts) for item in expr.items)
    return _coerce_scalar(expr, ann, consts)


def _coerce_scalar(expr: ast.Expr, ann: Any, consts: Consts | None) -> Any:
    value = literal(expr, consts)
    if ann is bool:
        if isinstance(value, bool):
            return value
    elif ann is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif ann is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif ann is str:
        if isinstance(value, str) and not (isinstance(expr, ast.Name) and expr.id in BOOLS):
            return value
    raise Mismatch


def _coerce_annotated(expr: ast.Expr, ann: Any, consts: Consts | None) -> Any:
    base, meta = get_args(ann)[0], ann.__metadata__[0]
    if meta in ("label", "model"):
        if isinstance(expr, ast.Name) and expr.id not in BOOLS:
            return expr.id
        raise Mismatch
    if meta == "weight":
        return literal(expr, consts)
    if base is str:  # the name of an op of kind `meta`, e.g. activation=tanh
        if not isinstance(expr, ast.Name):
            raise Mismatch
        registry.get(expr.id, meta, expr.span)
        return expr.id
    if isinstance(expr, ast.Name) and expr.id not in BOOLS:
        return resolve_call(expr.id, (), (), meta, expr.span, consts)
    if isinstance(expr, ast.CallExpr):
        return resolve_call(expr.name, expr.args, expr.kwargs, meta, expr.span, consts,
                            expr.name_span)
    raise Mismatch


def resolve_call(name: str, args: Sequence[ast.Expr], kwargs: Sequence[ast.Keyword],
                 kind: str | tuple[str, ...], span: Span, consts: Consts | None = None,
                 name_span: Span | None = None) -> Call:
    """A configuration call such as `normal(0, 1)` or `adam(lr=1e-3)`, checked and resolved."""
    opdef = registry.get(name, kind, name_span or span)
    bound = bind_params(opdef, opdef.params, args, kwargs, span, consts)
    return Call(name, tuple(bound.items()), span)


def bind_params(opdef: OpDef, params: Sequence[Param], args: Sequence[ast.Expr],
                kwargs: Sequence[ast.Keyword], span: Span, consts: Consts | None,
                extra: Mapping[str, Any] | None = None,
                positional: Sequence[str] | None = None) -> dict[str, Any]:
    """Match arguments to `params` (plus `extra` name -> annotation) and check every value.

    Returns the values in signature order with defaults filled in (extras only when given).
    """
    extra = dict(extra or {})
    by_name = {p.name: p for p in params}
    order = list(positional if positional is not None else [p.name for p in params])
    open_param = next((p for p in params if _meta(p.annotation) == "names"), None)
    if open_param is not None:  # NAME="value" pairs of free names, e.g. npz(path, x="X")
        order = [n for n in order if n != open_param.name]
        pairs = tuple((kw.name, _checked(opdef, kw.name, str, kw.value, kw.span, consts))
                      for kw in kwargs if kw.name not in by_name or kw.name == open_param.name)
        kwargs = [kw for kw in kwargs if kw.name in by_name and kw.name != open_param.name]
        extra_pairs = {open_param.name: pairs}
    else:
        extra_pairs = {}
    given: dict[str, tuple[ast.Expr, Span]] = {}
    if len(args) > len(order):
        surplus = args[len(order)]
        takes = ", ".join(order) if order else "no arguments by position"
        raise NndslError(
            f"{opdef.name} takes {len(order)} positional argument{'s' * (len(order) != 1)}, "
            f"got {len(args)}", surplus.span, expected=takes, received=show(surplus),
            hint="give the others by name, e.g. `name=value`" if order else None)
    for pname, arg in zip(order, args, strict=False):
        given[pname] = (arg, arg.span)
    for kw in kwargs:
        if kw.name not in by_name and kw.name not in extra:
            known = [*by_name, *extra]
            raise NndslError(
                f"{opdef.name} has no parameter '{kw.name}'", kw.span,
                hint=did_you_mean(kw.name, known)
                or (f"parameters: {', '.join(known)}" if known else f"{opdef.name} takes none"))
        if kw.name in given:
            raise NndslError(f"{opdef.name} got '{kw.name}' twice", kw.span,
                             hint="it was already given by position" if kw.name in order else None)
        given[kw.name] = (kw.value, kw.span)
    out: dict[str, Any] = {}
    for p in params:
        if p.name in extra_pairs:
            out[p.name] = extra_pairs[p.name]
        elif p.name in given:
            out[p.name] = _checked(opdef, p.name, p.annotation, *given[p.name], consts)
        elif p.required:
            raise NndslError(f"{opdef.name} needs '{p.name}'", span,
                             expected=f"{p.name}: {describe(p.annotation)}",
                             hint=f"write {opdef.name}({p.name}=...)")
        else:
            out[p.name] = p.default
    for pname, ann in extra.items():
        if pname in given:
            out[pname] = _checked(opdef, pname, ann, *given[pname], consts)
    return out


def _checked(opdef: OpDef, pname: str, ann: Any, expr: ast.Expr, span: Span,
             consts: Consts | None) -> Any:
    try:
        return coerce(expr, ann, consts)
    except Mismatch:
        real, _ = consts.lookup(expr) if consts is not None else (expr, None)
        raise NndslError(f"{opdef.name}: '{pname}' must be {describe(ann)}", expr.span,
                         expected=describe(ann), received=show(real)) from None
