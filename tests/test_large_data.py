"""Data larger than memory: memory-mapped .npy files and uncompressed npz members train as the
same data loaded in memory does (bit for bit), are checked a chunk at a time with the right row
in messages, resume exactly; a large CSV is converted once to a cached .npy."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from nndsl.cli import main
from nndsl.data import csv_cache, stream
from nndsl.data.dataset import load_dataset
from nndsl.errors import NndslError
from nndsl.npz import open_npy
from nndsl.program import load
from nndsl.training.run import plan

from .conftest import assert_same_run, stop_after_step

SPEC = """
model net {{
  input x: f64[batch, 6]
  h = x -> dense(8) -> tanh -> dropout(rate=0.1)
  p = h -> dense(3) -> softmax
  output p
}}
train net {{
  data = {data}
  target y: [batch]
  loss = cross_entropy(p, y)
  metrics = [accuracy, f1]
  optimizer = adam(lr=0.01)
  batch = 16
  epochs = 2
  split = 0.25
}}
"""
ROWS = 300


def _write(folder: Path, data: str) -> Path:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((ROWS, 6))
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)
    np.savez(folder / "d.npz", x=x, y=y)
    np.savez_compressed(folder / "z.npz", x=x, y=y)
    (folder / "s.nn").write_text(SPEC.format(data=data))
    return folder / "s.nn"


def _train(spec: Path, run: Path, *extra: str) -> int:
    return main(["train", str(spec), "--backend", "numpy", "--run-dir", str(run), "--quiet",
                 "--checkpoint-every", "0", *extra])


def _data(spec: Path) -> object:
    program, _ = load(spec)
    train = program.trains[0]
    return load_dataset(plan(program, train).data, [program.model("net")], train, spec.parent)


@pytest.mark.parametrize("data", ['npy(x="x.npy", y="y.npy")', 'npz("d.npz")'])
def test_memory_mapped_data_trains_as_in_memory(tmp_path: Path, data: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _write(tmp_path, data)
    assert _train(spec, tmp_path / "memory") == 0
    assert not stream.streamed(_data(spec).train)  # type: ignore[attr-defined]
    monkeypatch.setenv("NNDSL_STREAM_BYTES", "0")
    assert stream.streamed(_data(spec).train)  # type: ignore[attr-defined]
    assert _train(spec, tmp_path / "mapped") == 0
    assert_same_run(tmp_path / "memory", tmp_path / "mapped")


def test_a_compressed_member_is_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNDSL_STREAM_BYTES", "0")
    data = _data(_write(tmp_path, 'npz("z.npz")'))
    assert not stream.streamed(data.train)  # type: ignore[attr-defined]


def test_the_split_copies_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNDSL_STREAM_BYTES", "0")
    data = _data(_write(tmp_path, 'npy(x="x.npy", y="y.npy")'))
    x = data.train["x"]  # type: ignore[attr-defined]
    assert isinstance(x, stream.Mapped) and isinstance(x.raw, np.ndarray)
    assert not x.raw.flags.owndata and x.index is not None and x[:4].dtype == np.float64
    want = np.load(tmp_path / "x.npy")
    np.testing.assert_array_equal(x[np.array([3, 0])], want[x.index[[3, 0]]])


@pytest.mark.skipif(stream.file_resident() is None, reason="the system does not say")
def test_rows_read_at_random_keep_little_of_the_file_resident(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of rows picked at random from a 64 MiB file: what the process holds of it stays
    under the release budget plus one group of rows (each of which may map a 2 MiB folio),
    where reading a batch at once mapped up to the whole file."""
    monkeypatch.setattr(stream, "RELEASE_BYTES", 2**20)
    monkeypatch.setattr(stream, "GROUP_ROWS", 4)
    want = np.arange(65536 * 256, dtype=np.float32).reshape(65536, 256)
    np.save(tmp_path / "x.npy", want)
    mapped = open_npy(tmp_path / "x.npy", "data file", stream_over=0)
    assert isinstance(mapped, stream.Mapped)
    base, held = stream.file_resident(), []
    touched = stream.Pages.touched

    def counted(pages: stream.Pages, nbytes: int) -> None:  # what is held before any release
        held.append(stream.file_resident() - base)  # type: ignore[operator]
        touched(pages, nbytes)

    monkeypatch.setattr(stream.Pages, "touched", counted)
    rng = np.random.default_rng(0)
    for _ in range(8):
        picked = rng.permutation(len(want))[:1024]
        np.testing.assert_array_equal(mapped[picked], want[picked])
    assert max(held) <= 2**20 + 4 * 2 * 2**20 + 4 * 2**20  # budget, one group, slack: 13 MiB


def test_mapped_data_resumes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNDSL_STREAM_BYTES", "0")
    spec = _write(tmp_path, 'npy(x="x.npy", y="y.npy")')
    assert _train(spec, tmp_path / "whole") == 0
    with monkeypatch.context() as m:
        stop_after_step(m, 20)
        assert _train(spec, tmp_path / "stopped") == 130
    assert main(["train", "--resume", str(tmp_path / "stopped"), "--quiet"]) == 0
    assert_same_run(tmp_path / "whole", tmp_path / "stopped")


def test_mapped_data_is_checked_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Errors in a later chunk name the row counted from the start of the file."""
    monkeypatch.setenv("NNDSL_STREAM_BYTES", "0")
    monkeypatch.setattr(stream, "CHUNK_BYTES", 48 * 10)  # 10 rows of x per chunk
    spec = _write(tmp_path, 'npy(x="x.npy", y="y.npy")')
    x = np.load(tmp_path / "x.npy")
    x[123, 4] = np.nan
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(NndslError, match="holds NaN") as e:
        _data(spec)
    assert "(123, 4)" in str(e.value.received)
    y = np.load(tmp_path / "y.npy")
    y[257] = 3
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "x.npy", np.nan_to_num(x))
    monkeypatch.setattr(stream, "CHUNK_BYTES", 8 * 10)
    with pytest.raises(NndslError, match="at row 258: outside the 3 class"):
        _data(spec)


def _csv(folder: Path, rows: int = 200) -> Path:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((rows, 6))
    y = (x[:, 0] > 0).astype(int)
    lines = ["a,b,c,d,e,f,y"] + [",".join(f"{v:.6f}" for v in r) + f",{t}"
                                 for r, t in zip(x, y, strict=True)]
    (folder / "d.csv").write_text("\n".join(lines) + "\n")
    return folder / "d.csv"


def test_a_large_csv_is_converted_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNDSL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NNDSL_CSV_CACHE_BYTES", "0")
    monkeypatch.setattr(csv_cache, "CHUNK_ROWS", 64)
    file = _csv(tmp_path)
    converted: list[Path] = []
    convert = csv_cache.convert

    def counting(*args: object) -> object:
        converted.append(args[-1])  # type: ignore[arg-type]
        return convert(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(csv_cache, "convert", counting)
    first = csv_cache.cached_table(file, True, ",")
    assert first is not None and first.names == ["a", "b", "c", "d", "e", "f", "y"]
    want = np.loadtxt(file, delimiter=",", skiprows=1, dtype=np.float32)
    np.testing.assert_array_equal(first.numbers([0, 6])[:], want[:, [0, 6]])
    again = csv_cache.cached_table(file, True, ",")
    assert again is not None and len(converted) == 1
    _csv(tmp_path, rows=150)  # the file changes: converted again, the old entry removed
    os.utime(file, ns=(1, 1))
    changed = csv_cache.cached_table(file, True, ",")
    assert changed is not None and len(converted) == 2 and len(changed.numbers([0])) == 150
    assert [p.suffix for p in sorted(converted[1].parent.iterdir())] == [".json", ".npy"]


def test_a_bad_cell_of_a_large_csv_names_its_line(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNDSL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NNDSL_CSV_CACHE_BYTES", "0")
    monkeypatch.setattr(csv_cache, "CHUNK_ROWS", 16)
    file = _csv(tmp_path)
    lines = file.read_text().splitlines()
    lines[100] = lines[100].replace(lines[100].split(",")[2], "oops", 1)
    file.write_text("\n".join(lines) + "\n")
    with pytest.raises(NndslError, match=r"data row 100, column 3 \('c'\): 'oops' is not") as e:
        csv_cache.cached_table(file, True, ",")
    assert e.value.span is not None and e.value.span.line == 101
    assert not list((tmp_path / "cache").rglob("*.npy"))


def test_a_large_csv_trains_as_the_text_path(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _csv(tmp_path)
    spec = tmp_path / "s.nn"
    spec.write_text(SPEC.format(data='csv("d.csv")').replace("f64[batch, 6]", "[batch, 6]")
                    .replace("dense(3)", "dense(2)"))
    assert _train(spec, tmp_path / "text") == 0
    monkeypatch.setenv("NNDSL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NNDSL_CSV_CACHE_BYTES", "0")
    assert _train(spec, tmp_path / "cached") == 0
    assert_same_run(tmp_path / "text", tmp_path / "cached")


LABELS = ("setosa", "versicolor", "virginica")


def _labelled_csv(folder: Path, rows: int = 200, seed: int = 2) -> Path:
    """Six number columns and a text label in the middle (a label first seen late in the file,
    so the order labels appear in is not their sorted order)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, 6))
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5)
    y[:40] = np.minimum(y[:40], 1) + 1  # the first rows are versicolor or virginica
    lines = ["a,b,c,species,d,e,f"] + [",".join([*(f"{v:.6f}" for v in r[:3]), LABELS[t],
                                                  *(f"{v:.6f}" for v in r[3:])])
                                       for r, t in zip(x, y, strict=True)]
    (folder / "d.csv").write_text("\n".join(lines) + "\n")
    return folder / "d.csv"


def _cached(monkeypatch: pytest.MonkeyPatch, folder: Path, chunk: int = 16) -> None:
    monkeypatch.setenv("NNDSL_CACHE_DIR", str(folder / "cache"))
    monkeypatch.setenv("NNDSL_CSV_CACHE_BYTES", "0")
    monkeypatch.setattr(csv_cache, "CHUNK_ROWS", chunk)


def test_a_large_csv_with_text_labels_trains_as_the_text_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    _labelled_csv(tmp_path)
    spec = tmp_path / "s.nn"
    spec.write_text(SPEC.format(data='csv("d.csv")').replace("f64[batch, 6]", "[batch, 6]")
                    .replace("target y", "target species").replace("(p, y)", "(p, species)"))
    assert _train(spec, tmp_path / "text") == 0
    _cached(monkeypatch, tmp_path)
    assert _train(spec, tmp_path / "cached") == 0
    assert_same_run(tmp_path / "text", tmp_path / "cached")
    for run in ("text", "cached"):
        stored = json.loads((tmp_path / run / "data.json").read_text())
        assert stored["labels"] == {"species": list(LABELS)}
        assert stored["columns"]["x"] == ["a", "b", "c", "d", "e", "f"]
    table = csv_cache.cached_table(tmp_path / "d.csv", True, ",")
    lines = (tmp_path / "d.csv").read_text().splitlines()
    first = {label: next(i for i, t in enumerate(lines, 1) if f",{label}," in t)
             for label in LABELS}
    assert table is not None and table.labels[3] == first  # where each label first appears


def test_a_large_csv_keeps_a_runs_labels_and_names_an_unknown_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = _labelled_csv(tmp_path)
    _cached(monkeypatch, tmp_path)
    table = csv_cache.cached_table(file, True, ",")
    assert table is not None
    ids, labels = table.label_ids(3, None)  # type: ignore[misc]
    want = [LABELS.index(row.split(",")[3]) for row in file.read_text().splitlines()[1:]]
    assert labels == list(LABELS) and ids.tolist() == want
    kept = ["virginica", "setosa", "versicolor", "unused"]  # a run's own order: kept
    ids, labels = table.label_ids(3, kept)  # type: ignore[misc]
    assert labels == kept and ids.tolist() == [kept.index(LABELS[t]) for t in want]
    text = file.read_text().replace("setosa", "setoza")
    file.write_text(text)
    os.utime(file, ns=(2, 2))
    table = csv_cache.cached_table(file, True, ",")
    assert table is not None
    with pytest.raises(NndslError, match="'setoza' is not one of the run's 3") as e:
        table.label_ids(3, list(LABELS))
    first = next(i for i, t in enumerate(text.splitlines(), 1) if "setoza" in t)
    assert e.value.span is not None and e.value.span.line == first
    assert e.value.hint == "did you mean 'setosa'?"


@pytest.mark.parametrize(("cell", "message"), [
    ("", "data row 57, column 4 ('species'): an empty cell is not a class label"),
    ("3.5", "data row 57, column 4 ('species'): '3.5' is not a class label"),
])
def test_a_label_column_holds_only_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          cell: str, message: str) -> None:
    file = _labelled_csv(tmp_path)
    lines = file.read_text().splitlines()
    fields = lines[57].split(",")
    fields[3] = cell
    lines[57] = ",".join(fields)
    file.write_text("\n".join(lines) + "\n")
    _cached(monkeypatch, tmp_path)
    with pytest.raises(NndslError) as e:
        csv_cache.cached_table(file, True, ",")
    assert message in e.value.message and e.value.span is not None and e.value.span.line == 58
    assert not list((tmp_path / "cache").rglob("*.npy"))


def test_a_label_column_cannot_be_an_input(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    file = _labelled_csv(tmp_path)
    _cached(monkeypatch, tmp_path)
    table = csv_cache.cached_table(file, True, ",")
    assert table is not None
    first = file.read_text().splitlines()[1].split(",")[3]
    with pytest.raises(NndslError, match=rf"data row 1, column 4 \('species'\): '{first}' is "
                       "not a number") as e:
        table.numbers([2, 3])
    assert e.value.span is not None and e.value.span.line == 2
