"""Spec fuzzing: generated and mutated specs never crash, hang or lose their position.

Every case runs load + check in-process under a per-case time limit (tests/fuzz/harness.py);
the outcome must be success or nndsl errors that render with file:line:col, the source line and
a caret. A spec that checked also runs on the backends: NumPy forward at a second size, ONNX
export + onnxruntime (agreeing with NumPy), NumPy loss + gradient of its train block.

Cases per run (hypothesis, derandomized so CI sees the same cases every run; set
NNDSL_FUZZ_RANDOM=1 for fresh ones and NNDSL_FUZZ_SCALE=N for N times as many, e.g. a long
local campaign; a failure prints the spec text and a @reproduce_failure blob):

- GENERATED specs drawn from the grammar and the op registry (tests/fuzz/strategies.py); at
  least a third must check, and every one that checks runs on the backends;
- MUTATED specs: lexeme and AST-aware edits of every spec in specs/ and tests/language_examples;
  one in BACKEND_EVERY of those that still check runs on the backends (they are near copies of
  the shipped specs, whose backends other tests cover);
- MUTATED_GENERATED: AST-aware edits of generated specs.
"""

from __future__ import annotations

import os
import zlib
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, currently_in_test_context, given, note, settings
from hypothesis import strategies as st

from .conftest import LANGUAGE_EXAMPLES, ROOT, SPECS
from .fuzz.harness import check_case, run_backends
from .fuzz.mutate import mutate
from .fuzz.strategies import GeneratedSpec, specs
from .fuzz.values import Drawer

SCALE = int(os.environ.get("NNDSL_FUZZ_SCALE", "1"))
GENERATED, MUTATED, MUTATED_GENERATED = 2500 * SCALE, 2000 * SCALE, 500 * SCALE
BACKEND_EVERY = 8
MIN_CHECKED = 1 / 3
CORPUS = [(p, p.read_text(encoding="utf-8")) for p in [*SPECS, *LANGUAGE_EXAMPLES]]
GENERATED_PATH = ROOT / "specs" / "generated.nn"  # beside specs/lib, which specs may import
FUZZ = settings(deadline=None, database=None, derandomize=not os.environ.get("NNDSL_FUZZ_RANDOM"),
                suppress_health_check=list(HealthCheck), print_blob=True)


def run_case(path: Path, text: str, stats: Counter[str], backends: bool = True) -> None:
    if currently_in_test_context():
        note(f"--- {path.name} ---\n{text}")
    checked = check_case(path, text)
    stats["checked" if checked else "errors"] += 1
    if checked and backends:
        stats["backends"] += 1
        run_backends(*checked)


def test_generated_specs() -> None:
    stats: Counter[str] = Counter()

    @settings(FUZZ, max_examples=GENERATED)
    @given(specs())
    def case(spec: GeneratedSpec) -> None:
        run_case(GENERATED_PATH, spec.text, stats)
        stats["faulty"] += spec.faulty

    case()
    total = stats["checked"] + stats["errors"]
    print(f"generated: {dict(stats)}")
    assert total >= GENERATED * 0.9 and stats["checked"] >= MIN_CHECKED * total, dict(stats)


def test_mutated_specs() -> None:
    stats: Counter[str] = Counter()

    @settings(FUZZ, max_examples=MUTATED)
    @given(st.data())
    def case(data: st.DataObject) -> None:
        path, text = data.draw(st.sampled_from(CORPUS))
        mutant = mutate(Drawer(data.draw), text)
        run_case(path, mutant, stats, zlib.crc32(mutant.encode()) % BACKEND_EVERY == 0)

    case()
    print(f"mutated: {dict(stats)}")
    assert stats["checked"] + stats["errors"] >= MUTATED * 0.9, dict(stats)


def test_mutated_generated_specs() -> None:
    stats: Counter[str] = Counter()

    @settings(FUZZ, max_examples=MUTATED_GENERATED)
    @given(specs(), st.data())
    def case(spec: GeneratedSpec, data: st.DataObject) -> None:
        run_case(GENERATED_PATH, mutate(Drawer(data.draw), spec.text), stats)

    case()
    print(f"mutated generated: {dict(stats)}")
    assert stats["checked"] + stats["errors"] >= MUTATED_GENERATED * 0.9, dict(stats)


def test_random_text_gives_nndsl_errors() -> None:
    stats: Counter[str] = Counter()
    for text in ["", "\x00", "model", "model m {", "}}}", "model m { input x: [", "🙂" * 10,
                 "model m { input x: [batch, 0] output x }", "train t { }"]:
        run_case(Path("fuzz.nn"), text, stats)
    assert stats["errors"] == 9
