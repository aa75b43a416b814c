"""`nndsl predict`: run a trained model (a run directory or an ONNX file) with onnxruntime on
rows from a file; classifiers answer with the class, its label and its probability."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nndsl.commands import EXIT_ERRORS, EXIT_OK, Command, register

MAX_COLUMNS = 8  # an output's columns printed without --all-columns


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="RUN_DIR|MODEL.onnx")
    parser.add_argument("--input", required=True, metavar="FILE",
                        help="rows to predict on: .npy (one input), .npz (an array per input "
                        "name) or .csv (a header names the columns of several inputs)")
    parser.add_argument("--output", metavar="FILE", help="write every prediction here; the "
                        "extension picks the format: .npy, .npz, .csv or .json")
    parser.add_argument("--format", choices=("npy", "npz", "csv", "json"),
                        help="the output's format when its name has no such extension "
                        "(e.g. --output /dev/stdout)")
    parser.add_argument("--rows", type=int, default=10, help="rows to print (default 10)")
    parser.add_argument("--top-k", type=int, default=1, metavar="K",
                        help="for classifiers: the K most probable classes (default 1)")
    parser.add_argument("--all-columns", action="store_true",
                        help="print every column of every output (default: the first "
                        f"{MAX_COLUMNS}, and a classifier's probabilities not at all)")


def run(args: argparse.Namespace) -> int:
    import sys

    from nndsl.errors import NndslError
    from nndsl.files import write_output
    from nndsl.inference import classify, open_model, read_rows, run_model
    from nndsl.predictions import Predictions, encode

    try:
        if args.top_k < 1 or args.rows < 0:
            raise NndslError("--top-k must be at least 1 and --rows at least 0")
        model = open_model(Path(args.model))
        outputs = run_model(model, read_rows(Path(args.input), model))
        predictions = Predictions(outputs, classify(model, outputs), args.top_k)
        if args.output:
            out = Path(args.output)
            write_output(out, encode(out, predictions, args.format))
    except NndslError as e:
        print(e.render(), file=sys.stderr)
        return EXIT_ERRORS
    if args.output:
        if out.is_file():  # not into a pipe or /dev/stdout, where the predictions went
            print(f"wrote {out} ({predictions.rows} rows)")
    else:
        show(predictions, args.rows, args.all_columns)
    return EXIT_OK


def show(p: Any, rows: int, all_columns: bool) -> None:
    """The classes (when a classifier), then each output's values, `rows` rows of each."""
    from nndsl.commands._common import console as make_console
    from nndsl.predictions import flat_rows

    console = make_console()
    if p.classes is not None:
        console.print(_class_table(p, rows))
    for index, (name, values) in enumerate(p.outputs.items()):
        flat = flat_rows(values)
        if index == 0 and p.classes is not None and not all_columns:
            console.print(f"{name}: {flat.shape[1]} class probabilities per row "
                          "(--all-columns prints them)")
            continue
        console.print(_value_table(name, flat, rows, all_columns))


def _title(what: str, total: int, rows: int) -> str:
    shown = min(rows, total)
    return f"{what} ({total} rows)" if shown == total else \
        f"{what} (first {shown} of {total} rows; --rows N prints more)"


def _class_table(p: Any, rows: int) -> Any:
    from rich.table import Table

    classes = p.classes
    k = min(p.top_k, classes.probs.shape[1])
    order, probs = classes.top(k)
    kind = "softmax of the scores" if classes.from_scores else "probability"
    table = Table(title=_title("predicted classes", p.rows, rows), title_justify="left")
    for column in ("row", "class", "label", kind):
        table.add_column(column, justify="left" if column == "label" else "right")
    for rank in range(1, k):
        table.add_column(f"#{rank + 1}", justify="left")
    for i in range(min(rows, p.rows)):
        best = int(order[i, 0])
        others = [f"{classes.labels[int(order[i, r])]} ({probs[i, r]:.3f})" for r in range(1, k)]
        table.add_row(str(i), str(best), classes.labels[best], f"{probs[i, 0]:.4f}", *others)
    return table


def _value_table(name: str, flat: Any, rows: int, all_columns: bool) -> Any:
    from rich.table import Table

    width = flat.shape[1]
    shown = width if all_columns else min(width, MAX_COLUMNS)
    caption = None if shown == width else \
        f"columns 0-{shown - 1} of {width} shown; --all-columns prints every column"
    table = Table(title=_title(name, len(flat), rows), title_justify="left", caption=caption,
                  caption_justify="left")
    table.add_column("row", justify="right")
    for j in range(shown):
        table.add_column(str(j), justify="right")
    for i, row in enumerate(flat[:rows]):
        table.add_row(str(i), *(f"{v:.4g}" for v in row[:shown]))
    return table


register(Command("predict", "run a trained model (run directory or ONNX file) on rows from a "
                 "file", add_arguments, run, order=40))
