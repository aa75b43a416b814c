"""`nndsl import MODEL.onnx -o model.nn`: an ONNX model as a spec plus an .npz of its weights."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nndsl.commands import EXIT_ERRORS, EXIT_OK, EXIT_USAGE, Command, register
from nndsl.commands._common import print_error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL.onnx")
    parser.add_argument("-o", "--output", required=True, metavar="SPEC.nn",
                        help="the spec to write; the weights go beside it (SPEC.npz)")
    parser.add_argument("--weights", metavar="FILE.npz",
                        help="where to write the weights instead (the spec names it relative "
                        "to its own folder)")


def run(args: argparse.Namespace) -> int:
    import os

    from nndsl.errors import NndslError
    from nndsl.npz import write_npz

    spec = Path(args.output)
    if spec.suffix != ".nn":
        print(f"nndsl import: the spec must end in .nn, got {spec}", file=sys.stderr)
        return EXIT_USAGE
    weights = Path(args.weights) if args.weights else spec.with_suffix(".npz")
    relative = os.path.relpath(weights, spec.parent if str(spec.parent) else ".")
    try:
        from nndsl.importer import import_file

        imported = import_file(Path(args.model), Path(relative).as_posix())
        spec.parent.mkdir(parents=True, exist_ok=True)
        weights.parent.mkdir(parents=True, exist_ok=True)
        with weights.open("wb") as f:
            write_npz(f, imported.weights)
        spec.write_text(imported.spec, encoding="utf-8")
        _check(spec)
    except NndslError as e:
        print_error(e, getattr(e, "sources", None), None)
        return EXIT_ERRORS
    except OSError as e:
        print(f"nndsl import: cannot write {e.filename}: {e.strerror}", file=sys.stderr)
        return EXIT_ERRORS
    graph = imported.graph
    print(f"wrote {spec} (model {graph.name}, {len(graph.nodes)} layers) and {weights} "
          f"({len(imported.weights)} arrays, {graph.param_count():,} parameters)")
    return EXIT_OK


def _check(spec: Path) -> None:
    """The written spec loads, checks and runs one forward pass with its weights (what
    `nndsl check` does), so an import never leaves a spec that does not work."""
    from nndsl.check import check_program
    from nndsl.program import load

    program, _ = load(spec)
    check_program(program)


register(Command("import", "import an ONNX model as a spec and its weights (.npz)",
                 add_arguments, run, order=25))
