"""`nndsl compile`: the IR text of a spec, or its ONNX export."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nndsl.commands import EXIT_ERRORS, EXIT_OK, EXIT_USAGE, Command, register
from nndsl.commands._common import load_spec, print_error
from nndsl.files import check_output, write_output
from nndsl.memory import add_option as add_memory_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC")
    parser.add_argument("--emit", choices=["ir", "onnx", "torch"], default="ir",
                        help="what to produce (default: ir; onnx when -o ends in .onnx, torch "
                        "(a standalone nn.Module file) when it ends in .py)")
    parser.add_argument("-o", "--output", help="write to this file instead of stdout")
    parser.add_argument("--model", help="which model of the spec to export")
    parser.add_argument("--weights", metavar="RUN_DIR",
                        help="export with a run's trained weights (ONNX): the model's own "
                        "MODEL.weights.npz, else weights.npz, whose layers it may share by label")
    add_memory_option(parser)


def run(args: argparse.Namespace) -> int:
    from nndsl.errors import NndslError
    from nndsl.export import pick_model
    from nndsl.memory import check_memory

    sources = None
    try:
        program, sources = load_spec(args.spec)
        check_memory(program, args.max_memory)
        if args.output:
            check_output(Path(args.output))
        if args.emit == "onnx" or (args.output or "").endswith(".onnx"):
            return _compile_onnx(args, program, sources)
        if args.weights:
            print("nndsl compile: --weights exports trained weights to ONNX: give -o FILE.onnx",
                  file=sys.stderr)
            return EXIT_USAGE
        torch = args.emit == "torch" or (args.output or "").endswith(".py")
        text = _compile_torch(args, program, sources) if torch else _ir(program)
    except NndslError as e:
        print_error(e, sources or getattr(e, "sources", None), args.spec)
        return EXIT_ERRORS
    if not args.output:
        print(text, end="")
        return EXIT_OK
    try:
        write_output(Path(args.output), text.encode("utf-8"))
    except NndslError as e:
        print_error(e, sources, args.spec)
        return EXIT_ERRORS
    if torch:
        print(f"wrote {args.output} (model {pick_model(program, args.model).name} as a "
              "torch.nn.Module)")
    return EXIT_OK


def _ir(program) -> str:  # type: ignore[no-untyped-def]
    from nndsl.ir import format_graph

    return "\n\n".join(format_graph(g) for g in program.models) + "\n"


def _compile_onnx(args: argparse.Namespace, program, sources) -> int:  # type: ignore[no-untyped-def]
    from nndsl.export import export_onnx, pick_model

    if not args.output:
        print("nndsl compile: --emit onnx needs -o FILE.onnx", file=sys.stderr)
        return EXIT_USAGE
    graph = pick_model(program, args.model)
    model = export_onnx(program, sources, graph, _trained(args, graph))
    write_output(Path(args.output), model.SerializeToString())
    print(f"wrote {args.output} (model {graph.name}, {len(model.graph.node)} nodes)")
    return EXIT_OK


def _compile_torch(args: argparse.Namespace, program, sources) -> str:  # type: ignore[no-untyped-def]
    """A standalone torch.nn.Module source file (backends/torch/source.py)."""
    from nndsl.backends.torch.source import module_source
    from nndsl.export import pick_model

    return module_source(pick_model(program, args.model), sources, args.spec)


def _trained(args: argparse.Namespace, graph):  # type: ignore[no-untyped-def]
    """`--weights RUN_DIR`: the run's arrays for `graph` (nndsl/run_weights.py), checked
    against its declared shapes; None: the spec's initial weights."""
    if not args.weights:
        return None
    from nndsl.run_weights import trained_weights

    return trained_weights(Path(args.weights), graph)


register(Command("compile", "lower a spec (to IR text, ONNX or a torch module)", add_arguments,
                 run, order=20))
