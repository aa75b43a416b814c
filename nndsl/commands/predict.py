"""`nndsl predict`: run an exported ONNX model with onnxruntime on rows from a file."""

from __future__ import annotations

import argparse
from pathlib import Path

from nndsl.commands import EXIT_ERRORS, EXIT_OK, Command, register


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL.onnx")
    parser.add_argument("--input", required=True, help="rows to predict on (.npy or .csv)")
    parser.add_argument("--output", help="write the first output here (.npy or .csv)")
    parser.add_argument("--rows", type=int, default=10, help="rows to print (default 10)")


def run(args: argparse.Namespace) -> int:
    import sys

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


register(Command("predict", "run an exported ONNX model with onnxruntime", add_arguments, run,
                 order=40))
