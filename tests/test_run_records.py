"""What a run records besides its weights: matplotlib plots (loss.png and one per metric, read
back and checked for size and ink; log scale over two decades; phases marked), `nndsl plot`'s
overlay of runs, progress lines with every metric (and on a terminal, bars whose epoch lines
stay), config.json with overrides, device and versions, and TensorBoard events when installed."""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import pytest

from nndsl.cli import main

SPEC = """model clf {
  input x: [batch, 1, 8, 8]
  h = x -> flatten -> dense(16) -> relu
  probs = h -> dense(10) -> softmax
  output probs
}

train clf {
  data = builtin("digits", n=300)
  target y: [batch]
  loss = cross_entropy(probs, y)
  optimizer = adam(lr=0.01)
  metrics = [accuracy, f1]
  split = 0.25
  batch = 32
  epochs = 6
  seed = 2
}
"""


def _image(path: Path) -> object:
    from matplotlib.image import imread

    return imread(path)


def _assert_drawn(path: Path, width: int = 640, height: int = 400) -> None:
    image = _image(path)
    assert image.shape[:2] == (height, width), path  # type: ignore[attr-defined]
    assert image[..., :3].std() > 0.05, f"{path} is blank"  # type: ignore[index]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("records")
    spec = folder / "clf.nn"
    spec.write_text(SPEC, encoding="utf-8")
    err = io.StringIO()
    stderr, sys.stderr = sys.stderr, err
    try:
        assert main(["train", str(spec), "--backend", "numpy", "--epochs", "3", "--run-dir",
                     str(folder / "run")]) == 0
    finally:
        sys.stderr = stderr
    return folder, err.getvalue()


def test_every_metric_gets_a_plot(trained: tuple[Path, str]) -> None:
    run = trained[0] / "run"
    for name in ("loss.png", "plots/accuracy.png", "plots/f1.png"):
        _assert_drawn(run / name)
    assert not (run / "plots" / "lr.png").exists()  # a constant rate is not worth a plot


def test_the_run_has_a_picture_of_its_network(trained: tuple[Path, str]) -> None:
    import xml.etree.ElementTree as ET

    picture = trained[0] / "run" / "network.svg"
    root = ET.parse(picture).getroot()  # a whole SVG document
    assert root.tag.endswith("svg") and "dense" in picture.read_text(encoding="utf-8")
    assert not list((trained[0] / "run").glob("*.tmp*"))


def test_progress_lines_show_every_metric(trained: tuple[Path, str]) -> None:
    lines = [line for line in trained[1].splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    for key in ("loss", "lr", "accuracy", "f1", "val_loss", "val_accuracy", "val_f1"):
        assert f" {key} " in lines[-1], key
    assert "exported the last epoch (epoch 3)" in trained[1]


def test_config_records_overrides_device_versions_and_the_spec_hash(
        trained: tuple[Path, str]) -> None:
    folder = trained[0]
    config = json.loads((folder / "run" / "config.json").read_text(encoding="utf-8"))
    assert config["epochs"] == 3 and config["command_line"]["epochs"] == 3
    assert config["batch"] == 32 and config["shuffle"] is True  # defaults as they ran
    assert (config["backend"], config["device"], config["rng"]) == ("numpy", "cpu", "device")
    assert config["versions"]["nndsl"] and config["versions"]["numpy"]
    assert set(config["versions"]) >= {"torch", "onnxruntime"}
    digest = hashlib.sha256((folder / "clf.nn").read_bytes()).hexdigest()
    assert config["spec_sha256"] == digest
    assert config["exported"].startswith("exported the last epoch")


def test_tensorboard_events_hold_each_epoch(trained: tuple[Path, str]) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained[0] / "run" / "tensorboard"))
    events.Reload()
    assert {"loss", "val_loss", "accuracy", "val_f1"} <= set(events.Tags()["scalars"])
    rows = (trained[0] / "run" / "metrics.csv").read_text(encoding="utf-8").splitlines()[1:]
    steps = [int(line.split(",")[1]) for line in rows]
    assert [e.step for e in events.Scalars("val_loss")] == steps and len(steps) == 3


def test_without_tensorboard_a_run_writes_no_events(tmp_path: Path, write_spec,  # type: ignore[no-untyped-def]
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard.summary.writer.record_writer", None)
    spec = write_spec(SPEC.replace("epochs = 6", "epochs = 1"))
    assert main(["train", str(spec), "--backend", "numpy", "--quiet", "--run-dir",
                 str(tmp_path / "run")]) == 0
    assert not (tmp_path / "run" / "tensorboard").exists()


def test_events_are_kept_then_written_every_few_seconds_and_a_resume_marks_its_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tensorboard")
    from types import SimpleNamespace

    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
    from tensorboard.compat.proto.event_pb2 import SessionLog

    from nndsl.training import records

    session = SimpleNamespace(step=4, diagnostics=SimpleNamespace(rows=[]))
    events = records.Events.open(tmp_path, session, resumed=True)  # type: ignore[arg-type]
    assert events is not None
    events({"kind": "epoch", "step": 5, "epoch": 1, "loss": 0.5})
    assert not (tmp_path / "tensorboard").exists()  # kept: a few seconds have not passed
    monkeypatch.setattr(records.Events, "FLUSH_SECONDS", 0.0)
    events({"kind": "epoch", "step": 6, "epoch": 2, "loss": 0.25, "lr": 0.1})
    (file,) = (tmp_path / "tensorboard").iterdir()
    got = list(LegacyEventFileLoader(str(file)).Load())  # on disk while the run goes on
    assert got[0].file_version == "brain.Event:2"
    assert got[1].session_log.status == SessionLog.START and got[1].step == 4
    assert [(e.step, [(v.tag, v.simple_value) for v in e.summary.value]) for e in got[2:]] == \
        [(5, [("loss", 0.5)]), (6, [("loss", 0.25), ("lr", pytest.approx(0.1))])]
    events.close()


def test_log_scale_over_two_decades_and_phases_marked() -> None:
    from matplotlib.figure import Figure

    from nndsl.plot import draw

    rows = [{"kind": "epoch", "epoch": i + 1, "step": i, "phase": "a" if i < 3 else "b",
             "loss": 10.0 ** -i} for i in range(6)]
    ax = Figure().subplots()
    draw(ax, rows, ["loss"], "loss")
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.texts] == ["a", "b"]
    assert len(ax.lines) == 3  # a segment per phase, and the line where phase b begins
    flat = Figure().subplots()
    draw(flat, [{**r, "loss": 1.0 + r["step"], "phase": "a"} for r in rows], ["loss"], "loss")
    assert flat.get_yscale() == "linear" and not flat.texts


def test_each_column_is_read_once_to_choose_the_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    from nndsl import plot

    rows = [{"kind": "epoch", "step": i, "epoch": i, "phase": "main", "loss": 1 / i, "lr": 0.01,
             "val_loss": "", "accuracy": 0.5} for i in range(1, 201)]
    read: list[str] = []
    numbers = plot._numbers
    monkeypatch.setattr(plot, "_numbers", lambda rows, key: read.append(key) or numbers(rows, key))
    assert plot.groups(rows) == {"loss": ["loss"], "accuracy": ["accuracy"]}
    assert sorted(read) == ["accuracy", "loss", "lr", "val_loss"]  # left out: once, not per row


def _histories() -> dict[str, list[dict[str, object]]]:
    """Histories whose plots differ in what a drawing decides: markers or not (30 points), a
    log scale, phases, step rows, gaps, one point, none."""
    def rows(n: int, **kw: object) -> list[dict[str, object]]:
        return [{"kind": "epoch", "epoch": i, "step": 10 * i, "phase": "a", "loss": 2.0 / i,
                 "val_loss": 2.5 / i, "accuracy": 1 - 1 / (i + 1), "lr": 0.1 * 0.5 ** (i // 3),
                 **kw} for i in range(1, n + 1)]
    return {"few": rows(6), "many": rows(45), "one": rows(1), "none": [],
            "log": [{**r, "loss": 10.0 ** -r["epoch"]} for r in rows(8)],
            "phases": [{**r, "phase": "ab"[r["epoch"] > 4]} for r in rows(9)],
            "steps": [{**r, "kind": "step"} for r in rows(12)],
            "gaps": [{**r, "val_loss": "" if r["epoch"] % 2 else 1.0} for r in rows(7)]}


@pytest.mark.parametrize("history", list(_histories()))
def test_a_spare_figure_draws_the_bytes_of_a_new_one(history: str) -> None:
    from nndsl import plot

    rows = _histories()[history]
    for name, keys in plot.history_files(rows).values() or [("loss", ["loss"])]:
        new = plot.history_plot(rows, name, keys)
        plot.prepare_figure()
        assert plot.history_plot(rows, name, keys) == new
        assert plot.spare_figures() == 0


def test_spare_figures_share_one_renderer_and_draw_the_bytes_of_new_ones() -> None:
    from nndsl import plot

    histories = _histories()
    plots = [(histories[h], name, keys) for h in ("few", "log", "many", "phases", "few")
             for name, keys in plot.history_files(histories[h]).values()]
    new = [plot.history_plot(*p) for p in plots]
    for _ in plots:
        plot.prepare_figure()
    assert len({id(fig.canvas.get_renderer()) for fig, _ in plot._SPARE}) == 1
    assert all(len(ax.yaxis.majorTicks) >= plot.TICKS_AHEAD for _, (ax,) in plot._SPARE)
    assert [plot.history_plot(*p) for p in plots] == new  # in turn, on the one renderer
    assert plot.spare_figures() == 0


@pytest.mark.parametrize("history", ["few", "log", "steps", "phases"])
def test_an_x_label_put_where_matplotlib_measured_it_draws_the_same_pixels(
        history: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from nndsl import plot

    rows = _histories()[history]
    name, keys = next(iter(plot.history_files(rows).values()))
    plot.history_plot(rows, name, keys)  # the first figure is placed by matplotlib
    assert plot._LABEL_DROP
    placed = plot.history_plot(rows, name, keys)
    monkeypatch.setattr(plot, "_LABEL_DROP", [])  # matplotlib places it (and measures) again
    assert plot.history_plot(rows, name, keys) == placed
    assert Image.open(io.BytesIO(placed)).mode == "RGB"  # opaque: no alpha channel


def test_a_live_terminal_keeps_every_epoch_line() -> None:
    from rich.console import Console

    from nndsl.progress import Reporter

    out = io.StringIO()
    reporter = Reporter("clf", {"main": 2}, console=Console(file=out, force_terminal=True,
                                                            width=160))
    for epoch in (1, 2):
        for done in range(1, 5):
            reporter.step(done, 4)
        reporter({"kind": "epoch", "epoch": epoch, "step": 4 * epoch, "phase": "main",
                  "loss": 1.0 / epoch, "a": 0.1, "b": 0.2, "c": 0.3, "val_d": 0.4})
    reporter.summary(["exported epoch 2"])
    text = out.getvalue()
    assert "epoch 1/2  step 4  loss 1  a 0.1  b 0.2  c 0.3  val_d 0.4" in text
    assert "epoch 2/2  step 8" in text and "exported epoch 2" in text
    assert "steps" in text  # the bar of the epoch's steps was drawn


def test_nndsl_plot_overlays_runs(trained: tuple[Path, str], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    run = trained[0] / "run"
    other = tmp_path / "other"
    other.mkdir()
    rows = (run / "metrics.csv").read_text(encoding="utf-8").splitlines()
    (other / "metrics.csv").write_text("\n".join(rows[:3]) + "\n", encoding="utf-8")
    out = tmp_path / "both.png"
    assert main(["plot", str(run), str(other), "-o", str(out)]) == 0
    _assert_drawn(out, 1280, 800)  # loss, accuracy, f1: three panels, two columns
    assert main(["plot", str(run), "-o", str(tmp_path / "loss.png"), "--metric", "loss"]) == 0
    _assert_drawn(tmp_path / "loss.png")
    capsys.readouterr()
    assert main(["plot", str(run), str(tmp_path / "missing"), "-o", str(out)]) == 1
    assert "has no metrics.csv" in capsys.readouterr().err
    assert main(["plot", str(run), "-o", str(tmp_path / "p.txt")]) == 1
    assert "unknown picture format" in capsys.readouterr().err
    assert main(["plot", str(run), "--metric", "recall", "-o", str(out)]) == 1
    assert "recorded no recall" in capsys.readouterr().err


def test_overwrite_leaves_nothing_of_the_old_run(tmp_path: Path, write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = write_spec(SPEC.replace("epochs = 6", "epochs = 1"))
    run = tmp_path / "run"
    assert main(["train", str(spec), "--backend", "numpy", "--quiet", "--run-dir",
                 str(run)]) == 0
    (run / "diagnostics.csv").write_text("stale", encoding="utf-8")
    (run / "plots" / "old.png").write_bytes(b"stale")
    plain = write_spec(SPEC.replace("metrics = [accuracy, f1]", "").replace(
        "epochs = 6", "epochs = 1"), "plain.nn")
    assert main(["train", str(plain), "--backend", "numpy", "--quiet", "--run-dir", str(run),
                 "--overwrite"]) == 0
    assert not (run / "diagnostics.csv").exists()
    assert sorted(p.name for p in (run / "plots").glob("*")) == []


def test_the_plots_are_asked_for_before_the_last_checkpoint_and_once(
        tmp_path: Path, write_spec, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The history is final when the last phase's epochs end: its plots are drawn while the
    last checkpoint is written, and asking again for the same rows draws nothing twice."""
    from nndsl.training import checkpoint, painter

    events: list[str] = []
    plots, save = painter.JOBS["plots"], checkpoint.save
    monkeypatch.setitem(painter.JOBS, "plots",
                        lambda *a: (events.append("plots"), plots(*a))[1])
    monkeypatch.setattr(checkpoint, "save",
                        lambda path, *a, **k: (events.append(path.name), save(path, *a, **k))[1])
    monkeypatch.setattr(painter.Painter, "start", classmethod(  # drawn here, in order
        lambda cls, quiet, spawn=True: cls(quiet, None)))
    spec = write_spec(SPEC.replace("epochs = 6", "epochs = 2"))
    assert main(["train", str(spec), "--backend", "numpy", "--quiet", "--run-dir",
                 str(tmp_path / "run")]) == 0
    assert events.count("plots") == 1
    after = events[events.index("plots") + 1:]  # the last phase's checkpoint (and best.npz)
    assert after[-1] == checkpoint.NAME and set(after) <= {checkpoint.NAME, "best.npz"}
    _assert_drawn(tmp_path / "run" / "loss.png")
