"""`python -m bench`: measure nndsl against hand-written PyTorch and onnxruntime baselines,
print one table of side-by-side ratios and write it as JSON.

    python -m bench                       # every case, 5 repeats (bench/results.json)
    python -m bench --quick --out r.json  # one repeat on tiny sizes (the smoke test)
    python -m bench --cases training,inference --repeats 7
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.timing import Settings, pin_threads

RESULTS = Path(__file__).resolve().parent / "results.json"
# the case names, as bench.suite registers them (listed here: importing the suite imports torch)
CASES = ("training", "inference", "reference", "frontend", "startup", "evolution", "diagnostics",
         "largedata", "truncation", "parallel", "stepoptions", "outofcore",
         "evalmemory", "gpu")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="one repeat, no warm-up, tiny sizes: checks the suite runs")
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated subset of {','.join(CASES)} (default: all)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="repeats per figure (default 5; 1 with --quick)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for torch, onnxruntime and NumPy alike (default 1)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"JSON file to write (default {RESULTS.name} beside this file; "
                        "none with --quick)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        print(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}",
              file=sys.stderr)
        return 2
    pin_threads(args.threads)  # before NumPy and torch are imported (by bench.suite)
    from bench.suite import run

    repeats = args.repeats if args.repeats is not None else 1 if args.quick else 5
    settings = Settings(quick=args.quick, repeats=repeats, warmup=0 if args.quick else 1,
                        threads=args.threads)
    report = run(settings, cases)
    print(report.render())
    out = args.out if args.out is not None else None if args.quick else RESULTS
    if out is not None:
        report.write(out)
        print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
