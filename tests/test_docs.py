"""The op catalog in docs/ is generated from the registry and must not be stale."""

from __future__ import annotations

from nndsl import docgen, ops

from .conftest import ROOT


def test_ops_md_is_up_to_date() -> None:
    current = (ROOT / "docs" / "ops.md").read_text(encoding="utf-8")
    assert current == docgen.render(), "docs/ops.md is stale: run `make docs`"


def test_every_op_has_a_one_line_formula() -> None:
    missing = [d.name for d in ops.all_ops() if not (d.compute.__doc__ or "").strip()]
    assert not missing


def test_every_user_facing_op_is_documented() -> None:
    text = docgen.render()
    for d in ops.all_ops():
        if d.name not in docgen.INTERNAL:
            assert f"### `{d.name}" in text, d.name


def test_language_reference_mentions_every_train_setting() -> None:
    from nndsl.lower_train import SETTINGS

    text = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    for key in [*SETTINGS, "loss", "target", "phase"]:
        assert f"`{key}" in text, key
