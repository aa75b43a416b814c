"""The `nndsl` command line: one sub-command per module of `nndsl.commands` (a registry).
Heavy imports (torch, onnx, rich) happen inside the commands."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence

from nndsl import __version__
from nndsl.commands import EXIT_ERRORS, EXIT_INTERRUPTED, EXIT_OK, load_all

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nndsl", description="A declarative neural-network compiler: check, compile, "
        "train, export and verify networks written as text specs.")
    parser.add_argument("--version", action="version", version=f"nndsl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in sorted(load_all().values(), key=lambda c: (c.order, c.name)):
        child = sub.add_parser(command.name, help=command.help)
        command.add_arguments(child)
        child.set_defaults(func=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        with warnings.catch_warnings():
            if not args.debug:  # NumPy's overflow warnings name internal lines; nndsl checks
                warnings.simplefilter("ignore", RuntimeWarning)  # values itself, says why
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
