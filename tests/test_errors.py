"""Malformed specs: the exact rendered error (position, caret, hint) is pinned for each.

Each `tests/errors/NAME.nn` has its expected stderr in `NAME.err`. After an intended wording
change, regenerate with `NNDSL_REGEN=1 pytest tests/test_errors.py` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nndsl.cli import main

CASES = sorted((Path(__file__).parent / "errors").glob("*.nn"))


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_rendered_error(case: Path, capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(case.parent)  # errors name the file as the user wrote it
    code = main(["check", case.name])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err and "internal error" not in err
    expected = case.with_suffix(".err")
    if os.environ.get("NNDSL_REGEN"):
        expected.write_text(err, encoding="utf-8")
    assert err == expected.read_text(encoding="utf-8")
