"""Data-parallel training on torch.distributed: the ranks of a run, and the launcher.

`nndsl train SPEC --nproc N` starts N local ranks through PyTorch's own launcher
(torch.distributed.run, the engine behind `torchrun`); `torchrun --nnodes M --nproc-per-node N
-m nndsl train SPEC ...` starts them across machines. Each rank runs the same `nndsl train`:
it reads RANK, WORLD_SIZE and LOCAL_RANK from the environment the launcher sets, joins the
process group (gloo on the CPU, NCCL on CUDA with one device per rank), and takes its share of
every global batch. Only rank 0 writes the run directory.

Gradients are summed with one all-reduce per step over a single flat buffer that holds every
gradient, the batch's loss and the stop flag (a one-bucket version of DDP's bucketed
all-reduce): nndsl's models are small enough that one collective per step costs less than
several overlapped ones, its weights are not an nn.Module for DDP to wrap, and carrying the
loss and the stop request in the same message keeps every rank's decisions identical.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from nndsl.errors import NndslError

COLLECTIVE_TIMEOUT = timedelta(minutes=5)  # a rank silent this long is taken for dead


@dataclass(frozen=True)
class Ranks:
    """This process's place in a data-parallel run."""

    rank: int
    world: int
    local_rank: int

    @property
    def writer(self) -> bool:
        """Only rank 0 writes the run directory, metrics, checkpoints and the export."""
        return self.rank == 0

    def shard(self, rows: int) -> tuple[int, int]:
        """This rank's contiguous share [lo, hi) of a global batch of `rows` rows: shares
        differ by at most one row, the first ranks take the larger ones."""
        base, extra = divmod(rows, self.world)
        lo = self.rank * base + min(self.rank, extra)
        return lo, lo + base + (self.rank < extra)


def from_env() -> Ranks | None:
    """The ranks the launcher describes in the environment; None outside a launched run."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    return Ranks(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def device_for(ranks: Ranks, device: str) -> str:
    """One CUDA device per rank (from LOCAL_RANK); the CPU stays the CPU."""
    if device in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            return f"cuda:{ranks.local_rank % torch.cuda.device_count()}"
        if device == "cuda":
            raise NndslError("--device cuda: no CUDA device is available here",
                             hint="use --device cpu (gloo) for a CPU run")
        return "cpu"
    return device


def join(ranks: Ranks, device: str) -> str:
    """Join the process group: NCCL for CUDA devices, gloo for the CPU. Returns its name."""
    import torch.distributed as dist

    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":  # NCCL's object collectives run on the current device: this rank's
        import torch

        torch.cuda.set_device(torch.device(device))
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
    if dist.get_world_size() != ranks.world:
        raise NndslError(f"the process group has {dist.get_world_size()} ranks, the "
                         f"environment says {ranks.world}")
    return backend


def writer_lock(path: Any, ranks: Ranks | None) -> Any:
    """The run directory's lock, taken by the one process that writes it (rank 0)."""
    from contextlib import nullcontext

    from nndsl.files import lock_run_dir

    return lock_run_dir(path) if ranks is None or ranks.writer else nullcontext()


def check_parallel(run: Any, backend_name: str) -> None:
    """A data-parallel run (`run`, a training plan) needs a backend that runs on several
    processes and trainers that share out their batches; anything else is refused before work
    starts, at the stage's trainer call. The launcher asks before it starts any rank, and each
    rank asks again (torchrun may have started it)."""
    from nndsl.backend import get_backend

    backend = get_backend(backend_name)
    if not backend.distributed:
        raise NndslError(f"the {backend.name} backend runs in one process",
                         hint="use --backend torch for several ranks")
    for stage, trainer in zip(run.stages, run.trainers, strict=True):
        if not trainer.data_parallel:
            call = stage.trainer_call
            raise NndslError(f"trainer '{call.name}' cannot run data-parallel", call.span,
                             hint="it updates from whole batches or several models in turn; "
                             "train it without --nproc")


def leave() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast(value: Any) -> Any:
    """Rank 0's `value`, on every rank (a pickled object: ranks of one run trust each other)."""
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_all(value: Any) -> list[Any]:
    """Every rank's `value`, in rank order, on every rank (pickled, like `broadcast`)."""
    import torch.distributed as dist

    box: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(box, value)
    return box


def launch(child_args: list[str], nproc: int) -> int:
    """Start `nproc` local ranks of `nndsl <child_args>` with torch.distributed.run (standalone:
    a rendezvous on this machine) and wait for them. A rank that dies or fails brings the
    others down; the message names it. Returns the exit code for the command line."""
    import logging

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    if nproc < 1:
        raise NndslError(f"--nproc {nproc}: give a number of ranks >= 1")
    logging.getLogger("torch.distributed").setLevel(logging.CRITICAL)  # we say what failed
    args = parse_args(["--standalone", f"--nproc-per-node={nproc}", "--monitor-interval=0.2",
                       "--module", "nndsl.cli", *child_args])
    try:
        run(args)
    except ChildFailedError as failed:
        return _report(failed)
    return 0


def _report(failed: Any) -> int:
    """One line per rank that failed (not those the launcher then stopped with SIGTERM); exit
    130 when every rank stopped on request (Ctrl-C)."""
    import signal

    codes = {rank: f.exitcode for rank, f in failed.failures.items()}
    if codes and all(code == 130 for code in codes.values()):
        return 130
    stopped = -signal.SIGTERM  # how the launcher ends the other ranks once one has failed
    causes = {rank: code for rank, code in codes.items() if code != stopped} or codes
    for rank, code in sorted(causes.items()):
        how = (f"was killed by {signal.Signals(-code).name}" if code < 0
               else f"exited with status {code}")
        print(f"nndsl train: rank {rank} {how}; the other ranks were stopped",
              file=sys.stderr)
    return 1
