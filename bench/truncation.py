"""Case 10, truncated BPTT: peak memory of training specs/sine_truncated.nn (an LSTM on sine
waves, NumPy reference engine) on sequences of 100 and 1,000 steps, with `truncate = 10` and
with full backpropagation through time. The NumPy engine keeps every value a step computes for
its backward pass (its tape), so full BPTT holds the whole sequence's values and truncation a
chunk's: with `truncate = 10` the peak should hardly grow with the length (goal: under 2x from
100 to 1,000 steps), while full BPTT's grows with it (about tenfold; the row asks over 5x).
Peaks are tracemalloc's (NumPy reports its arrays to it), measured over the training loop
alone: the data, generated before, is counted in both."""

from __future__ import annotations

import re
import tempfile
import tracemalloc
from pathlib import Path

from bench.models import SPECS
from bench.report import Row, ratio_at_least, ratio_at_most, row
from bench.timing import Settings, Timing
from nndsl.backend import make_engine
from nndsl.data.dataset import load_dataset
from nndsl.initialize import initialize
from nndsl.program import load
from nndsl.training.run import pick_train, train_in_memory

CASE = "10 truncated BPTT"
SPEC = SPECS / "sine_truncated.nn"
LENGTHS, QUICK_LENGTHS = (100, 1000), (20, 200)
CHUNK, SEQUENCES = 10, 8
MIB = 2**20


def spec_text(length: int, truncate: bool) -> str:
    """The shipped spec on `SEQUENCES` waves of `length` steps, one batch, one epoch."""
    text = SPEC.read_text(encoding="utf-8")
    text = text.replace('builtin("long_sine")',
                        f'builtin("long_sine", n={SEQUENCES}, length={length})')
    text = re.sub(r"batch\s*= \d+", f"batch = {SEQUENCES}", text)
    text = re.sub(r"epochs\s*= \d+", "epochs = 1", text)
    return re.sub(r"truncate\s*= \d+", f"truncate = {CHUNK}" if truncate else "", text)


def peak_mib(spec_file: Path) -> float:
    """tracemalloc's peak over one epoch of training, in MiB (the data loaded before)."""
    program, _ = load(spec_file)
    train = pick_train(program, None)
    graph = program.model(train.model)
    data = load_dataset({**dict(graph.inputs), **dict(train.targets)}, [graph], train, SPECS)
    weights = {graph.name: initialize(graph, 0)}
    engine = make_engine("numpy", "cpu")
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        train_in_memory(program, train, engine, data, weights)
        return tracemalloc.get_traced_memory()[1] / MIB
    finally:
        tracemalloc.stop()


def rows(settings: Settings) -> list[Row]:
    short, long = QUICK_LENGTHS if settings.quick else LENGTHS
    peaks: dict[tuple[int, bool], Timing] = {}
    with tempfile.TemporaryDirectory(prefix="nndsl-bench-") as tmp:
        for length in (short, long):
            for truncate in (True, False):
                path = Path(tmp) / f"sine_{length}_{truncate}.nn"
                path.write_text(spec_text(length, truncate), encoding="utf-8")
                value = peak_mib(path)  # tracemalloc counts exactly: one run is the figure
                peaks[length, truncate] = Timing(value, (value,))
    grow = long / short
    return [
        row(CASE, f"truncate = {CHUNK}: {long} vs {short} steps", f"peak at {long} steps",
            peaks[long, True], f"peak at {short} steps", peaks[short, True],
            "< 2x (bounded by the chunk)", ratio_at_most(2.0), unit="MiB"),
        row(CASE, f"full BPTT: {long} vs {short} steps", f"peak at {long} steps",
            peaks[long, False], f"peak at {short} steps", peaks[short, False],
            f"> {grow / 2:g}x (grows with the sequence)", ratio_at_least(grow / 2), unit="MiB"),
        row(CASE, f"{long} steps: truncate = {CHUNK} vs full BPTT", f"truncate = {CHUNK}",
            peaks[long, True], "full BPTT", peaks[long, False], "< 0.5x", ratio_at_most(0.5),
            unit="MiB"),
    ]
