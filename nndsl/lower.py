"""AST -> IR for models: name resolution, block expansion, defaults, desugaring, shape inference.

Shapes are inferred as each node is created, so an error is reported at the call that caused
it; a value whose definition failed is 'poisoned' (type None) and silently skipped downstream,
so one mistake gives one error while independent mistakes are all reported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nndsl import ops
from nndsl.builder import GraphBuilder, Poisoned
from nndsl.errors import ErrorSink, NndslError, Span, did_you_mean
from nndsl.grammar import ast
from nndsl.ir import DTYPES, Call, TensorType
from nndsl.ops.registry import Constraint, Init, OpDef, Regularizer
from nndsl.ops.weight_files import ARRAY_PARAMS, FILE_PARAMS
from nndsl.passes.bind import BOOLS, Consts, bind_params, literal

TENSOR_KINDS = ("activation", "layer", "loss", "metric")
LAYER_OPTIONS: dict[str, Any] = {  # accepted by every layer that owns weights
    "init": Init, "bias_init": Init, "regularize": Regularizer, "constraint": Constraint,
    "trainable": bool,
}
DEFAULT_KEYS = ("init", "bias_init", "regularize", "constraint", "weights")
DEFAULT_OPTIONS = {**LAYER_OPTIONS, "weights": Init}  # weights = from_npz(PATH): every weight
__all__ = ["ModelBuilder", "Poisoned", "Scope", "refuse_shadowing",  # Poisoned: the builder's
           "tensor_type"]
MAX_REPEAT = 10_000
MAX_BLOCK_DEPTH = 50  # blocks inside blocks: expansion recurses, so Python's stack is the bound


@dataclass
class Scope:
    """What names mean where an expression is lowered: a model body or a block expansion."""

    values: dict[str, str] = field(default_factory=dict)  # user name -> IR value name
    consts: Consts = field(default_factory=Consts)
    prefix: str = ""
    via: tuple[Span, ...] = ()
    implicit: str | None = None  # value a layer call with no input applies to (block `in`)


@dataclass
class Operand:
    """A lowered expression: an IR value (tensor) or a compile-time constant."""

    value: str | None = None
    const: Any = None

    @property
    def is_tensor(self) -> bool:
        return self.value is not None


class ModelBuilder(GraphBuilder):
    """Lowers one model (and the blocks it uses) from the AST into a typed Graph."""

    def __init__(self, name: str, blocks: Mapping[str, ast.BlockDef], sink: ErrorSink,
                 span: Span | None = None) -> None:
        super().__init__(name, span)
        self.blocks, self.sink = blocks, sink
        self.expanding: list[str] = []  # blocks being expanded, to refuse recursion

    def emit(self, opdef: OpDef, inputs: list[str], params: dict[str, Any], span: Span,
             scope: Scope, label: str | None = None, options: dict[str, Any] | None = None,
             name: str | None = None) -> str:
        """Create a node inside `scope` (a model body or a block expansion)."""
        return self.add(opdef, inputs, params, span, label=label, options=options, name=name,
                        prefix=scope.prefix, via=scope.via)

    # ------------------------------------------------------------ expressions
    def lower(self, expr: ast.Expr, scope: Scope) -> Operand:
        match expr:
            case ast.Number() | ast.String() | ast.ListLit():
                return Operand(const=literal(expr, scope.consts))
            case ast.Name(id=name):
                return self.lower_name(expr, name, scope)
            case ast.Neg(operand=inner):
                x = self.lower(inner, scope)
                if not x.is_tensor:
                    return Operand(const=-_number(x.const, expr.span))
                return Operand(self.emit(ops.get("neg"), [x.value], {}, expr.span, scope))
            case ast.BinOp(op=op, left=left, right=right):
                return self.lower_binop(op, left, right, expr.span, scope)
            case ast.CallExpr():
                return Operand(self.apply(expr, None, None, scope))
            case ast.Repeat():
                return Operand(self.apply(expr, None, None, scope))
            case ast.Chain(start=start, links=links):
                value = self.tensor(start, scope)
                for link in links:
                    value = self.apply(link.callee, value, link.label, scope, link.span)
                return Operand(value)
        raise NndslError("this expression cannot be used here", expr.span)

    def lower_name(self, expr: ast.Name, name: str, scope: Scope) -> Operand:
        if name in scope.values:
            return Operand(scope.values[name])
        if name in scope.consts.values:
            target, consts = scope.consts.values[name]
            return self.lower(target, Scope(consts=consts or Consts()))
        if name in ops.OPS and ops.OPS[name].kind in ("activation", "layer"):
            if scope.implicit is not None:
                return Operand(self.apply(expr, None, None, scope))
            raise NndslError(f"'{name}' is a layer and needs an input", expr.span,
                             hint=f"apply it with '->': `x -> {name}`")
        raise NndslError(f"unknown name '{name}'", expr.span,
                         hint=did_you_mean(name, scope.values) or _names_hint(scope))

    def tensor(self, expr: ast.Expr, scope: Scope) -> str:
        x = self.lower(expr, scope)
        if not x.is_tensor:
            raise NndslError("expected a tensor value here", expr.span,
                             received=repr(x.const), hint="start a chain with an input or a value")
        return x.value  # type: ignore[return-value]

    def lower_binop(self, op: str, left: ast.Expr, right: ast.Expr, span: Span,
                    scope: Scope) -> Operand:
        a, b = self.lower(left, scope), self.lower(right, scope)
        if not a.is_tensor and not b.is_tensor:
            return Operand(const=_fold(op, _number(a.const, left.span),
                                       _number(b.const, right.span), span))
        values = [x.value if x.is_tensor else self.constant(x.const, e.span, scope)
                  for x, e in ((a, left), (b, right))]
        return Operand(self.emit(ops.get(op), values, {}, span, scope))  # add|...|div|pow

    def constant(self, value: Any, span: Span, scope: Scope) -> str:
        return self.emit(ops.get("scalar"), [], {"value": float(_number(value, span))}, span,
                         scope)

    def is_tensor_expr(self, expr: ast.Expr, scope: Scope) -> bool:
        """Whether an argument is a tensor input (vs a hyper-parameter), without lowering it."""
        match expr:
            case ast.Name(id=name):
                if name in scope.consts.values:
                    target, consts = scope.consts.values[name]
                    return self.is_tensor_expr(target, Scope(consts=consts or Consts()))
                return name in scope.values
            case ast.Chain() | ast.Repeat():
                return True
            case ast.Neg(operand=o):
                return self.is_tensor_expr(o, scope)
            case ast.BinOp(left=a, right=b):
                return self.is_tensor_expr(a, scope) or self.is_tensor_expr(b, scope)
            case ast.CallExpr(name=name):
                return name in self.blocks or (
                    name in ops.OPS and ops.OPS[name].kind in TENSOR_KINDS)
        return False

    # ------------------------------------------------------------ applying layers and blocks
    def apply(self, callee: ast.Expr, piped: str | None, label: str | None, scope: Scope,
              span: Span | None = None) -> str:
        """Apply a layer, block or repeat to `piped` (or to its own tensor arguments)."""
        if isinstance(callee, ast.Repeat):
            return self.repeat(callee, piped, scope)
        if isinstance(callee, ast.Name):
            callee = ast.CallExpr(callee.span, callee.id, (), (), callee.span)
        assert isinstance(callee, ast.CallExpr)
        full_label = scope.prefix + label if label else None
        if callee.name in self.blocks:
            return self.expand(self.blocks[callee.name], callee, piped, full_label, scope)
        opdef = ops.get(callee.name, TENSOR_KINDS, callee.name_span)
        args = list(callee.args)
        inputs = [piped] if piped is not None else []
        while args and self.is_tensor_expr(args[0], scope) and (
                opdef.variadic or len(inputs) < len(opdef.inputs)):
            inputs.append(self.tensor(args.pop(0), scope))
        if args and (opdef.variadic or len(inputs) < len(opdef.inputs)):
            _not_an_unknown_value(args[0], scope)
        if not inputs and opdef.inputs and scope.implicit is not None:
            inputs.append(scope.implicit)
        extra = dict(LAYER_OPTIONS) if opdef.weights is not None else {}
        extra.update({w: Any for w in opdef.weight_params})
        bound = bind_params(opdef, opdef.params, args, callee.kwargs, callee.span,
                            scope.consts, extra, opdef.positional_names)
        options = {k: bound.pop(k) for k in list(bound) if k in extra}
        return self.emit(opdef, inputs, bound, callee.span, scope, full_label, options)

    def repeat(self, rep: ast.Repeat, piped: str | None, scope: Scope) -> str:
        count = literal(rep.count, scope.consts) if not isinstance(rep.count, ast.Chain) else None
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_REPEAT:
            raise NndslError("repeat needs a positive integer count", rep.count.span,
                             expected=f"an integer from 1 to {MAX_REPEAT:,}", received=repr(count))
        value = piped if piped is not None else scope.implicit
        if value is None:
            raise NndslError("repeat needs an input", rep.span, hint="write `x -> repeat(3) {...}`")
        base = self.fresh("repeat", scope.prefix)
        for i in range(1, count + 1):
            inner = Scope(scope.values, scope.consts, f"{base}.{i}/", scope.via, scope.implicit)
            for link in rep.body:
                label = link.label
                value = self.apply(link.callee, value, label, inner, link.span)
        return value

    def expand(self, block: ast.BlockDef, call: ast.CallExpr, piped: str | None,
               label: str | None, scope: Scope) -> str:
        """Inline a block: bind its parameters, lower its body with `in` bound to the input."""
        args = list(call.args)
        if piped is None and args and self.is_tensor_expr(args[0], scope):
            piped = self.tensor(args.pop(0), scope)
        piped = piped if piped is not None else scope.implicit
        if piped is None:
            raise NndslError(f"block '{block.name}' needs an input", call.span,
                             hint=f"apply it with '->': `x -> {block.name}(...)`")
        if block.name in self.expanding:
            raise NndslError(f"block '{block.name}' uses itself", call.span,
                             hint="blocks cannot be recursive; use repeat(N) { ... }")
        if len(self.expanding) >= MAX_BLOCK_DEPTH:
            raise NndslError(f"blocks nested more than {MAX_BLOCK_DEPTH} deep", call.span,
                             hint="use fewer levels of blocks inside blocks")
        consts = _bind_block_args(block, args, call, scope)
        prefix = (label or self.fresh(block.name, scope.prefix)) + "/"
        inner = Scope({"in": piped}, consts, prefix, (*scope.via, call.span), implicit=piped)
        self.expanding.append(block.name)
        try:
            return self.body(block.body, inner, block)
        except NndslError as e:
            raise e.with_note(f"in block '{block.name}' used here", call.span) from None
        finally:
            self.expanding.pop()

    def body(self, stmts: tuple[ast.Stmt, ...], scope: Scope, block: ast.BlockDef) -> str:
        last: str | None = None
        for stmt in stmts:
            match stmt:
                case ast.Binding(name=name, value=value):
                    refuse_shadowing(stmt, self.blocks)
                    last = self.tensor(value, scope)
                    scope.values[name] = last
                case ast.ExprStmt(value=value):
                    last = self.tensor(value, scope)
                    scope.implicit = last
                case _:
                    raise NndslError("only bindings and layer chains may appear in a block",
                                     stmt.span, hint="declare inputs and outputs in the model")
        if last is None:
            raise NndslError(f"block '{block.name}' is empty", block.span)
        return last

    # ------------------------------------------------------------ model statements
    def declare_input(self, item: ast.TypedName) -> None:
        if item.name in self.types:
            raise NndslError(f"'{item.name}' is already defined", item.span)
        try:
            ty = tensor_type(item.type)
        except NndslError:
            self.types[item.name] = None  # poisoned: later uses are skipped silently
            raise
        self.add_input(item.name, ty, item.type.span)

    def set_defaults(self, stmt: ast.Defaults) -> None:
        for setting in stmt.settings:
            if setting.name not in DEFAULT_KEYS:
                raise NndslError(f"unknown default '{setting.name}'", setting.span,
                                 hint=did_you_mean(setting.name, DEFAULT_KEYS)
                                 or f"defaults may set {', '.join(DEFAULT_KEYS)}")
            opdef = _DefaultsHolder(setting.name)
            bound = bind_params(opdef, (), (), (ast.Keyword(setting.name, setting.value,
                                setting.span),), setting.span, None,
                                {setting.name: DEFAULT_OPTIONS[setting.name]})
            if setting.name == "weights":
                _weights_file(bound["weights"], setting.span)
            self.set_default(setting.name, bound[setting.name])

@dataclass
class _DefaultsHolder:
    """Stands in for an op when binding a `defaults { ... }` entry (for error wording)."""

    key: str
    name: str = "defaults"


def refuse_shadowing(stmt: ast.Binding, blocks: Mapping[str, ast.BlockDef]) -> None:
    """A binding may not take the name of an op a chain can apply, or of a block: in
    `x -> relu` the name means the op (or block), so such a value could never be applied and
    would silently be read as the other. An error, at the binding."""
    opdef = ops.OPS.get(stmt.name)
    if opdef is not None and opdef.kind in TENSOR_KINDS:
        what = f"the {opdef.kind} '{stmt.name}'"
    elif stmt.name in blocks:
        what = f"block '{stmt.name}'"
    else:
        return
    raise NndslError(f"the binding '{stmt.name}' has the name of {what}", stmt.span,
                     hint=f"`x -> {stmt.name}` would apply {what}, not this value: pick "
                     f"another name, e.g. '{stmt.name}_out'")


def tensor_type(t: ast.TypeExpr) -> TensorType:
    dtype = t.dtype or "f32"
    if dtype not in DTYPES:
        raise NndslError(f"unknown dtype '{dtype}'", t.span, expected=" | ".join(DTYPES),
                         received=dtype, hint=did_you_mean(dtype, DTYPES))
    for d in t.dims:
        if isinstance(d, int) and d < 1:
            raise NndslError("dimensions must be positive", t.span, received=str(d))
    return TensorType(tuple(t.dims), dtype)


def _weights_file(call: Call, span: Span) -> None:
    """`defaults { weights = ... }` reads every weight from one file, by the weight's name."""
    if call.name not in FILE_PARAMS:
        raise NndslError(f"defaults `weights` reads every weight from a file, not from "
                         f"{call.name}", span, expected='weights = from_npz("file.npz")',
                         hint="to draw weights at random, set `init` and `bias_init`")
    key = ARRAY_PARAMS[call.name]
    if call.get(key):
        raise NndslError(f"defaults `weights` reads each weight's own array: leave out {key}=",
                         span, expected=f'weights = {call.name}("...")',
                         hint="each weight reads the array named after it, `<label>.<param>`")


def _bind_block_args(block: ast.BlockDef, args: list[ast.Expr], call: ast.CallExpr,
                     scope: Scope) -> Consts:
    names = [p.name for p in block.params]
    if len(args) > len(names):
        raise NndslError(f"block '{block.name}' takes {len(names)} arguments, got {len(args)}",
                         args[len(names)].span, expected=f"({', '.join(names)})")
    given = dict(zip(names, args, strict=False))
    for kw in call.kwargs:
        if kw.name not in names:
            raise NndslError(f"block '{block.name}' has no parameter '{kw.name}'", kw.span,
                             hint=did_you_mean(kw.name, names) or f"parameters: {', '.join(names)}")
        if kw.name in given:
            raise NndslError(f"block '{block.name}' got '{kw.name}' twice", kw.span)
        given[kw.name] = kw.value
    consts = Consts()
    for p in block.params:
        if p.name in given:
            consts.values[p.name] = (given[p.name], scope.consts)
        elif p.default is not None:
            consts.values[p.name] = (p.default, None)
        else:
            raise NndslError(f"block '{block.name}' needs '{p.name}'", call.span,
                             hint=f"write {block.name}({p.name}=...)")
    return consts


def _number(value: Any, span: Span) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise NndslError("arithmetic needs numbers or tensors", span, received=repr(value))
    return value


def _fold(op: str, a: float, b: float, span: Span) -> float:
    if op == "pow":
        return _power(a, b, span)
    if op == "div" and b == 0:
        raise NndslError("division by zero", span)
    try:
        value = {"add": a + b, "sub": a - b, "mul": a * b}[op] if op != "div" else a / b
    except OverflowError:  # an int too large for a float division
        value = math.inf
    if not math.isfinite(value) or (isinstance(value, int) and abs(value) >= 2**63):
        raise NndslError("this arithmetic overflows", span, received=str(value)[:24],
                         expected="a finite number (sizes and counts up to 2**63)")
    return value


def _power(a: float, b: float, span: Span) -> float:
    """a ** b folded: a real number or a positioned error, never a complex number (Python's
    (-8) ** (1/3)) and never an integer too large for int64 computed digit by digit."""
    if a == 0 and b < 0:
        raise NndslError("0 to a negative power is a division by zero", span)
    if a < 0 and not float(b).is_integer():
        raise NndslError("a negative number to a fractional power is not a real number", span,
                         received=f"({a:g}) ** {b:g}", expected="a base >= 0, or a whole exponent")
    value: float = float("inf")  # |a| ** b >= 2 ** 63 for these: refused before computing
    if not (isinstance(a, int) and isinstance(b, int) and b * (abs(a).bit_length() - 1) >= 63):
        try:
            value = a**b
        except OverflowError:  # a float power beyond 1.8e308
            value = float("inf")
    if abs(value) == float("inf") or (isinstance(value, int) and abs(value) >= 2**63):
        raise NndslError("this arithmetic overflows", span, received=f"{a:g} ** {b:g}",
                         expected="a finite number (sizes and counts up to 2**63)")
    return value


def _not_an_unknown_value(expr: ast.Expr, scope: Scope) -> None:
    """Where a tensor input may stand, a name that means nothing is a misspelt value, not a
    parameter (else the error would be about positional parameters)."""
    known = (BOOLS, scope.consts.values, ops.OPS)
    if isinstance(expr, ast.Name) and not any(expr.id in names for names in known):
        raise NndslError(f"unknown name '{expr.id}'", expr.span,
                         hint=did_you_mean(expr.id, scope.values) or _names_hint(scope))


def _names_hint(scope: Scope) -> str | None:
    known = sorted(n for n in scope.values if n != "in")
    return f"defined here: {', '.join(known)}" if known else None
