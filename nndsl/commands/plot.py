"""`nndsl plot RUN...`: several runs' metrics.csv on shared axes, to compare them (a panel per
metric with the loss first, a colour per run, validation dashed; nndsl/plot.py draws it)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nndsl.commands import EXIT_ERRORS, EXIT_OK, Command, register
from nndsl.commands._common import print_error

FORMATS = (".png", ".svg", ".pdf")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="run directories written by `nndsl train` (or their metrics.csv)")
    parser.add_argument("-o", "--output", default="plot.png", metavar="FILE",
                        help="the picture: FILE.png (default plot.png), FILE.svg or FILE.pdf")
    parser.add_argument("--metric", action="append", metavar="NAME",
                        help="draw only this metric (repeat for several; default: the loss and "
                        "every metric the runs recorded)")


def read_runs(paths: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Each run's metrics.csv rows, by a name that tells the runs apart."""
    import csv

    from nndsl.errors import NndslError

    files = [Path(p) / "metrics.csv" if Path(p).is_dir() else Path(p) for p in paths]
    names = [f.parent.name for f in files]
    if len(set(names)) < len(names):
        names = [str(f.parent) for f in files]
    out = {}
    for name, file in zip(names, files, strict=True):
        if file.name != "metrics.csv" or not file.is_file():
            raise NndslError(f"{file.parent if file.name == 'metrics.csv' else file} is not a "
                             "run directory: it has no metrics.csv",
                             hint="give directories written by `nndsl train`")
        with file.open(encoding="utf-8", newline="") as f:
            out[name] = list(csv.DictReader(f))
    return out


def run(args: argparse.Namespace) -> int:
    from nndsl.errors import NndslError
    from nndsl.files import atomic_write
    from nndsl.plot import overlay, plotted

    try:
        output = Path(args.output)
        if output.suffix.lower() not in FORMATS:
            raise NndslError(f"cannot draw to {output}: unknown picture format",
                             expected=" or ".join(FORMATS), received=output.suffix or "none")
        if output.is_dir() or not output.parent.is_dir():
            raise NndslError(f"cannot write {output}: " + ("it is a directory" if
                             output.is_dir() else f"the folder {output.parent} does not exist"))
        runs = read_runs(args.runs)
        known = plotted(runs)
        unknown = [m for m in args.metric or () if m not in known]
        if unknown or not known:
            raise NndslError(f"the runs recorded no {', '.join(unknown) or 'metric'}",
                             expected=", ".join(known) or "rows in metrics.csv",
                             received=", ".join(unknown) or "none")
        atomic_write(output, overlay(runs, args.metric, output.suffix.lower()[1:]))
    except NndslError as e:
        print_error(e, None, None)
        return EXIT_ERRORS
    print(f"drew {', '.join(runs)} to {output}")
    return EXIT_OK


register(Command("plot", "draw several runs' metrics on shared axes, to compare them",
                 add_arguments, run, order=37))
