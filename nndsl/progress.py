"""Training progress: a rich progress bar on a terminal, plain log lines otherwise, and a final
summary table. Each epoch row of metrics.csv is reported as it is recorded."""

from __future__ import annotations

import sys
from typing import Any

SKIP = ("kind", "epoch", "step", "phase")


def _fields(row: dict[str, Any]) -> list[tuple[str, float]]:
    return [(k, v) for k, v in row.items() if k not in SKIP and isinstance(v, float)]


class Reporter:
    """Receives metric rows from the trainer; `close()` prints the summary."""

    def __init__(self, model: str, epochs: int | None, quiet: bool = False) -> None:
        self.quiet, self.last = quiet, None
        self.live = not quiet and sys.stderr.isatty()
        self.progress = None
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn(f"[bold]{model}[/]"), BarColumn(),
                                     TextColumn("{task.completed}/{task.total} epochs"),
                                     TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                                     console=Console(stderr=True), transient=True)
            self.task = self.progress.add_task("train", total=epochs, info="")
            self.progress.start()

    def __call__(self, row: dict[str, Any]) -> None:
        if row.get("kind") != "epoch" or self.quiet:
            return
        self.last = row
        text = "  ".join(f"{k} {v:.4g}" for k, v in _fields(row)[:4])
        if self.progress is not None:
            self.progress.update(self.task, completed=row["epoch"], info=f"step {row['step']}  "
                                 + text)
        else:
            print(f"epoch {row['epoch']}  step {row['step']}  {text}", file=sys.stderr)

    def stop(self) -> None:
        """End the live bar (also when training failed)."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def summary(self) -> None:
        self.stop()
        if self.quiet or self.last is None:
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title="final epoch", title_justify="left")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key in ("epoch", "step"):
            table.add_row(key, str(self.last[key]))
        for key, value in _fields(self.last):
            table.add_row(key, f"{value:.5g}")
        Console(stderr=True).print(table)
