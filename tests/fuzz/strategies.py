"""The hypothesis strategy for whole generated specs: blocks, models and train blocks.

Why: one strategy for the fuzz tests to draw from; a quarter of the specs are `faulty` (they
carry deliberate mistakes), the rest are valid by construction unless the checker disagrees
with its own shape rules, which is itself worth a look.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from .blocks import LIBRARY, draw_blocks
from .models import ModelGen
from .trains import TrainGen
from .values import Drawer

FAULTY_PERCENT = 25
FAULTY_ITEMS = (
    "block rec(u) {\n  rec(u) -> relu\n}\nmodel r {\n  input x: [batch, 2]\n  y = x -> rec(2)\n"
    "  output y\n}",
    "train nosuch {\n  loss = mse(x, x)\n}",
    "model m1 {\n  input x: [batch, 2]\n  output x\n}",
    'import "missing.nn"',
    'import "lib/blocks.nn"\nimport "lib/blocks.nn"',
    "".join(f"block deep{i}(u) {{\n  deep{i + 1}(u)\n}}\n" for i in range(60))
    + "block deep60(u) {\n  dense(u)\n}\nmodel deep {\n  input x: [batch, 2]\n"
    "  y = x -> deep0(2)\n  output y\n}",
)


@dataclass(frozen=True)
class GeneratedSpec:
    """A drawn spec; `faulty` says whether mistakes were put in on purpose."""

    text: str
    faulty: bool


@st.composite
def specs(draw: Any) -> GeneratedSpec:
    """A whole spec drawn from the language and the op registry."""
    d = Drawer(draw)
    faulty = d.chance(FAULTY_PERCENT)
    blocks = draw_blocks(d, d.int(1, 3)) if d.chance(40) else []
    parts = [b.text for b in blocks if b.text]
    if d.chance(10):
        parts.insert(0, 'import "lib/blocks.nn"')
        blocks += LIBRARY
    for i in range(1 if d.chance(85) else 2):
        model = ModelGen(d, f"m{i + 1}", faulty, blocks)
        model.generate()
        parts.append(model.text())
        if d.chance(50):
            parts.append(TrainGen(d, model, faulty).text())
    if faulty and d.chance(15):
        parts.append(d.pick(FAULTY_ITEMS))
    if d.chance(20):
        parts = list(d.draw(st.permutations(parts)))
    return GeneratedSpec("\n\n".join(parts) + "\n", faulty)
