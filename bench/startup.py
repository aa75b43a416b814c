"""Case 5, start-up: wall time of `nndsl --help` and of `nndsl check` on a small spec, each a
fresh process, against `python -c pass` in the same interpreter (the floor any Python command
pays). The goal is on the absolute time: under half a second."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from bench.models import SPECS
from bench.report import Row, a_under, row
from bench.timing import Settings

GOAL = 0.5


def nndsl_command() -> list[str]:
    """The installed `nndsl` script beside this interpreter, else the same entry point."""
    script = Path(sys.executable).parent / "nndsl"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from nndsl.cli import main; sys.exit(main())"]


def runner(argv: list[str]) -> Callable[[], None]:
    def run() -> None:
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    return run


def rows(settings: Settings) -> list[Row]:
    nndsl = nndsl_command()
    contenders = {"python -c pass": runner([sys.executable, "-c", "pass"]),
                  "nndsl --help": runner([*nndsl, "--help"]),
                  "nndsl check xor.nn": runner([*nndsl, "check", str(SPECS / "xor.nn")])}
    t = settings.measure(contenders)
    return [row("5 start-up", "fresh process", name, t[name], "python -c pass",
                t["python -c pass"], f"< {GOAL} s", a_under(GOAL))
            for name in ("nndsl --help", "nndsl check xor.nn")]
