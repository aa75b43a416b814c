"""The backends, registered by the backend packages themselves (as JAX registers lowerings).

Each package under `nndsl.backends` calls `register_backend` when it is imported; importing it
must stay cheap (no torch, no onnx): the engine and the forward runner are made on first use.
Core code iterates `backends()` instead of naming backend modules, so the CLI's choices,
checkpoint validation and `nndsl verify`'s runners all follow the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from nndsl.errors import NndslError, did_you_mean
from nndsl.ir import Call, Graph

if TYPE_CHECKING:
    import numpy as np

RNG_MODES = ("device", "reference")  # each backend's own generator, or the NumPy stream


class Engine(Protocol):
    """What a backend supplies to the trainers. Arrays are the backend's own (NumPy arrays,
    torch tensors on a device); every rule runs on them through a primitive table `P`."""

    name: str
    P: Any  # an inference-mode table for update rules (optimizers, clips, constraints)

    def to_backend(self, arrays: Mapping[str, Any]) -> dict[str, Any]: ...

    def to_numpy(self, arrays: Mapping[str, Any]) -> dict[str, np.ndarray]: ...

    def to_backend_state(self, state: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Per-weight optimizer state read from a checkpoint, as the backend's arrays."""
        ...

    def take(self, array: Any, index: np.ndarray) -> Any:
        """The rows `index` of a backend array (a batch)."""
        ...

    def table(self, seed: int) -> Any:
        """A training-mode table whose random primitives draw from a stream seeded by `seed`
        (the backend's generator, or the NumPy one in reference mode)."""
        ...

    def run(self, graph: Graph, feeds: Mapping[str, Any], weights: Mapping[str, Any], *,
            training: bool = False, seed: int = 0) -> Any:
        """The interpreter on backend arrays (a RunResult); no gradients are kept."""
        ...

    def loss_and_grad(self, model: Graph, loss: Graph, feeds: Mapping[str, Any],
                      weights: Mapping[str, Any], frozen: tuple[str, ...], seed: int,
                      penalties: Mapping[str, list[Call]] | None = None
                      ) -> tuple[float, dict[str, Any], dict[str, Any]]:
        """The loss plus the penalties of the trainable weights, its gradient for every
        trainable weight, and the buffer updates of stateful layers."""
        ...

    def value_and_grad(self, fn: Callable[[Any, dict[str, Any]], Any],
                       weights: Mapping[str, Any], wrt: list[str], seed: int
                       ) -> tuple[float, dict[str, Any]]:
        """fn(P, weights) (a scalar) and its gradient with respect to the weights `wrt`, with
        a training-mode table seeded by `seed`."""
        ...

    def value_grads(self, model: Graph, loss: Graph, feeds: Mapping[str, Any],
                    weights: Mapping[str, Any], seed: int, names: list[str]
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The model's values `names` on one batch in training mode (seeded by `seed`, as the
        step's), and the loss's gradient with respect to each (zeros where the loss does not
        depend on it): what training diagnostics measure, as backend arrays."""
        ...

    def nonfinite(self, arrays: Mapping[str, Any], *, scratch: bool = False) -> str | None:
        """The name of the first array holding a NaN or infinity, if any. `scratch`: the
        arrays are this engine's own temporaries (a step's gradients), which its check may
        write back unchanged."""
        ...

    def predict(self, model: Graph, feeds: Mapping[str, np.ndarray],
                weights: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Every value of the model in inference mode, as NumPy arrays."""
        ...

    def scalar(self, x: Any) -> float: ...


@dataclass(frozen=True)
class Backend:
    """One registered backend and what it can do."""

    name: str
    summary: str
    # (device, rng mode) -> Engine; None for a backend that only runs exported models
    engine: Callable[[str, str], Engine] | None = None
    # (graph, feeds, weights) -> {output: ndarray}, inference mode, for `nndsl verify`
    forward: Callable[..., dict[str, np.ndarray]] | None = None
    # (objective(P, weights), weights, names) -> [d objective / d weight], for `nndsl verify`
    gradients: Callable[..., list[np.ndarray]] | None = None
    devices: tuple[str, ...] = ("cpu",)
    differentiable: bool = False
    distributed: bool = False
    is_default: bool = False
    order: int = 100
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def trains(self) -> bool:
        return self.engine is not None


_REGISTRY: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    if backend.name in _REGISTRY:
        raise ValueError(f"backend {backend.name!r} is registered twice")
    _REGISTRY[backend.name] = backend
    return backend


def backends() -> dict[str, Backend]:
    """Every registered backend, in their stated order (imports the backend packages)."""
    import nndsl.backends  # noqa: F401  (its subpackages register themselves)

    return dict(sorted(_REGISTRY.items(), key=lambda kv: (kv[1].order, kv[0])))


def training_backends() -> dict[str, Backend]:
    return {name: b for name, b in backends().items() if b.trains}


def default_backend() -> str:
    return next(name for name, b in training_backends().items() if b.is_default)


def get_backend(name: str) -> Backend:
    known = training_backends()
    if name not in known:
        raise NndslError(f"unknown backend '{name}'", hint=did_you_mean(name, known)
                         or f"backends: {', '.join(known)}")
    return known[name]


def device_kind(device: str) -> str:
    """`cuda:1` -> `cuda`: the kind of device a backend must support."""
    return device.split(":", 1)[0]


def make_engine(name: str, device: str = "auto", rng: str = "device") -> Engine:
    """The engine of backend `name`; a device or RNG mode it lacks is a clear error."""
    backend = get_backend(name)
    if device != "auto" and device_kind(device) not in backend.devices:
        raise NndslError(f"--device {device}: the {name} backend runs on "
                         f"{' or '.join(backend.devices)} only",
                         hint="the torch backend runs on CUDA devices" if name != "torch"
                         else None)
    if rng not in RNG_MODES:
        raise NndslError(f"unknown --rng mode '{rng}'", hint=f"modes: {', '.join(RNG_MODES)}")
    assert backend.engine is not None
    return backend.engine(device, rng)
