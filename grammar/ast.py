"""The AST: dataclasses with source spans, built from the Lark tree by `ToAst`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lark import Token, Transformer, v_args

from nndsl.errors import NndslError, Span

# ---------------------------------------------------------------- expressions


@dataclass(frozen=True, slots=True)
class Expr:
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Number(Expr):
    value: int | float


@dataclass(frozen=True, slots=True)
class String(Expr):
    value: str


@dataclass(frozen=True, slots=True)
class Name(Expr):
    id: str


@dataclass(frozen=True, slots=True)
class ListLit(Expr):
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Keyword:
    name: str
    value: Expr
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class CallExpr(Expr):
    name: str
    args: tuple[Expr, ...]
    kwargs: tuple[Keyword, ...]
    name_span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class BinOp(Expr):
    op: str  # add | sub | mul | div | pow
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Neg(Expr):
    operand: Expr


@dataclass(frozen=True, slots=True)
class Link:
    """One `-> [label:] layer` step of a chain; `callee` is a Name, CallExpr or Repeat."""

    label: str | None
    callee: Expr
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Repeat(Expr):
    count: Expr
    body: tuple[Link, ...]


@dataclass(frozen=True, slots=True)
class Chain(Expr):
    start: Expr
    links: tuple[Link, ...]


# ---------------------------------------------------------------- statements


@dataclass(frozen=True, slots=True)
class TypeExpr:
    dtype: str | None
    dims: tuple[int | str, ...]
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class TypedName:
    name: str
    type: TypeExpr
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class InputDecl:
    items: tuple[TypedName, ...]
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class TargetDecl:
    items: tuple[TypedName, ...]
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class OutputDecl:
    names: tuple[tuple[str, Span], ...]
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    value: Expr
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Defaults:
    settings: tuple[Setting, ...]
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Binding:
    name: str
    value: Expr
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class ExprStmt:
    value: Expr
    span: Span = field(compare=False)


Stmt = InputDecl | OutputDecl | Defaults | Binding | ExprStmt


@dataclass(frozen=True, slots=True)
class BlockParam:
    name: str
    default: Expr | None
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class BlockDef:
    name: str
    params: tuple[BlockParam, ...]
    body: tuple[Stmt, ...]
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class ModelDef:
    name: str
    body: tuple[Stmt, ...]
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class PhaseDef:
    name: str
    body: tuple[Setting | TargetDecl | PhaseDef, ...]
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class TrainDef:
    name: str
    body: tuple[Setting | TargetDecl | PhaseDef, ...]
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Import:
    path: str
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Module:
    file: str
    items: tuple[Import | BlockDef | ModelDef | TrainDef, ...]


# ---------------------------------------------------------------- tree -> AST

RESERVED = frozenset({"true", "false", "input", "output", "model", "block", "train", "import",
                      "defaults", "target", "phase", "repeat"})


MAX_INT = 2**63 - 1  # a literal no size, count or seed can exceed (int64, as ONNX stores them)


def _number(text: str, span: Span) -> int | float:
    """A literal's value; one that overflows (`1e400` is inf as a float) is an error here, so
    no hyper-parameter or size is ever infinite or beyond int64."""
    if text.isdigit():
        if len(text) > 19 or int(text) > MAX_INT:
            raise NndslError(f"the number {text[:20]}{'...' if len(text) > 20 else ''} is too "
                             "large", span, expected=f"an integer up to {MAX_INT:,}")
        return int(text)
    value = float(text)
    if math.isinf(value):
        raise NndslError(f"the number {text} is too large: it overflows to infinity", span,
                         expected="a finite number (at most about 1.8e308)")
    return value


def _unquote(text: str, span: Span) -> str:
    """A string literal's value: Python's backslash escapes; other characters as written."""
    if "\\" not in text:
        return text[1:-1]
    try:  # non-Latin-1 characters pass through as \\u escapes, so only the escapes are decoded
        return text[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError as e:
        raise NndslError(f"bad escape in string: {e.reason}", span,
                         hint='write a backslash itself as "\\\\"') from None


@v_args(meta=True)
class ToAst(Transformer):
    """Builds the AST; run after parsing (not as Lark(transformer=...)) so `meta` is filled."""

    def __init__(self, file: str) -> None:
        super().__init__()
        self.file = file

    def _span(self, meta) -> Span:  # type: ignore[no-untyped-def]
        return Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tok(self, tok: Token) -> Span:
        return Span(self.file, tok.line, tok.column, tok.end_line, tok.end_column)  # type: ignore[arg-type]

    def start(self, meta, items):  # type: ignore[no-untyped-def]
        return Module(self.file, tuple(i for i in items if not isinstance(i, Token)))

    def import_stmt(self, meta, c):  # type: ignore[no-untyped-def]
        return Import(_unquote(c[0], self._span(meta)), self._span(meta))

    def block_param(self, meta, c):  # type: ignore[no-untyped-def]
        return BlockParam(str(c[0]), c[1], self._span(meta))

    def block_def(self, meta, c):  # type: ignore[no-untyped-def]
        params = tuple(p for p in c[1:] if isinstance(p, BlockParam))
        body = tuple(s for s in c[1:] if not isinstance(s, BlockParam | Token | type(None)))
        return BlockDef(str(c[0]), params, body, self._span(meta))

    def model_def(self, meta, c):  # type: ignore[no-untyped-def]
        return ModelDef(str(c[0]), tuple(s for s in c[1:] if not isinstance(s, Token)),
                        self._span(meta))

    def train_def(self, meta, c):  # type: ignore[no-untyped-def]
        return TrainDef(str(c[0]), tuple(s for s in c[1:] if not isinstance(s, Token)),
                        self._span(meta))

    def phase_def(self, meta, c):  # type: ignore[no-untyped-def]
        return PhaseDef(str(c[0]), tuple(s for s in c[1:] if not isinstance(s, Token)),
                        self._span(meta))

    def int_dim(self, meta, c):  # type: ignore[no-untyped-def]
        return int(c[0])

    def sym_dim(self, meta, c):  # type: ignore[no-untyped-def]
        return str(c[0])

    def tensor_type(self, meta, c):  # type: ignore[no-untyped-def]
        dtype = str(c[0]) if c[0] is not None else None
        return TypeExpr(dtype, tuple(d for d in c[1:] if d is not None), self._span(meta))

    def typed_name(self, meta, c):  # type: ignore[no-untyped-def]
        return TypedName(str(c[0]), c[1], self._span(meta))

    def input_decl(self, meta, c):  # type: ignore[no-untyped-def]
        return InputDecl(tuple(c), self._span(meta))

    def target_decl(self, meta, c):  # type: ignore[no-untyped-def]
        return TargetDecl(tuple(c), self._span(meta))

    def output_name(self, meta, c):  # type: ignore[no-untyped-def]
        return (str(c[0]), self._tok(c[0]))

    def output_decl(self, meta, c):  # type: ignore[no-untyped-def]
        return OutputDecl(tuple(c), self._span(meta))

    def setting(self, meta, c):  # type: ignore[no-untyped-def]
        return Setting(str(c[0]), c[1], self._span(meta))

    def defaults(self, meta, c):  # type: ignore[no-untyped-def]
        return Defaults(tuple(s for s in c if isinstance(s, Setting)), self._span(meta))

    def binding(self, meta, c):  # type: ignore[no-untyped-def]
        return Binding(str(c[0]), c[1], self._span(meta))

    def expr_stmt(self, meta, c):  # type: ignore[no-untyped-def]
        return ExprStmt(c[0], self._span(meta))

    # expressions
    def number(self, meta, c):  # type: ignore[no-untyped-def]
        return Number(self._span(meta), _number(str(c[0]), self._span(meta)))

    def string(self, meta, c):  # type: ignore[no-untyped-def]
        return String(self._span(meta), _unquote(str(c[0]), self._span(meta)))

    def name(self, meta, c):  # type: ignore[no-untyped-def]
        return Name(self._span(meta), str(c[0]))

    def bare_layer(self, meta, c):  # type: ignore[no-untyped-def]
        return Name(self._span(meta), str(c[0]))

    def list(self, meta, c):  # type: ignore[no-untyped-def]
        return ListLit(self._span(meta), tuple(x for x in c if x is not None))

    def keyword(self, meta, c):  # type: ignore[no-untyped-def]
        return Keyword(str(c[0]), c[1], self._span(meta))

    def call(self, meta, c):  # type: ignore[no-untyped-def]
        args = [a for a in c[1:] if a is not None]
        positional = tuple(a for a in args if not isinstance(a, Keyword))
        keywords = tuple(a for a in args if isinstance(a, Keyword))
        first_keyword = next((i for i, a in enumerate(args) if isinstance(a, Keyword)), len(args))
        late = next((a for a in args[first_keyword:] if not isinstance(a, Keyword)), None)
        if late is not None:
            raise NndslError("positional argument after a keyword argument", late.span,
                             hint="give every argument after the first `name=value` by name")
        return CallExpr(self._span(meta), str(c[0]), positional, keywords, self._tok(c[0]))

    def link(self, meta, c):  # type: ignore[no-untyped-def]
        return Link(str(c[0]) if c[0] is not None else None, c[1], self._span(meta))

    def repeat(self, meta, c):  # type: ignore[no-untyped-def]
        return Repeat(self._span(meta), c[0], tuple(c[1:]))

    def chain(self, meta, c):  # type: ignore[no-untyped-def]
        return Chain(self._span(meta), c[0], tuple(c[1:]))

    def _binop(op: str):  # type: ignore[no-untyped-def]  # noqa: N805
        def build(self, meta, c):  # type: ignore[no-untyped-def]
            return BinOp(self._span(meta), op, c[0], c[1])

        return build

    add = _binop("add")
    sub = _binop("sub")
    mul = _binop("mul")
    div = _binop("div")
    pow = _binop("pow")

    def neg(self, meta, c):  # type: ignore[no-untyped-def]
        return Neg(self._span(meta), c[0])
