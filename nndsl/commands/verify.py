"""`nndsl verify`: the same inputs through NumPy, torch and onnxruntime; exit 1 over tolerance."""

from __future__ import annotations

import argparse
import json

from nndsl.commands import EXIT_ERRORS, EXIT_OK, Command, register
from nndsl.commands._common import load_spec, print_error
from nndsl.memory import add_option as add_memory_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC")
    parser.add_argument("--model", metavar="MODEL.onnx",
                        help="check this ONNX file instead of a fresh export")
    parser.add_argument("--weights", metavar="RUN_DIR",
                        help="a run directory (or its weights.npz) instead of initial weights")
    parser.add_argument("--json", action="store_true", help="print every comparison as JSON")
    add_memory_option(parser)


def run(args: argparse.Namespace) -> int:
    from nndsl.errors import NndslError
    from nndsl.memory import check_memory
    from nndsl.verify import BATCHES, tolerance_text, verify_program

    sources = None
    try:
        program, sources = load_spec(args.spec)
        check_memory(program, args.max_memory, batch=max(BATCHES))
        rows = verify_program(program, sources, onnx_model=args.model, weights=args.weights)
    except NndslError as e:
        print_error(e, sources or getattr(e, "sources", None), args.spec)
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


register(Command("verify", "run the same inputs through NumPy, torch and onnxruntime and "
                 "compare (gradients too); exit 1 over tolerance", add_arguments, run, order=50))
