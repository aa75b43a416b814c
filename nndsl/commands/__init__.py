"""The CLI's commands, one module each, registered by name (never an `if command == ...` chain).

A command module calls `register(Command(...))` at import; it must import only the standard
library and nndsl's light modules at the top, so `nndsl --help` stays fast: torch, onnx,
onnxruntime, rich and matplotlib are imported inside `run`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


@dataclass(frozen=True)
class Command:
    """One `nndsl NAME` sub-command: its arguments and what it runs (returning the exit code)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    order: int = 100  # position in `nndsl --help` (lower first)


COMMANDS: dict[str, Command] = {}


def register(command: Command) -> Command:
    if command.name in COMMANDS:
        raise ValueError(f"command {command.name!r} is registered twice")
    COMMANDS[command.name] = command
    return command


def load_all() -> dict[str, Command]:
    """Import every command module (each registers itself) and return the registry."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    return COMMANDS
