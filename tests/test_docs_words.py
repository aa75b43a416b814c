"""The user documentation says where a formula comes from in words, never by the project's
internal catalogue tags ("ACT-13", "LOSS-16", "CONV-11"), seed-document numbers ("seed 000")
or line citations ("001:L581")."""

from __future__ import annotations

import re

import pytest

from nndsl import docgen

from .conftest import ROOT

TAG = re.compile(r"\b[A-Z]{2,5}-\d+[a-z]?\b")
NAMES = {"GPT-2", "UTF-8", "UTF-16", "ISO-8601", "SHA-256"}  # real names that look like tags
SEED = re.compile(r"\bseeds?\s+0\d\d\b|\b0\d\d:L\d+|catalog(ue)? §", re.IGNORECASE)


def internal_references(text: str) -> list[str]:
    tags = [m.group() for m in TAG.finditer(text) if m.group() not in NAMES]
    return tags + [m.group() for m in SEED.finditer(text)]


DOCS = sorted(p.name for p in (ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("name", DOCS)
def test_docs_carry_no_catalogue_tags(name: str) -> None:
    text = (ROOT / "docs" / name).read_text(encoding="utf-8")
    assert internal_references(text) == [], name


def test_the_generated_op_catalog_carries_no_catalogue_tags() -> None:
    assert internal_references(docgen.render()) == []


def test_the_check_finds_tags() -> None:
    found = internal_references("tanh (ACT-03), seed 000's form, 001:L581, GPT-2, INIT-06a")
    assert found == ["ACT-03", "INIT-06a", "seed 000", "001:L581"]
