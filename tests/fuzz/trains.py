"""`train` blocks drawn from the language: data, targets, a loss over the model's values, every
setting of `nndsl.train.SETTINGS` drawn from its own annotation, and phases.

Why: the settings table is the checker's schema for train blocks, so drawing from it keeps the
generator in step; losses are drawn from the registry and checked with its shape rules, so most
train blocks are valid and the NumPy loss and gradient run on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nndsl.ir import TensorType
from nndsl.lower_train import PHASE_ONLY_FORBIDDEN, SETTINGS
from nndsl.ops.registry import OPS

from .blocks import activation
from .models import ModelGen
from .shapes import infer
from .values import BAD_VALUES, Context, Drawer, call_text, draw_args, draw_value, of_kind

LOSSES = [o.name for o in of_kind("loss")]
SETTING_CHANCE = {"data": 80, "optimizer": 50, "trainer": 3}
FAULTY_SETTINGS = ("epoch = 3", "optimizer = relu", "split = 1.5", "batch = 0", "seed = -1",
                   "metrics = [mse]", "freeze = [nosuch]", "loss = nosuch")


@dataclass
class TrainGen:
    """Draws the train block of one generated model."""

    d: Drawer
    model: ModelGen
    faulty: bool
    targets: dict[str, TensorType] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def predictions(self) -> list[str]:
        return [n for n, t in self.model.values.items()  # "time+time" cannot be declared
                if t is not None and t.dtype != "i64" and t.rank >= 1
                and not any("+" in str(s) for s in t.shape)]

    def target(self, ty: TensorType) -> str:
        """A new `target` of type `ty` (a faulty one sometimes gets an extra axis)."""
        name = f"t{len(self.targets) + 1}"
        if self.faulty and self.d.chance(10):
            ty = TensorType((*ty.shape, 7), ty.dtype)
        self.targets[name] = ty
        return name

    def term(self) -> str:
        """One loss call over model values and targets (a target is declared as needed)."""
        d, values = self.d, self.model.values
        preds = self.predictions()
        if not preds:
            return "mse(nosuch, nosuch)"
        opdef = OPS[d.pick(LOSSES)]
        pred = d.pick(preds)
        ty = values[pred]
        assert ty is not None
        names = [pred]
        dense = [k for k, layer in self.model.labels.items() if layer.op == "dense"
                 and ty.rank == 2 and layer.units == ty.shape[-1] and "tied" not in layer.text]
        if opdef.name == "contractive" and (dense or self.faulty):  # a code and its layer
            names.append(d.pick(dense) if dense else pred)
        elif opdef.name == "contractive":
            opdef = OPS["l1_activity"]
        elif len(opdef.inputs) == 2:
            same = [n for n in preds if values[n] == ty and n != pred]
            classes = TensorType(ty.shape[:-1], d.pick(("f32", "i64")))
            if same and d.chance(30):
                names.append(d.pick(same))
            elif d.chance(40) and infer(opdef, [ty, classes], {}) is not None:
                names.append(self.target(classes))
            else:
                names.append(self.target(ty))
        if d.chance(10):  # a chain inside the loss: an activation fits, a weighted layer not
            layer = "dense(2)" if self.faulty and d.chance(50) else activation(d)
            names[0] = f"{names[0]} -> {layer}"
        args = draw_args(d, opdef, Context(), self.faulty)
        return call_text(d, opdef.name, args, opdef.positional_names, leading=names, bare=False)

    def loss(self) -> str:
        d = self.d
        if self.faulty and d.chance(10):  # not a scalar
            return d.pick(self.predictions() or ["x"])
        first = self.term()
        form = d.pick(("one", "one", "sum", "scaled", "mean"))
        if form == "sum":
            return f"{first} + {d.pick(('0.5', '1e-3'))} * {self.term()}"
        if form == "scaled":
            return f"{d.pick(('0.5', '2'))} * {first}"
        if form == "mean":
            return f"({first} - {self.term()}) / 2"
        return first

    def settings(self, phase: bool) -> list[str]:
        d, lines = self.d, []
        labels = [k for k, layer in self.model.labels.items()]
        ctx = Context(labels=labels, names=self.model.inputs)
        for key, ann in SETTINGS.items():
            if phase and key in PHASE_ONLY_FORBIDDEN:
                continue
            if key == "freeze" and not labels:
                continue
            if d.chance(SETTING_CHANCE.get(key, 20)):
                lines.append(f"{key} = {draw_value(d, ann, key, ctx).text}")
        if self.faulty and d.chance(20):
            lines.append(d.pick((*FAULTY_SETTINGS, f"{d.pick(sorted(SETTINGS))} = "
                                 f"{d.pick(BAD_VALUES)}")))
        return lines

    def text(self) -> str:
        d = self.d
        body = self.settings(phase=False)
        phases = []
        top_loss = d.chance(60)
        for i in range(d.int(1, 2) if d.chance(15) else 0):
            inner = self.settings(phase=True)
            if not top_loss or d.chance(60) or (self.faulty and d.chance(50)):
                inner.insert(0, f"loss = {self.loss()}")
            phases.append(f"phase p{i + 1} {{ " + "; ".join(inner) + " }")
        if top_loss or not phases:
            body.insert(0, f"loss = {self.loss()}")
        targets = [f"target {n}: {t.dtype}[{', '.join(map(str, t.shape))}]"
                   for n, t in self.targets.items()]
        lines = [*targets, *body, *phases]
        name = self.model.name if not (self.faulty and d.chance(5)) else "nosuch"
        return f"train {name} {{\n" + "\n".join(f"  {line}" for line in lines) + "\n}"
