"""Case 7, neuroevolution: seconds per generation of `evolve` as its population grows from 16 to
256 members (specs/xor_evolve.nn, NumPy and torch on the CPU). Every member is scored in one
batched pass of the model, so a generation of 256 members should cost far less than 16
generations of 16; each row is one population size against 16, and its goal is a ratio below
the ratio of the sizes (growth slower than linear)."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.models import SPECS
from bench.report import Row, ratio_at_most, row
from bench.timing import Settings
from nndsl.backend import make_engine
from nndsl.data.dataset import load_dataset
from nndsl.initialize import initialize
from nndsl.program import load
from nndsl.training.run import pick_train, train_in_memory

SIZES, QUICK_SIZES = (16, 64, 256), (16, 32)
GENERATIONS, QUICK_GENERATIONS = 40, 2
BACKENDS = ("numpy", "torch")
CASE = "7 evolution"
SPEC = SPECS / "xor_evolve.nn"


def prepared(spec_file: Path, backend: str, generations: int) -> Callable[[], object]:
    """`generations` generations of the spec's evolve trainer, in memory (no files): the spec
    and its data loaded once, outside the timing."""
    program, _ = load(spec_file)
    train = pick_train(program, None)
    graph = program.model(train.model)
    data = load_dataset({**dict(graph.inputs), **dict(train.targets)}, [graph], train, SPECS)
    weights = {graph.name: initialize(graph, 0)}
    engine = make_engine(backend, "cpu")
    return lambda: train_in_memory(program, train, engine, data, weights, epochs=generations)


def rows(settings: Settings) -> list[Row]:
    sizes = QUICK_SIZES if settings.quick else SIZES
    count = QUICK_GENERATIONS if settings.quick else GENERATIONS
    text = SPEC.read_text(encoding="utf-8")
    out = []
    with tempfile.TemporaryDirectory(prefix="nndsl-bench-") as tmp:
        files = {}
        for n in sizes:
            files[n] = Path(tmp) / f"xor_evolve_{n}.nn"
            files[n].write_text(re.sub(r"population=\d+", f"population={n}", text),
                                encoding="utf-8")
        for backend in BACKENDS:
            times = settings.measure({str(n): prepared(files[n], backend, count)
                                      for n in sizes})
            per = {n: times[str(n)].scaled(1 / count) for n in sizes}
            small = sizes[0]
            out += [row(CASE, f"xor, {backend}: population {n} vs {small}",
                        f"generation of {n}", per[n], f"generation of {small}", per[small],
                        f"< {n // small}x (sublinear)", ratio_at_most(n / small))
                    for n in sizes[1:]]
    return out
