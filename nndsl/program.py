"""Loading a spec: files and imports, then every model and train block lowered and checked.

`load(path)` returns the checked `Program` and the `SourceMap` needed to render errors; it
raises `NndslError`/`ErrorGroup` with every independent mistake it found.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from nndsl.errors import ErrorSink, NndslError, SourceMap, Span, did_you_mean
from nndsl.grammar import ast
from nndsl.grammar.parser import parse
from nndsl.ir import Graph, Program, TrainSpec
from nndsl.lower import ModelBuilder, Poisoned, Scope, refuse_shadowing
from nndsl.passes.verify import verify

SPEC_SUFFIX = ".nn"


@dataclass
class Definitions:
    """Everything the loaded files define, by name, with where each came from."""

    blocks: dict[str, ast.BlockDef] = field(default_factory=dict)
    models: dict[str, ast.ModelDef] = field(default_factory=dict)
    trains: dict[str, ast.TrainDef] = field(default_factory=dict)
    main_models: list[str] = field(default_factory=list)
    main_trains: list[str] = field(default_factory=list)


MAX_SPEC_BYTES = 4 << 20  # far beyond any hand-written spec; bounds what a bad import reads


def read_source(path: Path, sources: SourceMap, span: Span | None = None,
                imported: bool = False) -> str:
    """A spec's text. Imports must be regular `.nn` files after following links, so an import
    cannot make nndsl read (and quote in an error) a file that is not a spec, or block on a
    device or pipe."""
    target = path.resolve()
    if imported and target.suffix != SPEC_SUFFIX:
        raise NndslError(f"{path} links to {target}, which is not a spec file", span,
                         hint=f"imports name '{SPEC_SUFFIX}' files")
    if target.exists() and not target.is_file():
        raise NndslError(f"{path} is not a regular file", span)
    if target.exists() and target.stat().st_size > MAX_SPEC_BYTES:
        raise NndslError(f"{path} is too large for a spec ({target.stat().st_size} bytes)", span,
                         expected=f"at most {MAX_SPEC_BYTES} bytes")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (some editors') dropped
    except FileNotFoundError:
        raise NndslError(f"no such spec file: {path}", span) from None
    except UnicodeDecodeError:
        raise NndslError(f"{path} is not a UTF-8 text file", span) from None
    except OSError as e:
        raise NndslError(f"cannot read {path}: {e.strerror}", span) from None
    sources[str(path)] = text
    return text


class Loader:
    """Parses a spec and its imports (relative to the importing file); cycles are errors."""

    def __init__(self, sources: SourceMap, sink: ErrorSink) -> None:
        self.sources, self.sink = sources, sink
        self.defs = Definitions()
        self.done: set[Path] = set()
        self.stack: list[Path] = []

    def load(self, path: Path, text: str | None = None, span: Span | None = None,
             main: bool = False) -> None:
        key = path.resolve()
        if key in self.stack:
            cycle = " -> ".join(p.name for p in [*self.stack[self.stack.index(key):], key])
            raise NndslError(f"import cycle: {cycle}", span, hint="move the shared blocks into "
                             "a file that imports nothing from these")
        if key in self.done:
            return
        name = os.path.normpath(path)  # shown in errors as the user wrote it
        if text is None:
            text = read_source(Path(name), self.sources, span, imported=not main)
        else:
            text = text.removeprefix("\ufeff")
            self.sources[name] = text
        module = parse(text, name)
        self.stack.append(key)
        try:
            for item in module.items:
                self.item(item, Path(name), main)
        finally:
            self.stack.pop()
        self.done.add(key)

    def item(self, item: ast.Import | ast.BlockDef | ast.ModelDef | ast.TrainDef, path: Path,
             main: bool) -> None:
        try:
            match item:
                case ast.Import(path=rel, span=span):
                    if not rel.endswith(SPEC_SUFFIX):
                        raise NndslError(f"can only import spec files ending in "
                                         f"'{SPEC_SUFFIX}'", span, received=f'"{rel}"')
                    self.load(path.parent / rel, span=span)
                case ast.BlockDef():
                    self.define(self.defs.blocks, item, "block")
                case ast.ModelDef():
                    self.define(self.defs.models, item, "model")
                    if main:
                        self.defs.main_models.append(item.name)
                case ast.TrainDef():
                    self.define(self.defs.trains, item, "train block for")
                    if main:
                        self.defs.main_trains.append(item.name)
        except NndslError as e:
            self.sink.add(e)

    def define(self, table: dict, item: ast.BlockDef | ast.ModelDef | ast.TrainDef,
               what: str) -> None:
        if item.name in table:
            first = table[item.name].span
            raise NndslError(f"{what} '{item.name}' is defined twice", item.span).with_note(
                "first defined here", first)
        table[item.name] = item


def lower_model(model: ast.ModelDef, defs: Definitions, sink: ErrorSink) -> Graph:
    """Lower one model's statements; errors are collected, one per failing statement."""
    b = ModelBuilder(model.name, defs.blocks, sink, model.span)
    scope = Scope()
    b.reserved = {s.name for s in model.body if isinstance(s, ast.Binding)}
    outputs: list[tuple[str, Span]] = []
    for stmt in (s for s in model.body if isinstance(s, ast.Defaults)):
        _guard(sink, lambda stmt=stmt: b.set_defaults(stmt))
    for index, stmt in enumerate(model.body):
        # its neighbours, whatever became of them (a statement refused on the way is one too)
        previous = model.body[index - 1] if index else None
        following = model.body[index + 1] if index + 1 < len(model.body) else None
        match stmt:
            case ast.InputDecl(items=items):
                for item in items:
                    _guard(sink, lambda item=item: b.declare_input(item))
                    scope.values[item.name] = item.name  # poisoned (type None) if it failed
            case ast.Binding(name=name):
                if name in scope.values:
                    sink.add(NndslError(f"'{name}' is already defined", stmt.span,
                                        hint="every name is bound once; pick a new name"))
                    continue
                if not _guard(sink, lambda stmt=stmt: refuse_shadowing(stmt, defs.blocks)):
                    scope.values[name] = name  # poisoned: later uses are skipped silently
                    b.types[name] = None
                    continue
                if not _guard(sink, lambda stmt=stmt: _bind(b, scope, stmt)):
                    scope.values[name] = name  # poisoned: later uses are skipped silently
                    b.types[name] = None
            case ast.OutputDecl(names=names):
                outputs.extend(names)
            case ast.ExprStmt():
                if not _continued(stmt, following):  # else the next statement reports it
                    sink.add(_unused(stmt, previous))
                if isinstance(previous, ast.ExprStmt) and isinstance(previous.value, ast.Name):
                    scope.values[previous.value.id] = previous.value.id  # `h x -> ...`: poison h
                    b.types[previous.value.id] = None
    return b.graph(_outputs(b, scope, outputs, model, sink))


def _continued(stmt: ast.ExprStmt, following: ast.Stmt | None) -> bool:
    """`h x -> ...`: a bare name followed on the same line by more expression."""
    return (isinstance(stmt.value, ast.Name) and isinstance(following, ast.ExprStmt)
            and following.span.line == stmt.span.end_line)


def _unused(stmt: ast.ExprStmt, previous: ast.Stmt | None) -> NndslError:
    """An expression statement in a model: usually a missing '=' or '->' on the line."""
    same_line = previous is not None and previous.span.end_line == stmt.span.line
    if same_line and isinstance(previous, ast.ExprStmt) and isinstance(previous.value, ast.Name):
        name = previous.value.id
        return NndslError(f"missing '=' after '{name}'", previous.span,
                          hint=f"bind a value with `{name} = expression`")
    if same_line and isinstance(previous, ast.Binding):
        return NndslError("missing '->' before this layer", stmt.span,
                          hint="chain layers with '->': `x -> dense(2) -> relu`")
    if isinstance(stmt.value, ast.Name):
        return NndslError(f"'{stmt.value.id}' on its own does nothing", stmt.span,
                          hint=f"bind a value with `{stmt.value.id} = expression`")
    return NndslError("this expression's value is never used", stmt.span,
                      hint="bind it to a name (`y = ...`) or join it to the chain above "
                      "with '->'")


def _bind(b: ModelBuilder, scope: Scope, stmt: ast.Binding) -> None:
    """Lower `name = expr`; the node that computes it is named `name` (ONNX names follow)."""
    before = len(b.nodes)
    value = b.tensor(stmt.value, scope)
    created = len(b.nodes) > before and b.nodes[-1].name == value and value not in b.reserved
    if created and value not in dict(b.inputs):
        b.nodes[-1] = _renamed(b.nodes[-1], stmt.name)
        b.types[stmt.name] = b.types.pop(value)
    else:  # an alias of an existing value: give it its own name with an identity node
        from nndsl import ops

        b.emit(ops.get("identity"), [value], {}, stmt.span, scope, name=stmt.name)
    scope.values[stmt.name] = stmt.name


def _renamed(node, name):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    return replace(node, name=name)


def _outputs(b: ModelBuilder, scope: Scope, outputs: list[tuple[str, Span]],
             model: ast.ModelDef, sink: ErrorSink) -> list[str]:
    if not outputs:
        sink.add(NndslError(f"model '{model.name}' declares no output", model.span,
                            hint="add `output NAME` naming the values the model returns"))
    names = []
    for name, span in outputs:
        if name not in scope.values:
            sink.add(NndslError(f"unknown output '{name}'", span,
                                hint=did_you_mean(name, scope.values)))
        elif name in names:
            sink.add(NndslError(f"output '{name}' is listed twice", span))
        else:
            names.append(name)
    return names


def _guard(sink: ErrorSink, action) -> bool:  # type: ignore[no-untyped-def]
    try:
        action()
        return True
    except Poisoned:
        return False
    except NndslError as e:
        sink.add(e)
        return False


def load(path: str | Path, text: str | None = None) -> tuple[Program, SourceMap]:
    """Parse, resolve, lower and check a spec file (or `text` under that name).

    Errors carry the sources read so far as `error.sources`, so they can show the lines.
    """
    sources = SourceMap()
    try:
        return _load(Path(path), text, sources), sources
    except NndslError as e:
        e.sources = sources  # type: ignore[attr-defined]
        raise


def _load(path: Path, text: str | None, sources: SourceMap) -> Program:
    from nndsl.lower_train import lower_train

    sink = ErrorSink()
    loader = Loader(sources, sink)
    try:
        loader.load(path, text, main=True)
    except NndslError as e:
        sink.add(e)
        sink.raise_if_any()
    defs = loader.defs
    models: list[Graph] = []
    for name in defs.main_models:
        before = len(sink.errors)
        graph = lower_model(defs.models[name], defs, sink)
        if len(sink.errors) == before:
            _guard(sink, lambda graph=graph: verify(graph))
            models.append(graph)
    trains: list[TrainSpec] = []
    by_name = {m.name: m for m in models}
    for name in defs.main_trains:
        spec = None

        def lower(name: str = name) -> None:
            nonlocal spec
            spec = lower_train(defs.trains[name], defs, by_name, sink)

        _guard(sink, lower)
        if spec is not None:
            trains.append(spec)
    if len(by_name) == len(defs.main_models):  # a failed model has reported its own errors
        from nndsl.training.validate import validate_train

        for spec in trains:
            _guard(sink, lambda spec=spec: validate_train(spec, by_name, sink))
    if not defs.main_models and not sink.errors:
        start = Span(os.path.normpath(path), 1, 1, 1, 2)  # the file as a whole: its start
        sink.add(NndslError("this spec defines no model", start,
                            hint="a spec needs at least one `model NAME { ... }`"))
    sink.raise_if_any()
    return Program(tuple(models), tuple(trains), str(path))
