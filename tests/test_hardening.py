"""Every problem the outside review of the CLI found (issue 16's "Why"), as a table: what the user
does, the exit status and the message they get. None may show a traceback or an internal error,
and the commands that refuse write nothing. (The `predict` cases live with `nndsl predict`.)"""

from __future__ import annotations

import errno
import io
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nndsl.cli import main
from nndsl.training import checkpoint

from .conftest import ROOT, assert_same_run, signal_after_step, stop_after_step
from .test_checkpoint_schema import DAMAGE
from .test_checkpoint_schema import SPEC as STOPPABLE
from .test_crash_safety import SLOW_WRITES

XOR = ROOT / "specs" / "xor.nn"
DIGITS = ROOT / "specs" / "digits_mlp.nn"
Result = tuple[int, str]


def small(data: str, extra: str = "", split: str = "") -> str:
    """A two-input model trained on `data` (the spec the data cases share)."""
    return f"""model m {{
  input x: f32[batch, 2]
  out = x -> dense(1) -> sigmoid
  output out
}}

train m {{
  data      = {data}
  target y: [batch, 1]
  loss      = mse(out, y)
  optimizer = sgd(lr=0.1)
  epochs    = 2{extra}{split}
}}
"""


def cli(*argv: Any) -> Result:
    """The CLI in this process; its stderr and stdout (captured by the caller's capsys)."""
    return main([str(a) for a in argv]), ""


def child(*argv: Any, env: dict[str, str] | None = None) -> Result:
    """The CLI in a fresh process, warnings as a terminal would show them."""
    done = subprocess.run([sys.executable, "-m", "nndsl.cli", *map(str, argv)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})
    return done.returncode, done.stdout + done.stderr


# -- the cases' set-ups ---------------------------------------------------------------------

def concurrent_runs(tmp: Path) -> Result:
    """A second `nndsl train` (even with --overwrite) into a run directory a first one is
    writing (its checkpoint writes slowed so it surely is still running): refused at once,
    naming the first, which ends exactly as a lone run does."""
    run_dir = tmp / "run"
    first = slow_child(train_args(DIGITS, run_dir, "--epochs", "4"), pause=0.1)
    try:
        wait_for(lambda: lock_holder(run_dir) == str(first.pid), first)
        code, _ = cli(*train_args(DIGITS, run_dir, "--epochs", "4", "--overwrite"))
        assert first.poll() is None, "the first run ended before the second was refused"
    finally:
        assert first.wait(timeout=300) == 0
    assert main(train_args(DIGITS, tmp / "lone", "--epochs", "4")) == 0
    assert_same_run(tmp / "lone", run_dir)
    return code, f"(the first is PID {first.pid})"


def signal_mid_epoch(number: int) -> Callable[[Path], Result]:
    def run(tmp: Path) -> Result:
        with pytest.MonkeyPatch.context() as patch:
            signal_after_step(patch, 17, number)
            result = cli(*train_args(DIGITS, tmp / "run", "--epochs", "2"))
        meta = checkpoint.load(tmp / "run" / checkpoint.NAME).meta
        assert (meta["epoch"], meta["record"]["batch"], meta["step"]) == (0, 17, 17)
        assert (tmp / "run" / "metrics.csv").exists()
        return result

    return run


def damaged(change: Callable[[dict[str, np.ndarray]], None]) -> Callable[[Path], Result]:
    def run(tmp: Path) -> Result:
        spec = tmp / "xor.nn"
        spec.write_text(STOPPABLE, encoding="utf-8")
        with pytest.MonkeyPatch.context() as patch:
            stop_after_step(patch, 5)
            assert main(["train", str(spec), "--backend", "numpy", "--run-dir",
                         str(tmp / "run"), "--quiet", "--checkpoint-every", "0"]) == 130
        with np.load(tmp / "run" / checkpoint.NAME, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        change(arrays)
        np.savez(tmp / "run" / checkpoint.NAME, **arrays)
        return cli("train", "--resume", tmp / "run", "--quiet")

    return run


BIG = """model big {
  input x: f32[batch, 4]
  out = x -> dense(1000000000)
  output out
}

train big {
  data      = builtin("xor")
  target y: [batch, 1000000000]
  loss      = mse(out, y)
}
"""


def header_bomb(tmp: Path) -> None:
    """An npz whose member's header claims 4e9 rows of 3 floats (44 GiB) over 12 bytes."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (4_000_000_000, 3)})
    buffer.write(b"\0" * 12)
    with zipfile.ZipFile(tmp / "data.npz", "w") as z:
        z.writestr("x.npy", buffer.getvalue())
        z.writestr("y.npy", _npy(np.zeros((4, 1), np.float32)))


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npz(**arrays: Any) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        np.savez(tmp / "data.npz", **arrays)

    return write


def text(name: str, content: str) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        (tmp / name).write_text(content, encoding="utf-8")

    return write


def resume_read_only(tmp: Path) -> Result:
    """Resume a stopped run whose directory became read-only (a stale .tmp file inside)."""
    run_dir = tmp / "run"
    with pytest.MonkeyPatch.context() as patch:
        stop_after_step(patch, 3)
        assert main(train_args(XOR, run_dir, "--epochs", "5")) == 130
    (run_dir / (checkpoint.NAME + ".tmp")).write_bytes(b"half a checkpoint")
    with pytest.MonkeyPatch.context() as patch:
        read_only(patch, run_dir)
        return cli("train", "--resume", run_dir, "--quiet")


def read_only(patch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make `folder` read-only: by its mode, or (as root, whom modes do not stop) by failing
    every write, creation, rename and removal inside it with EACCES, as the kernel would."""
    if os.geteuid() != 0:
        folder.chmod(0o555)  # pytest's clean-up of its temporary folders restores modes
        return
    inside = str(folder.resolve()) + os.sep

    def denied(path: Any) -> None:
        if str(Path(path).resolve()).startswith(inside):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))

    real_open, real_unlink, real_replace = pathlib.Path.open, pathlib.Path.unlink, os.replace

    def open_(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(c in mode for c in "wax+"):
            denied(self)
        return real_open(self, mode, *args, **kwargs)

    def unlink(self: Path, missing_ok: bool = False) -> None:
        denied(self)
        real_unlink(self, missing_ok)

    def replace(src: Any, dst: Any) -> None:
        denied(dst)
        real_replace(src, dst)

    patch.setattr(pathlib.Path, "open", open_)
    patch.setattr(pathlib.Path, "unlink", unlink)
    patch.setattr(os, "replace", replace)


def resume_conflicts(tmp: Path) -> Result:
    run_dir = tmp / "run"
    assert main(train_args(XOR, run_dir, "--epochs", "3")) == 0
    other = tmp / "other.nn"
    other.write_text(XOR.read_text().replace("lr=2.0", "lr=0.5"), encoding="utf-8")
    return cli("train", other, "--resume", run_dir, "--epochs", "1000", "--backend", "torch",
               "--run-dir", tmp / "elsewhere", "--quiet")


def train_args(spec: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["train", str(spec), "--backend", "numpy", "--device", "cpu", "--run-dir",
            str(run_dir), "--quiet", "--checkpoint-every", "0", *extra]


def slow_child(args: list[str], pause: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", SLOW_WRITES, *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PAUSE": str(pause)})


def lock_holder(run_dir: Path) -> str | None:
    try:
        return (run_dir / ".lock").read_text().strip() or None
    except OSError:
        return None


def wait_for(ready: Callable[[], bool], process: subprocess.Popen[bytes]) -> None:
    import time

    while not ready():
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        time.sleep(0.01)


# -- the table --------------------------------------------------------------------------------

@dataclass
class Case:
    """`run(tmp)` (after `setup(tmp)` and with `tmp/spec.nn` holding `spec`) gives the exit
    status and output; every message must appear, and none of `absent` may exist after."""

    name: str
    run: Callable[[Path], Result]
    code: int
    messages: tuple[str, ...]
    spec: str | None = None
    setup: Callable[[Path], None] | None = None
    absent: tuple[str, ...] = ()


def on_spec(*argv: Any) -> Callable[[Path], Result]:
    """The CLI on tmp/spec.nn (`{tmp}` in an argument is the case's folder)."""
    return lambda tmp: cli(*(str(a).format(tmp=tmp) for a in argv))


def on_spec_child(*argv: Any) -> Callable[[Path], Result]:
    return lambda tmp: child(*(str(a).format(tmp=tmp) for a in argv))


TRAIN = ("train", "{tmp}/spec.nn", "--backend", "numpy", "--run-dir", "{tmp}/run", "--quiet")
NOTHING = ("run",)

CASES = [
    # A run can be lost
    Case("two trains into one run directory", concurrent_runs, 1,
         ("is in use by another nndsl process (PID ", "nndsl train --resume")),
    Case("SIGTERM mid-epoch", signal_mid_epoch(signal.SIGTERM), 143,
         ("stopped at epoch 1, step 17: checkpoint written; continue with `nndsl train "
          "--resume", "(stopped by SIGTERM)")),
    Case("SIGHUP mid-epoch", signal_mid_epoch(signal.SIGHUP), 129, ("(stopped by SIGHUP)",)),
    # A damaged run can pass as finished (or end in an internal error)
    *(Case(f"checkpoint: {name}", damaged(change), 1, ("checkpoint.npz is damaged: ",
                                                       *messages))
      for name, change, messages in DAMAGE),
    # Resource bombs
    Case("dense(1000000000): check", on_spec("check", "{tmp}/spec.nn"), 1,
         ("spec.nn:3:14: error: layer 'dense_1' (dense) takes model 'big' past the memory "
          "available: about ", "(parameters 18.6 GiB, activations at batch 32 119.2 GiB)"),
         spec=BIG),
    Case("dense(1000000000): train writes nothing", on_spec(*TRAIN), 1,
         ("layer 'dense_1' (dense) takes model 'big' past the memory available",),
         spec=BIG, absent=NOTHING),
    Case("dense(1000000000): compile", on_spec("compile", "{tmp}/spec.nn", "-o",
                                               "{tmp}/big.onnx"), 1,
         ("layer 'dense_1' (dense) takes model 'big'",), spec=BIG, absent=("big.onnx",)),
    Case("dense(1000000000): verify", on_spec("verify", "{tmp}/spec.nn"), 1,
         ("layer 'dense_1' (dense) takes model 'big'", "at batch 7"), spec=BIG),
    Case("--max-memory lower than a model's estimate", on_spec("check", XOR, "--max-memory",
                                                               "200"), 1,
         ("xor.nn:4:12: error: layer 'dense_1' (dense) takes model 'xor' past the memory "
          "available: about 400 B", "expected: at most 200 B")),
    Case("an npz header claiming 4e9 rows", on_spec(*TRAIN), 1,
         ("array 'x' in 'data.npz''s header claims shape [4000000000, 3] (48,000,000,000 "
          "bytes of float32), but only 12 bytes follow it",),
         spec=small('npz("data.npz")'), setup=header_bomb, absent=NOTHING),
    # Internal errors
    Case("a 0-d array in an npz", on_spec(*TRAIN), 1,
         ("data array 'x' from 'data.npz' is a single number, not rows",),
         spec=small('npz("data.npz")'), setup=npz(x=np.float32(3), y=np.zeros((4, 1))),
         absent=NOTHING),
    Case("a CSV cell over 131,072 characters", on_spec(*TRAIN), 1,
         ("data.csv:3:1: error: data file", "line 3: field larger than field limit (131072)"),
         spec=small('csv("data.csv", target="y")'),
         setup=text("data.csv", "a,b,y\n1,2,0\n1," + "1" * 200_000 + ",1\n"), absent=NOTHING),
    Case("compile -o into a missing folder", on_spec("compile", XOR, "-o", "{tmp}/no/x.onnx"),
         1, ("cannot write", "no/x.onnx: the folder", "/no does not exist")),
    Case("compile -o onto a directory", on_spec("compile", XOR, "-o", "{tmp}"), 1,
         ("cannot write", ": it is a directory", "hint: name a file in it")),
    Case("compile -o of IR text into a missing folder", on_spec("compile", XOR, "-o",
                                                                "{tmp}/no/x.txt"), 1,
         ("/no does not exist",)),
    Case("resume in a read-only directory", resume_read_only, 1,
         ("cannot write the run directory", "it is not writable")),
    # Bad values accepted or misreported
    Case("a float64 beyond float32's range", on_spec(*TRAIN), 1,
         ("data array 'x' from 'data.npz' holds 1e+39 at index (0, 0): outside float32's "
          "range",), spec=small('npz("data.npz")'),
         setup=npz(x=np.array([[1e39, 0], [0, 0], [1, 1], [1, 0]]), y=np.zeros((4, 1))),
         absent=NOTHING),
    Case("complex data (no NumPy warning)", on_spec_child(*TRAIN), 1,
         ("data array 'x' from 'data.npz' is not numeric: it holds complex numbers",
          "received: dtype complex64"),
         spec=small('npz("data.npz")'),
         setup=npz(x=np.ones((4, 2), np.complex64) + 1j, y=np.zeros((4, 1))), absent=NOTHING),
    Case("lr=1e400 at check", on_spec("check", "{tmp}/spec.nn"), 1,
         ("spec.nn:13:22: error: the number 1e400 is too large: it overflows to infinity",),
         spec=XOR.read_text().replace("lr=2.0", "lr=1e400")),
    Case("a huge finite lr trains without NumPy warnings", on_spec_child(*TRAIN), 1,
         ("error: weight 'dense_1.weight' became non-finite by step 1",),
         spec=XOR.read_text().replace("lr=2.0", "lr=1e300")),
    Case("a spec with a UTF-8 byte-order mark", on_spec("check", "{tmp}/spec.nn"), 0,
         ("model xor",), spec="\ufeff" + XOR.read_text()),
    Case("a NUL byte in a CSV cell", on_spec(*TRAIN), 1,
         ("data.csv:3:3: error: data row 2, column 2 ('b'): '\\x00' is not a number",),
         spec=small('csv("data.csv", target="y")'),
         setup=text("data.csv", "a,b,y\n1,2,0\n1,\0,1\n0,0,0\n1,1,1\n"), absent=NOTHING),
    Case("split=0.1 on 4 rows", on_spec(*TRAIN), 1,
         ("spec.nn:13:3: error: split = 0.1 leaves no validation rows of the data's 4",
          "expected: a fraction of the 4 rows that holds out 1 to 3 of them"),
         spec=small('builtin("xor")', split="\n  split     = 0.1"), absent=NOTHING),
    # Resume ignores what it is told
    Case("resume with another spec, --epochs, --backend and --run-dir", resume_conflicts, 1,
         ("error: SPEC ", "other.nn conflicts with the resumed run",
          "error: --epochs 1000 conflicts with the resumed run, started with 3",
          "add --extend", "error: --backend torch conflicts with the resumed run, started "
          "with numpy", "error: --run-dir ", "elsewhere conflicts with the resumed run")),
    # A binding that shadows an op
    Case("a binding named after an op", on_spec("check", "{tmp}/spec.nn"), 1,
         ("spec.nn:3:3: error: the binding 'relu' has the name of the activation 'relu'",),
         spec="model m {\n  input x: f32[batch, 2]\n  relu = x -> dense(2)\n"
              "  out = x -> relu\n  output out\n}\n"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_problem_found_is_a_clear_error(case: Case, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    if case.spec is not None:
        (tmp_path / "spec.nn").write_text(case.spec, encoding="utf-8")
    if case.setup is not None:
        case.setup(tmp_path)
    code, output = case.run(tmp_path)
    captured = capsys.readouterr()
    output += captured.out + captured.err
    assert code == case.code, output
    for message in case.messages:
        assert message in output, output
    if case.run is concurrent_runs:  # the refusal names the process that holds the directory
        pid = output.rsplit("(the first is PID ", 1)[1].split(")")[0]
        assert f"(PID {pid})" in output, output
    for word in ("Traceback", "internal error", "RuntimeWarning", "Warning:"):
        assert word not in output, output
    for name in case.absent:
        assert not (tmp_path / name).exists(), f"{name} was written"


def test_the_table_covers_every_category() -> None:
    names = " ".join(c.name for c in CASES)
    for topic in ("two trains", "SIGTERM", "checkpoint:", "dense(1000000000)", "4e9 rows",
                  "0-d array", "131,072", "compile -o", "read-only", "float64", "complex",
                  "lr=1e400", "byte-order mark", "NUL", "split", "resume with", "binding"):
        assert topic in names, topic


def test_the_atomic_writer_cleans_up_quietly_in_a_read_only_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its removal of the temporary file failed inside its own error handler."""
    from nndsl.errors import NndslError
    from nndsl.files import atomic_write

    (tmp_path / "f.npz.tmp").write_bytes(b"stale")
    read_only(monkeypatch, tmp_path)
    with pytest.raises(NndslError, match="cannot write .*f.npz: it is not writable"):
        atomic_write(tmp_path / "f.npz", b"new")
    shutil.rmtree(tmp_path, ignore_errors=True)
