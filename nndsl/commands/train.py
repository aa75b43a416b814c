"""`nndsl train`: train a spec's model with its train block, or resume a stopped run."""

from __future__ import annotations

import argparse
import signal
import sys

from nndsl.commands import EXIT_ERRORS, EXIT_OK, EXIT_USAGE, Command, register
from nndsl.commands._common import load_spec, print_error
from nndsl.memory import add_option as add_memory_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC", nargs="?")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its checkpoint")
    from nndsl.backend import RNG_MODES, default_backend, training_backends

    known = training_backends()
    parser.add_argument("--backend", choices=list(known), default=None,
                        help="; ".join(f"{name}: {b.summary}" for name, b in known.items())
                        + f" (default {default_backend()})")
    parser.add_argument("--device", default=None, metavar="DEVICE",
                        help="auto (the default: CUDA when present, else the CPU), cpu, cuda "
                        "or cuda:N")
    parser.add_argument("--rng", choices=RNG_MODES, default=None,
                        help="device (default): each backend draws dropout masks, noise and "
                        "samples from its own generator; reference: from the NumPy stream, "
                        "so torch repeats the NumPy run's numbers")
    parser.add_argument("--epochs", type=int, help="override the number of epochs")
    parser.add_argument("--steps", type=int, help="train this many steps (metrics per step)")
    parser.add_argument("--run-dir", help="where to write the run (default runs/MODEL-TIME/)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start again in a --run-dir that already holds a run")
    parser.add_argument("--checkpoint-every", type=float, metavar="SECONDS",
                        help="checkpoint after an epoch at most this often (default 10; 0: "
                        "every epoch); a phase's end and Ctrl-C always checkpoint")
    parser.add_argument("--extend", action="store_true",
                        help="with --resume and --epochs N: train the run on to N epochs (a "
                        "finished run continues its last phase where it ended)")
    parser.add_argument("--nproc", type=int, metavar="N",
                        help="train data-parallel on N local ranks (torch.distributed: gloo on "
                        "the CPU, NCCL on CUDA, one device per rank); the spec's batch is the "
                        "global batch. Across machines, start `torchrun ... -m nndsl train`")
    parser.add_argument("--model", help="which train block's model, when a spec has several")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the training step (as `compile = true`; torch only)")
    add_memory_option(parser)


def run(args: argparse.Namespace) -> int:
    from nndsl.errors import NndslError
    from nndsl.training.run import train_spec
    from nndsl.training.session import Interrupted

    sources = None
    if args.resume is None and args.spec is None:
        print("nndsl train: give a SPEC, or --resume RUN_DIR", file=sys.stderr)
        return EXIT_USAGE
    if args.extend and args.resume is None:
        print("nndsl train: --extend goes with --resume RUN_DIR (a run to train longer)",
              file=sys.stderr)
        return EXIT_USAGE
    if args.compile and args.resume is not None:
        print("nndsl train: --compile starts a run; a resumed run keeps its spec's `compile`",
              file=sys.stderr)
        return EXIT_USAGE
    launched = _launch(args)
    if launched is not None:
        return launched
    try:
        if args.resume is not None:
            _written(_resume(args))
            return EXIT_OK
        program, sources = load_spec(args.spec)
        if args.compile:
            from nndsl.training.step_options import forced_compile

            program = forced_compile(program, args.model)
        run_dir = train_spec(program, args.spec, backend=args.backend, epochs=args.epochs,
                             steps=args.steps, run_dir=args.run_dir, model=args.model,
                             quiet=args.quiet, device=args.device or "auto",
                             rng=args.rng or "device", overwrite=args.overwrite,
                             checkpoint_every=args.checkpoint_every,
                             max_memory=args.max_memory)
    except NndslError as e:
        _wait_for_writer()
        print_error(e, sources or getattr(e, "sources", None),
                    args.spec if args.resume is None else None)
        return EXIT_ERRORS
    except Interrupted as stop:
        number = getattr(stop, "signal", signal.SIGINT)
        name = signal.Signals(number).name
        print(f"{stop}: checkpoint written; continue with `nndsl train --resume "
              f"{stop.run_dir}` (stopped by {name})", file=sys.stderr)
        return 128 + number
    _written(run_dir)
    return EXIT_OK


def _writer() -> bool:
    from nndsl.training.distributed import from_env

    ranks = from_env()
    return ranks is None or ranks.writer


def _wait_for_writer(seconds: float = 10.0) -> None:
    """Every rank of a data-parallel run usually meets the same error: the others give rank 0
    time to say it and end the run (the launcher then stops them), and say it themselves only
    when rank 0 carries on, so an error one rank alone meets is never lost."""
    if not _writer():
        import time

        time.sleep(seconds)


def _written(run_dir: object) -> None:
    if _writer():
        print(f"trained model written to {run_dir}")


def _launch(args: argparse.Namespace) -> int | None:
    """With --nproc N (or resuming a data-parallel run), start the ranks through torch's
    launcher, each running this command without --nproc; None when this process trains."""
    import os

    from nndsl.training.distributed import from_env, launch

    if from_env() is not None or os.environ.get("TORCHELASTIC_RUN_ID"):
        return None  # this process is a rank already
    nproc = args.nproc
    if nproc is None and args.resume is not None:
        nproc = _stored_world(args.resume)
    if nproc is None or nproc == 1 and args.resume is None:
        return None
    if nproc < 1:
        print(f"nndsl train: --nproc {nproc}: give a number of ranks >= 1", file=sys.stderr)
        return EXIT_USAGE
    child = _child_args(args)
    if args.resume is None:  # a spec with mistakes is reported once, not by every rank
        from nndsl.backend import default_backend
        from nndsl.errors import NndslError
        from nndsl.files import default_run_dir
        from nndsl.training.distributed import check_parallel
        from nndsl.training.run import pick_train, plan

        sources = None
        try:
            program, sources = load_spec(args.spec)
            spec = pick_train(program, args.model)
            check_parallel(plan(program, spec), args.backend or default_backend())
            model = spec.model
        except NndslError as e:
            print_error(e, sources or getattr(e, "sources", None), args.spec)
            return EXIT_ERRORS
        if args.run_dir is None:
            child += ["--run-dir", str(default_run_dir(model, None))]
    return launch(child, nproc)


# the options a rank is started with, as given to this command (--nproc is the launcher's)
FORWARDED = (("resume", "--resume"), ("backend", "--backend"), ("device", "--device"),
             ("rng", "--rng"), ("epochs", "--epochs"), ("steps", "--steps"),
             ("run_dir", "--run-dir"), ("checkpoint_every", "--checkpoint-every"),
             ("model", "--model"), ("max_memory", "--max-memory"))
FLAGS = (("overwrite", "--overwrite"), ("extend", "--extend"), ("quiet", "--quiet"),
         ("compile", "--compile"))


def _child_args(args: argparse.Namespace) -> list[str]:
    child = ["train", *([args.spec] if args.spec else [])]
    for key, option in FORWARDED:
        if getattr(args, key) is not None:
            child += [option, str(getattr(args, key))]
    return child + [option for key, option in FLAGS if getattr(args, key)]


def _stored_world(run_dir: str) -> int | None:
    """The number of ranks that wrote a run's checkpoint (1 for a single process)."""
    from pathlib import Path

    from nndsl.errors import NndslError
    from nndsl.training import checkpoint

    try:
        world = checkpoint.load(Path(run_dir) / checkpoint.NAME).meta.get("world", 1)
    except NndslError:
        return None  # the resume itself reports it
    return int(world) if int(world) > 1 else None


def _resume(args: argparse.Namespace) -> object:
    from nndsl.training.resume import ResumeOptions, resume

    options = ResumeOptions(spec=args.spec, epochs=args.epochs, steps=args.steps,
                            backend=args.backend, device=args.device, rng=args.rng,
                            run_dir=args.run_dir, model=args.model, overwrite=args.overwrite,
                            extend=args.extend, checkpoint_every=args.checkpoint_every,
                            max_memory=args.max_memory)
    return resume(args.resume, args.quiet, options)


register(Command("train", "train a spec's model with its train block", add_arguments, run,
                 order=30))
