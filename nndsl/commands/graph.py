"""`nndsl graph`: draw a spec's network (boxes with op, shape and parameters; blocks framed;
tied weights and frozen layers marked) to SVG, PNG or PDF."""

from __future__ import annotations

import argparse

from nndsl.commands import EXIT_ERRORS, EXIT_OK, Command, register
from nndsl.commands._common import load_spec, print_error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC")
    parser.add_argument("--model", metavar="NAME",
                        help="draw only this model (default: every model, side by side)")
    parser.add_argument("-o", "--output", action="append", required=True, metavar="FILE",
                        help="the picture: FILE.svg, FILE.png or FILE.pdf (repeat for several "
                        "formats; the network is laid out once)")


def run(args: argparse.Namespace) -> int:
    from nndsl.errors import NndslError
    from nndsl.graph_picture import draw_models, output_format, select_models

    sources = None
    try:
        for path in args.output:
            output_format(path)  # a wrong name fails before the spec is even read
        program, sources = load_spec(args.spec)
        graphs = select_models(program, args.model)
        draw_models(program, graphs, args.output)
    except NndslError as e:
        print_error(e, sources or getattr(e, "sources", None), args.spec)
        return EXIT_ERRORS
    names = ", ".join(g.name for g in graphs)
    print(f"drew {names} to {', '.join(args.output)}")
    return EXIT_OK


register(Command("graph", "draw a spec's network to SVG, PNG or PDF", add_arguments, run,
                 order=25))
