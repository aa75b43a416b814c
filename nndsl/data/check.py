"""`nndsl check` binds each train block's data when its file exists: the columns or arrays
each input and target reads, text labels against the classes the loss reads, shapes and
values — the errors `nndsl train` would stop at, reported at the data call before training."""

from __future__ import annotations

from pathlib import Path

from nndsl.errors import NndslError
from nndsl.ir import Program, TrainSpec


def _file_exists(spec: TrainSpec, base_dir: Path) -> bool:
    data = spec.get("data")
    path = data.get("path") if data is not None else None
    return isinstance(path, str) and (base_dir / path).is_file()


def check_data(program: Program) -> list[NndslError]:
    """The binding errors of every train block whose data file is there (built-in data and
    missing files are left to `nndsl train`)."""
    from nndsl.data.dataset import load_dataset
    from nndsl.training.run import plan

    base_dir = Path(program.file).resolve().parent
    errors = []
    for spec in program.trains:
        if not _file_exists(spec, base_dir):
            continue
        try:
            run = plan(program, spec)
            load_dataset(run.data, [program.model(m) for m in run.models], spec, base_dir)
        except NndslError as e:
            errors.append(e)
    return errors
