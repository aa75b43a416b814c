"""The backends. Importing this package registers each of them (nndsl/backend.py)."""

from nndsl.backends import numpy, onnx, torch  # noqa: F401  (imported for their registrations)
