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
    parser.add_argument("--model", help="which train block's model, when a spec has several")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
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
    try:
        if args.resume is not None:
            print(f"trained model written to {_resume(args)}")
            return EXIT_OK
        program, sources = load_spec(args.spec)
        run_dir = train_spec(program, args.spec, backend=args.backend, epochs=args.epochs,
                             steps=args.steps, run_dir=args.run_dir, model=args.model,
                             quiet=args.quiet, device=args.device or "auto",
                             rng=args.rng or "device", overwrite=args.overwrite,
                             checkpoint_every=args.checkpoint_every,
                             max_memory=args.max_memory)
    except NndslError as e:
        print_error(e, sources or getattr(e, "sources", None),
                    args.spec if args.resume is None else None)
        return EXIT_ERRORS
    except Interrupted as stop:
        number = getattr(stop, "signal", signal.SIGINT)
        name = signal.Signals(number).name
        print(f"{stop}: checkpoint written; continue with `nndsl train --resume "
              f"{stop.run_dir}` (stopped by {name})", file=sys.stderr)
        return 128 + number
    print(f"trained model written to {run_dir}")
    return EXIT_OK


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
