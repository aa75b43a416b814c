"""`nndsl train --resume DIR`: continue a run exactly where its checkpoint stands, with the spec
and options it was started with. Options given again must agree with the stored ones (each
conflict is an error naming the option, never silently ignored); `--extend --epochs N` trains a
run longer than it was started for — a finished one continues its last phase exactly where it
ended, as if it had been started with N epochs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nndsl.errors import ErrorGroup, NndslError
from nndsl.training import checkpoint, distributed
from nndsl.training.session import Position, Session

KEEP = "a resumed run keeps the options it was started with (its checkpoint records them)"


@dataclass
class ResumeOptions:
    """What `nndsl train --resume DIR` was given besides DIR (None: not given)."""

    spec: str | None = None
    epochs: int | None = None
    steps: int | None = None
    backend: str | None = None
    device: str | None = None
    rng: str | None = None
    run_dir: str | None = None
    model: str | None = None
    overwrite: bool = False
    extend: bool = False
    checkpoint_every: float | None = None
    max_memory: int | None = None


def resume(run_dir: str, quiet: bool = False, options: ResumeOptions | None = None) -> Path:
    """Take the run directory, read and check its checkpoint against the options, train on."""
    from nndsl.program import load
    from nndsl.training.run import train_spec

    options = options or ResumeOptions()
    path = Path(run_dir)
    saved_file = path / checkpoint.NAME
    if not saved_file.is_file():  # before the lock, which would write DIR/.lock
        checkpoint.load(saved_file)  # the error that says what a run directory holds
    with distributed.writer_lock(path, distributed.from_env()):
        saved = checkpoint.load(saved_file)
        spec_file = path / "spec.nn"
        if not spec_file.is_file():
            raise NndslError(f"{spec_file} is missing", hint="a run directory written by "
                             "`nndsl train` keeps the spec it was started with as spec.nn")
        check_options(options, saved.meta, path, spec_file)
        program, _ = load(spec_file)
        meta = saved.meta
        every = options.checkpoint_every if options.checkpoint_every is not None else \
            meta.get("checkpoint_every")
        return train_spec(program, str(spec_file), backend=meta["backend"],
                          epochs=options.epochs if options.extend else meta["epochs"],
                          steps=meta["steps"], run_dir=str(path), model=meta["model"],
                          quiet=quiet, device=meta["device"], rng=meta["rng_mode"],
                          resume=saved, checkpoint_every=every, max_memory=options.max_memory,
                          extend=options.extend)


def _conflict(option: str, given: Any, stored: Any, hint: str = KEEP) -> NndslError:
    return NndslError(f"{option} {given} conflicts with the resumed run, started with "
                      f"{stored}", expected=f"{stored} (or leave {option} out)",
                      received=str(given), hint=hint)


def check_options(options: ResumeOptions, meta: dict[str, Any], path: Path,
                  spec_file: Path) -> None:
    """Every option that disagrees with the stored run, all reported at once."""
    errors = []
    if options.overwrite:
        errors.append(NndslError("--overwrite starts a run again; it cannot go with --resume",
                                 hint=f"leave --overwrite out to continue {path}, or start "
                                 "again without --resume"))
    if options.spec is not None and _read(Path(options.spec)) != _read(spec_file):
        errors.append(_conflict("SPEC", options.spec, spec_file, hint="--resume continues with "
                                "the run's own spec.nn; leave SPEC out, or start a new run "
                                "with it"))
    if options.run_dir is not None and Path(options.run_dir).resolve() != path.resolve():
        errors.append(_conflict("--run-dir", options.run_dir, path, hint="a resumed run stays "
                                "in its directory; copy the directory to continue elsewhere"))
    for option, given, key in (("--backend", options.backend, "backend"),
                               ("--device", options.device, "device"),
                               ("--rng", options.rng, "rng_mode"),
                               ("--model", options.model, "model"),
                               ("--steps", options.steps, "steps")):
        if given is not None and given != meta[key]:
            errors.append(_conflict(option, given, meta[key] if meta[key] is not None else
                                    f"no {option}"))
    if options.extend and options.epochs is None:
        errors.append(NndslError("--extend needs --epochs N, the run's new number of epochs"))
    if options.epochs is not None and options.epochs != meta["epochs"] and not options.extend:
        stored = meta["epochs"] if meta["epochs"] is not None else "the spec's epochs"
        errors.append(_conflict("--epochs", options.epochs, stored, hint="to train this run "
                                "longer, add --extend (docs/training.md: Stopping and "
                                "resuming)"))
    if errors:
        raise errors[0] if len(errors) == 1 else ErrorGroup(errors)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def start_position(saved: checkpoint.Checkpoint, where: str, run: Any, graphs: list[Any],
                   session: Session, extend: bool) -> Position:
    """The checked position training continues from; with `extend`, where the stored run's
    last phase ended when it is finished (session.epochs is the new --epochs)."""
    checkpoint.validate(saved, where, run.spec.model, run.stages, run.trainers,
                        {g.name: g for g in graphs}, session.data.rows, session.epochs_for)
    if not extend:
        return checkpoint.position(saved)
    meta, stages = saved.meta, run.stages
    if meta["steps"] is not None:
        raise NndslError("--extend continues a run counted in epochs; this one was limited by "
                         f"--steps {meta['steps']}", hint="start a new run with more steps")
    index = min(meta["stage"], len(stages) - 1)
    planned = meta["epochs"] if meta["epochs"] is not None else \
        int(stages[index].get("epochs"))
    if session.epochs is None or session.epochs <= planned:
        raise NndslError(f"--extend --epochs {session.epochs} does not extend the run: it was "
                         f"started for {planned} epochs", expected=f"more than {planned}")
    if meta["stage"] < len(stages):
        return checkpoint.position(saved)
    ended = checkpoint.ended(saved, len(stages))
    if ended is None or ended.epoch != planned:
        how = "it stopped early (early stopping or convergence)" if ended is not None else \
            "its checkpoint does not record where its last phase ended"
        raise NndslError(f"this run cannot be extended exactly: {how}",
                         hint="start a new run with the epochs you want")
    return ended
