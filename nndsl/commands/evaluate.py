"""`nndsl evaluate`: score a trained model on labelled rows (loss, every fitting metric, and for
classifiers a confusion matrix with per-class precision, recall and F1)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nndsl.commands import EXIT_ERRORS, EXIT_OK, Command, register


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="RUN_DIR|MODEL.onnx")
    parser.add_argument("--data", required=True, metavar="FILE",
                        help="labelled rows, .csv or .npz, bound as the run's spec binds its "
                        "data (for an ONNX file: inputs by their names)")
    parser.add_argument("--target", metavar="NAME", help="the target column or array (needed "
                        "for an ONNX file; for a run directory it overrides the spec's)")
    parser.add_argument("--top-k", type=int, default=5, metavar="K",
                        help="k of top_k_accuracy (default 5, else reported as "
                        "top_k_accuracy_kK; only when there are more than K classes)")
    parser.add_argument("--json", action="store_true", help="print a JSON report")
    parser.add_argument("--plot", metavar="PNG", help="where to draw a classifier's confusion "
                        "matrix (default: confusion.png in the run directory, or "
                        "MODEL.confusion.png beside an ONNX file)")
    parser.add_argument("--no-plot", action="store_true", help="draw no confusion matrix")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from nndsl.errors import NndslError
    from nndsl.evaluate import confusion_png, evaluate_path
    from nndsl.files import write_output

    plot = None
    try:
        if args.top_k < 1:
            raise NndslError("--top-k must be at least 1", received=str(args.top_k))
        report = evaluate_path(Path(args.model), Path(args.data), args.target, args.top_k)
        if report.confusion is not None and not args.no_plot:
            plot = Path(args.plot) if args.plot else _default_plot(Path(args.model))
            write_output(plot, confusion_png(report))
    except NndslError as e:
        print(e.render(), file=sys.stderr)
        return EXIT_ERRORS
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        show(report)
        if plot is not None:
            print(f"confusion matrix drawn in {plot}")
    return EXIT_OK


def _default_plot(model: Path) -> Path:
    return model / "confusion.png" if model.is_dir() else model.with_suffix(".confusion.png")


def show(report: Any) -> None:
    from rich.table import Table

    from nndsl.commands._common import console as make_console

    console = make_console()
    console.print(f"{report.model} on {report.data} ({report.rows} rows)")
    table = Table()
    table.add_column("measure")
    table.add_column("value", justify="right")
    if report.loss is not None:
        table.add_row("loss", f"{report.loss:.6g}")
    for name, value in report.metrics.items():
        table.add_row(name, f"{value:.4f}")
    console.print(table)
    if report.confusion is not None:
        console.print("per class")
        console.print(_per_class(report))
        console.print("confusion matrix (rows: actual class, columns: predicted class)")
        console.print(_confusion(report))


def _per_class(report: Any) -> Any:
    from rich.table import Table

    table = Table()
    for column in ("class", "label", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "label" else "right")
    scores = report.per_class
    for k, label in enumerate(report.labels):
        table.add_row(str(k), label, f"{scores['precision'][k]:.4f}",
                      f"{scores['recall'][k]:.4f}", f"{scores['f1'][k]:.4f}",
                      str(int(scores["support"][k])))
    return table


def _confusion(report: Any) -> Any:
    from rich.table import Table

    table = Table()
    table.add_column("actual \\ predicted")
    for label in report.labels:
        table.add_column(label, justify="right")
    for label, row in zip(report.labels, report.confusion, strict=True):
        table.add_row(label, *(str(int(v)) for v in row))
    return table


register(Command("evaluate", "score a trained model on labelled rows: loss, metrics, confusion "
                 "matrix", add_arguments, run, order=35))
