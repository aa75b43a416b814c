"""Training progress. On a terminal: rich bars for the epochs and for the steps of the epoch
running, and a line per epoch with every recorded value, printed above the bars so the whole
history stays on the terminal when they go. Elsewhere (a pipe, a log file): the same line per
epoch, plain. At the end a summary table of the last epoch, and notes (which epoch was
exported and why, what the diagnostics found)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

SKIP = ("kind", "epoch", "step", "phase")


def _fields(row: Mapping[str, Any]) -> list[tuple[str, float]]:
    return [(k, v) for k, v in row.items() if k not in SKIP and isinstance(v, int | float)
            and not isinstance(v, bool)]


def epoch_line(row: Mapping[str, Any], epochs: float | None, phases: bool) -> str:
    """`epoch 3/30  step 135  loss 0.4121  val_loss 0.3822  accuracy 0.91 ...`: every value."""
    total = f"/{int(epochs)}" if epochs is not None and epochs != float("inf") else ""
    head = f"[{row['phase']}] " if phases and row.get("phase") else ""
    values = "  ".join(f"{k} {v:.4g}" for k, v in _fields(row))
    return f"{head}epoch {row['epoch']}{total}  step {row['step']}  {values}".rstrip()


class Reporter:
    """Receives metric rows (`__call__`) and steps (`step`) from the trainer; `summary()`
    prints the last epoch's table and the notes."""

    def __init__(self, model: str, epochs: Mapping[str, float] | float | None,
                 quiet: bool = False, console: Any = None) -> None:
        """`epochs`: each phase's number of epochs; `console`: a rich Console to draw the bars
        on (default: standard error, when it is a terminal)."""
        self.quiet, self.last, self.console = quiet, None, console
        self.epochs = epochs if isinstance(epochs, Mapping) else {"": epochs}
        self.phases = len(self.epochs) > 1
        self.live = not quiet and (console is not None or sys.stderr.isatty())
        self.progress: Any = None
        if self.live:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(TextColumn("[bold]{task.description}[/]"), BarColumn(),
                                     MofNCompleteColumn(), TextColumn("{task.fields[unit]}"),
                                     TimeRemainingColumn(),
                                     console=console or Console(stderr=True), transient=True)
            first = next(iter(self.epochs.values()))
            self.epoch_task = self.progress.add_task(model, total=_total(first), unit="epochs")
            self.step_task = self.progress.add_task("epoch 1", total=None, unit="steps")
            self.progress.start()

    def _epochs_of(self, row: Mapping[str, Any]) -> float | None:
        return self.epochs.get(row.get("phase", ""), next(iter(self.epochs.values())))

    def __call__(self, row: dict[str, Any]) -> None:
        if row.get("kind") != "epoch" or self.quiet:
            return
        self.last = row
        epochs = self._epochs_of(row)
        line = epoch_line(row, epochs, self.phases)
        if self.progress is None:
            print(line, file=sys.stderr, flush=True)
            return
        self.progress.console.print(line, highlight=False, markup=False)
        self.progress.update(self.epoch_task, completed=row["epoch"], total=_total(epochs))
        self.progress.reset(self.step_task, description=f"epoch {row['epoch'] + 1}",
                            total=None)

    def step(self, done: int, total: int) -> None:
        """`done` of the epoch's `total` batches are trained."""
        if self.progress is not None:
            self.progress.update(self.step_task, completed=done, total=total)

    def stop(self) -> None:
        """End the live bars (also when training failed); the epoch lines stay."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def summary(self, notes: list[str] | None = None) -> None:
        self.stop()
        if self.quiet:
            return
        from rich.console import Console
        from rich.table import Table

        console = self.console or Console(stderr=True, highlight=False)
        if self.last is not None:
            table = Table(title="final epoch", title_justify="left")
            table.add_column("metric")
            table.add_column("value", justify="right")
            for key in ("epoch", "step"):
                table.add_row(key, str(self.last[key]))
            for key, value in _fields(self.last):
                table.add_row(key, f"{value:.5g}")
            console.print(table)
        for note in notes or ():
            console.print(note, markup=False, highlight=False, soft_wrap=True)


def _total(epochs: float | None) -> float | None:
    return None if epochs is None or epochs == float("inf") else epochs
