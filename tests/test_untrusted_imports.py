"""A spec's imports read spec files only: a `.nn` name that links elsewhere, a pipe or device,
or a huge file is a positioned error — nndsl never quotes or blocks on a file that is not a
spec. (Checkpoints, weights and ONNX files are covered in test_resume.py and test_verify.py.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nndsl.errors import NndslError
from nndsl.program import MAX_SPEC_BYTES, load

MAIN = 'import "{name}"\nmodel m {{ input x: [batch, 2]\n  output x }}\n'


def _load_error(tmp_path: Path, name: str) -> str:
    spec = tmp_path / "main.nn"
    spec.write_text(MAIN.format(name=name))
    with pytest.raises(NndslError) as err:
        load(spec)
    return err.value.render(err.value.sources)  # type: ignore[attr-defined]


def test_an_import_that_links_to_a_non_spec_file_is_refused_unread(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2\n")
    (tmp_path / "blocks.nn").symlink_to(secret)
    text = _load_error(tmp_path, "blocks.nn")
    assert "main.nn:1:1: error: " in text and "which is not a spec file" in text
    assert "hunter2" not in text


def test_an_import_of_a_pipe_does_not_block(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.nn")
    assert "pipe.nn is not a regular file" in _load_error(tmp_path, "pipe.nn")


def test_an_import_of_a_huge_file_is_refused(tmp_path: Path) -> None:
    with (tmp_path / "huge.nn").open("wb") as f:
        f.truncate(MAX_SPEC_BYTES + 1)
    assert "is too large for a spec" in _load_error(tmp_path, "huge.nn")


def test_an_import_may_link_to_another_spec(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "real.nn").write_text("block b() { x -> relu }\n")
    (tmp_path / "blocks.nn").symlink_to(tmp_path / "lib" / "real.nn")
    (tmp_path / "main.nn").write_text(MAIN.format(name="blocks.nn"))
    program, _ = load(tmp_path / "main.nn")
    assert [g.name for g in program.models] == ["m"]
