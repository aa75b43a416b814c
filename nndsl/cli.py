"""The `nndsl` command line. Heavy imports (torch, onnx, rich) happen inside the commands."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from nndsl import __version__

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def _load(spec: str):  # type: ignore[no-untyped-def]
    """The checked program. The cycle collector is paused meanwhile: the AST and IR are many
    small objects that all stay alive, and its full passes over them made a 10,000-layer
    check 1.6x slower (super-linear; make bench, case 4)."""
    import gc

    from nndsl.program import load

    enabled = gc.isenabled()
    gc.disable()
    try:
        return load(Path(spec))
    finally:
        if enabled:
            gc.enable()


def cmd_check(args: argparse.Namespace) -> int:
    from nndsl.check import check_program
    from nndsl.errors import NndslError

    results, failed = [], False
    for spec in args.specs:
        sources = None
        try:
            program, sources = _load(spec)
            results.extend(check_program(program))
            if args.grad and not _check_gradients(program, args.json):
                failed = True
        except NndslError as e:
            failed = True
            _print_error(e, sources or getattr(e, "sources", None), spec)
    if args.json:
        print(json.dumps({"models": [r.as_json() for r in results]}, indent=2))
    else:
        _print_reports(results)
    return EXIT_ERRORS if failed else EXIT_OK


def _check_gradients(program, quiet: bool) -> bool:  # type: ignore[no-untyped-def]
    """Analytic vs central-difference gradients (float64); False when any is over tolerance."""
    from nndsl.backends.numpy.gradcheck import TOLERANCE, format_report, gradient_check

    rows = gradient_check(program)
    if not quiet:
        print(format_report(rows))
    return all(r.max_rel_error <= TOLERANCE for r in rows)


def cmd_compile(args: argparse.Namespace) -> int:
    from nndsl.errors import NndslError
    from nndsl.ir import format_graph

    sources = None
    try:
        program, sources = _load(args.spec)
    except NndslError as e:
        _print_error(e, sources, args.spec)
        return EXIT_ERRORS
    if args.emit == "onnx" or (args.output or "").endswith(".onnx"):
        return _compile_onnx(args, program, sources)
    text = "\n\n".join(format_graph(g) for g in program.models)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return EXIT_OK


def _compile_onnx(args: argparse.Namespace, program, sources) -> int:  # type: ignore[no-untyped-def]
    from nndsl.errors import NndslError
    from nndsl.export import export_onnx, pick_model

    if not args.output:
        print("nndsl compile: --emit onnx needs -o FILE.onnx", file=sys.stderr)
        return EXIT_USAGE
    try:
        graph = pick_model(program, args.model)
        model = export_onnx(program, sources, graph)
        Path(args.output).write_bytes(model.SerializeToString())
    except NndslError as e:
        _print_error(e, sources, args.spec)
        return EXIT_ERRORS
    except OSError as e:
        print(f"nndsl compile: cannot write {args.output}: {e.strerror}", file=sys.stderr)
        return EXIT_ERRORS
    print(f"wrote {args.output} (model {graph.name}, {len(model.graph.node)} nodes)")
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from nndsl.errors import NndslError
    from nndsl.export import load_onnx, predict, read_array
    from nndsl.files import atomic_write

    try:
        model = load_onnx(Path(args.model))
        outputs = predict(model, read_array(Path(args.input)))
        if args.output:
            first = next(iter(outputs.values()))
            out = Path(args.output)
            if out.suffix == ".csv":
                atomic_write(out, lambda f: np.savetxt(f, first.reshape(len(first), -1),
                                                       delimiter=",", fmt="%.9g"))
            else:
                atomic_write(out, lambda f: np.save(f, first))
    except NndslError as e:
        print(e.render(), file=sys.stderr)
        return EXIT_ERRORS
    if args.output:
        print(f"wrote {out} ({len(first)} rows)")
    else:
        _print_rows(outputs, args.rows)
    return EXIT_OK


def _print_rows(outputs, rows: int) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.table import Table

    for name, values in outputs.items():
        flat = values.reshape(len(values), -1)
        table = Table(title=f"{name} (first {min(rows, len(flat))} of {len(flat)} rows)",
                      title_justify="left")
        table.add_column("row", justify="right")
        for j in range(min(flat.shape[1], 6)):
            table.add_column(str(j), justify="right")
        for i, row in enumerate(flat[:rows]):
            table.add_row(str(i), *(f"{v:.4g}" for v in row[:6]))
        Console().print(table)


def cmd_train(args: argparse.Namespace) -> int:
    from nndsl.errors import NndslError
    from nndsl.train_run import train_spec
    from nndsl.trainer import Interrupted

    sources = None
    if args.resume is None and args.spec is None:
        print("nndsl train: give a SPEC, or --resume RUN_DIR", file=sys.stderr)
        return EXIT_USAGE
    run_dir = args.resume or args.run_dir
    try:
        if args.resume is not None:
            from nndsl.train_run import resume_run

            print(f"trained model written to {resume_run(args.resume, args.quiet)}")
            return EXIT_OK
        program, sources = _load(args.spec)
        run_dir = train_spec(program, args.spec, backend=args.backend, epochs=args.epochs,
                             steps=args.steps, run_dir=args.run_dir, model=args.model,
                             quiet=args.quiet, device=args.device, overwrite=args.overwrite,
                             checkpoint_every=args.checkpoint_every)
    except NndslError as e:
        _print_error(e, sources or getattr(e, "sources", None), args.spec)
        return EXIT_ERRORS
    except Interrupted as stop:
        print(f"{stop}: checkpoint written; continue with `nndsl train --resume "
              f"{stop.run_dir}`", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"trained model written to {run_dir}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    """NumPy vs torch vs onnxruntime on the same inputs; exit 1 over tolerance."""
    from nndsl.errors import NndslError
    from nndsl.verify import tolerance_text, verify_program

    sources = None
    try:
        program, sources = _load(args.spec)
        rows = verify_program(program, sources, onnx_model=args.model, weights=args.weights)
    except NndslError as e:
        _print_error(e, sources or getattr(e, "sources", None), args.spec)
        return EXIT_ERRORS
    ok = all(r.ok for r in rows)
    if args.json:
        print(json.dumps({"ok": ok, "tolerances": tolerance_text(),
                          "rows": [r.as_json() for r in rows]}, indent=2, ensure_ascii=False))
    else:
        _print_verify(rows)
    return EXIT_OK if ok else EXIT_ERRORS


def _print_verify(rows) -> None:  # type: ignore[no-untyped-def]
    """One table per model and check: the worst difference of each output or weight over the
    input sizes, and below it the notes (why a row failed or was skipped)."""
    from rich.console import Console

    from nndsl.verify import tolerance_text, worst

    console = Console()
    groups: dict[tuple[str, str], list] = {}  # type: ignore[type-arg]
    for r in worst(rows):
        groups.setdefault((r.model, r.what), []).append(r)
    for (model, what), group in groups.items():
        _print_verify_table(console, f"model {model}: {what}", group)
    failed = sum(not r.ok for r in rows)
    console.print(tolerance_text(), markup=False)
    console.print(f"{len(rows)} comparisons at batch 1, 7 (time 3, 11), " + (
        f"[bold red]{failed} failed[/]" if failed else "all within tolerance"))


def _print_verify_table(console, title: str, rows) -> None:  # type: ignore[no-untyped-def]
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title), title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("output / weight", overflow="fold")
    table.add_column("worst at", justify="right", no_wrap=True)
    table.add_column("max abs", justify="right", no_wrap=True)
    table.add_column("max rel", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)
    notes = []
    for r in rows:
        status = "ok" if r.ok else "[bold red]FAIL[/]"
        if r.note:
            notes.append(f"{escape(r.name)}: {escape(r.note)}")
            status += f" ({len(notes)})"
        size = "–" if r.batch is None else f"batch {r.batch}" + (
            f", time {r.time}" if r.time else "")
        table.add_row(escape(r.name), size, _number(r.max_abs), _number(r.max_rel), status)
    console.print(table)
    for i, note in enumerate(notes, 1):
        console.print(f"  ({i}) {note}")


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.2e}"


def _print_error(error: Exception, sources, spec: str | None) -> None:  # type: ignore[no-untyped-def]
    from nndsl.errors import SourceMap

    if sources is None and spec is None:
        sources = SourceMap()
    if sources is None:
        sources = SourceMap()
        try:
            sources[spec] = Path(spec).read_text(encoding="utf-8")
            sources[str(Path(spec).resolve())] = sources[spec]
        except (OSError, UnicodeDecodeError):
            pass
    print(error.render(sources), file=sys.stderr)  # type: ignore[attr-defined]


def _print_reports(reports) -> None:  # type: ignore[no-untyped-def]
    """A box table per model, drawn directly: rich's layout engine took 0.6 s of `nndsl check`'s
    0.9 s on a 1,000-layer model (make bench, case 4)."""
    from nndsl.check import shape_text

    for r in reports:
        rows = [(name, "input", shape_text(shape), "0") for name, shape in r.inputs.items()]
        rows += [(row.name, row.op, shape_text(row.shape), f"{row.params:,}")
                 for row in r.layers]
        print(box_table(f"model {r.name}", ("layer", "op", "output shape", "params"), rows,
                        ("total", "", "", f"{r.params:,}")))


def box_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]],
              footer: Sequence[str]) -> str:
    """A title, then a table in box-drawing characters; the last column is right-aligned."""
    widths = [max(len(c) for c in column) for column in zip(header, *rows, footer, strict=True)]

    def line(left: str, fill: str, mid: str, right: str) -> str:
        return left + mid.join(fill * (w + 2) for w in widths) + right

    def cells(values: Sequence[str], bar: str) -> str:
        padded = [v.ljust(w) for v, w in zip(values[:-1], widths, strict=False)]
        padded.append(values[-1].rjust(widths[-1]))
        return bar + bar.join(f" {v} " for v in padded) + bar

    return "\n".join([title, line("┏", "━", "┳", "┓"), cells(header, "┃"),
                      line("┡", "━", "╇", "┩"), *(cells(row, "│") for row in rows),
                      line("├", "─", "┼", "┤"), cells(footer, "│"), line("└", "─", "┴", "┘")])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nndsl", description="A declarative neural-network compiler: check, compile, "
        "train, export and verify networks written as text specs.")
    parser.add_argument("--version", action="version", version=f"nndsl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    check = sub.add_parser("check", help="parse, check and run one forward pass of specs")
    check.add_argument("specs", nargs="+", metavar="SPEC")
    check.add_argument("--json", action="store_true", help="print a JSON report")
    check.add_argument("--grad", action="store_true", help="also compare gradients with "
                       "central finite differences (float64); exit 1 over tolerance")
    check.set_defaults(func=cmd_check)

    comp = sub.add_parser("compile", help="lower a spec (to IR text)")
    comp.add_argument("spec", metavar="SPEC")
    comp.add_argument("--emit", choices=["ir", "onnx"], default="ir",
                      help="what to produce (default: ir; onnx when -o ends in .onnx)")
    comp.add_argument("-o", "--output", help="write to this file instead of stdout")
    comp.add_argument("--model", help="which model of the spec to export")
    comp.set_defaults(func=cmd_compile)

    train = sub.add_parser("train", help="train a spec's model with its train block")
    train.add_argument("spec", metavar="SPEC", nargs="?")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its checkpoint")
    train.add_argument("--backend", choices=["torch", "numpy"], default="torch",
                       help="torch (default): PyTorch on CPU or GPU; numpy: the pure-NumPy "
                       "reference trainer")
    train.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                       help="torch backend: auto picks CUDA when present")
    train.add_argument("--epochs", type=int, help="override the number of epochs")
    train.add_argument("--steps", type=int, help="train this many steps (metrics per step)")
    train.add_argument("--run-dir", help="where to write the run (default runs/MODEL-TIME/)")
    train.add_argument("--overwrite", action="store_true",
                       help="start again in a --run-dir that already holds a run")
    train.add_argument("--checkpoint-every", type=float, metavar="SECONDS",
                       help="checkpoint after an epoch at most this often (default 10; 0: every "
                       "epoch); a phase's end and Ctrl-C always checkpoint")
    train.add_argument("--model", help="which train block's model, when a spec has several")
    train.add_argument("--quiet", action="store_true", help="no progress output")
    train.set_defaults(func=cmd_train)

    pred = sub.add_parser("predict", help="run an exported ONNX model with onnxruntime")
    pred.add_argument("model", metavar="MODEL.onnx")
    pred.add_argument("--input", required=True, help="rows to predict on (.npy or .csv)")
    pred.add_argument("--output", help="write the first output here (.npy or .csv)")
    pred.add_argument("--rows", type=int, default=10, help="rows to print (default 10)")
    pred.set_defaults(func=cmd_predict)

    ver = sub.add_parser("verify", help="run the same inputs through NumPy, torch and "
                         "onnxruntime and compare (gradients too); exit 1 over tolerance")
    ver.add_argument("spec", metavar="SPEC")
    ver.add_argument("--model", metavar="MODEL.onnx",
                     help="check this ONNX file instead of a fresh export")
    ver.add_argument("--weights", metavar="RUN_DIR",
                     help="a run directory (or its weights.npz) instead of initial weights")
    ver.add_argument("--json", action="store_true", help="print every comparison as JSON")
    ver.set_defaults(func=cmd_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except BrokenPipeError:  # `nndsl ... | head`: the reader left; not an error of ours
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # a genuine bug: say so briefly unless --debug
        if args.debug:
            raise
        print(f"nndsl: internal error: {type(e).__name__}: {e}\n"
              "  (run with --debug for the traceback and please report it)", file=sys.stderr)
        return EXIT_ERRORS


if __name__ == "__main__":
    sys.exit(main())
