"""`nndsl fmt`: rewrite specs in the one canonical layout (docs/language.md, "Formatting").

Files are rewritten in place, atomically, only when they change; `--check` and `--diff` change
nothing (for CI and for review); `-` formats stdin to stdout (for editors). A spec that does not
parse is reported as the usual positioned error and left as it is.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from nndsl.commands import EXIT_ERRORS, EXIT_OK, Command, register
from nndsl.commands._common import collector_paused, print_error

STDIN = "-"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("specs", nargs="+", metavar="SPEC",
                        help="spec files, directories (every *.nn below them), or - for stdin")
    parser.add_argument("--check", action="store_true", help="change nothing; list the specs "
                        "that would change and exit 1 if there are any")
    parser.add_argument("--diff", action="store_true",
                        help="change nothing; print a unified diff of what would change")


def run(args: argparse.Namespace) -> int:
    from nndsl.errors import NndslError, SourceMap

    status = sys.stderr if args.diff or STDIN in args.specs else sys.stdout
    counts = {"changed": 0, "unchanged": 0, "errors": 0}
    for spec in _expand(args.specs):
        text = None
        try:
            text = _read(spec)
            changed = _format_one(spec, text, args, status)
            counts["changed" if changed else "unchanged"] += 1
        except NndslError as e:
            counts["errors"] += 1
            sources = SourceMap({_name(spec): text}) if text is not None else None
            print_error(e, sources, None if spec == STDIN else spec)
    _summary(counts, args, status)
    failed = counts["errors"] or (args.check and counts["changed"])
    return EXIT_ERRORS if failed else EXIT_OK


BOM = "\ufeff"


def _format_one(spec: str, text: str, args: argparse.Namespace, status) -> bool:  # type: ignore[no-untyped-def]
    """Format one spec as the options say; whether its text changes."""
    from nndsl.format import format_text

    mark = BOM if text.startswith(BOM) else ""  # an editor's byte-order mark is kept as it was
    with collector_paused():
        formatted = mark + format_text(text.removeprefix(BOM), _name(spec))
    changed = formatted != text
    if args.diff and changed:
        sys.stdout.write(unified_diff(text, formatted, _name(spec)))
    if args.check or args.diff:
        if changed:
            print(f"would reformat {_name(spec)}", file=status)
    elif spec == STDIN:
        sys.stdout.write(formatted)
    elif changed:
        _write(Path(spec), formatted)
        print(f"reformatted {spec}", file=status)
    return changed


def _expand(specs: list[str]) -> Iterator[str]:
    """The specs named, with each directory replaced by the `*.nn` files below it."""
    for spec in specs:
        path = Path(spec)
        if spec != STDIN and path.is_dir():
            yield from (str(p) for p in sorted(path.rglob("*.nn")))
        else:
            yield spec


def _name(spec: str) -> str:
    return "<stdin>" if spec == STDIN else spec


def _read(spec: str) -> str:
    from nndsl.errors import NndslError

    try:
        if spec == STDIN:
            return sys.stdin.read()
        return Path(spec).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NndslError(f"cannot read {spec}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        reason = "it is not UTF-8 text" if isinstance(e, UnicodeDecodeError) else e.strerror
        raise NndslError(f"cannot read {spec}: {reason}") from None


def _write(path: Path, text: str) -> None:
    """Replace the file atomically (a crash leaves the old one whole), keeping its mode."""
    import os
    import stat

    from nndsl.files import atomic_write_text

    mode = stat.S_IMODE(path.stat().st_mode)
    atomic_write_text(path, text)
    os.chmod(path, mode)


def unified_diff(before: str, after: str, name: str) -> str:
    """A unified diff `patch` can apply; a missing final newline is marked as diff marks it."""
    import difflib

    lines = difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                 name, name, "(original)", "(formatted)")
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in lines)


def _summary(counts: dict[str, int], args: argparse.Namespace, status) -> None:  # type: ignore[no-untyped-def]
    if STDIN in args.specs and len(args.specs) == 1:
        return
    verb = "would be reformatted" if args.check or args.diff else "reformatted"
    parts = [f"{counts['changed']} {_specs(counts['changed'])} {verb}",
             f"{counts['unchanged']} unchanged"]
    if counts["errors"]:
        parts.append(f"{counts['errors']} with errors")
    print(", ".join(parts), file=status)


def _specs(n: int) -> str:
    return "spec" if n == 1 else "specs"


register(Command("fmt", "rewrite specs in the canonical layout (--check for CI)", add_arguments,
                 run, order=15))
