"""The weights of an earlier run, read back. `from_run(RUN, LABEL)` starts a layer from them
(transfer learning), and `nndsl compile --weights RUN` and `nndsl verify --weights RUN` export
or check any model of the spec with them: the trained one, another model the run trained beside
it (a GAN's discriminator, in MODEL.weights.npz), or a model that shares layers with the
trained one by label (a VAE's decoder, written as its own model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nndsl.errors import NndslError
from nndsl.ir import Graph


def run_model_name(path: Path) -> str | None:
    """The model a run directory was trained for (its config.json), if it says."""
    config = path / "config.json" if path.is_dir() else path.parent / "config.json"
    try:
        name = json.loads(config.read_text(encoding="utf-8")).get("model")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def model_files(run: Path, model: str | None = None) -> list[Path]:
    """The weights files that hold `model`'s arrays, the first one winning: the model's own
    MODEL.weights.npz when the run trained it beside its main model, then weights.npz (the
    main model's, whose layers a model sharing their labels reads)."""
    from nndsl.training.outputs import weights_file

    if not run.is_dir():
        raise NndslError(f"run directory '{run}' does not exist",
                         hint="train first: `nndsl train SPEC --run-dir DIR`")
    main = run / "weights.npz"
    if not main.is_file():
        raise NndslError(f"'{run}' holds no weights.npz: not a finished run",
                         hint="a run writes weights.npz when it ends or is stopped")
    trained = run_model_name(run)
    own = run / weights_file(model, trained) if model and trained else main
    return [own, main] if own != main and own.is_file() else [main]


def run_arrays(run: Path, model: str | None = None) -> dict[str, np.ndarray]:
    """Every array a run holds for `model` (module docstring), by weight name."""
    from nndsl.ops.weight_files import read_npz

    arrays: dict[str, np.ndarray] = {}
    for file in reversed(model_files(run, model)):
        arrays.update(read_npz(str(file)))
    return arrays


def trained_weights(run: Path, graph: Graph) -> dict[str, np.ndarray]:
    """`graph`'s weights from a run directory (or one .npz file), each present with its
    declared shape: what `nndsl compile --weights` exports."""
    from nndsl.ops.weight_files import read_npz
    from nndsl.verify import check_weights

    arrays = read_npz(str(run)) if run.is_file() else run_arrays(run, graph.name)
    return check_weights(graph, arrays, f"run '{run}'" if run.is_dir() else str(run))
