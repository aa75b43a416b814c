"""The parser's tables are cached between processes in the user's cache directory
(grammar/parser.py): a fresh process, a corrupted or foreign cache file and a cache directory
that cannot be made all parse the same, and say nothing about the cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SPECS = Path(__file__).resolve().parent.parent / "specs"
PARSE = """
import sys
from nndsl.errors import NndslError
from nndsl.grammar.parser import parse
try:
    print(repr(parse(open(sys.argv[1]).read(), sys.argv[1]))[:2000])
except NndslError as e:
    print(e)
    sys.exit(3)
"""
BROKEN = "model m {\n  input x: [batch, 2]\n  y = x -> dense(3 ->\n}\n"


def _parse(spec: Path, cache_home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NNDSL_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(cache_home)
    return subprocess.run([sys.executable, "-c", PARSE, str(spec)], capture_output=True,
                          text=True, env=env, timeout=120)


def _cache(home: Path) -> Path:
    return home / "nndsl" / "grammar.lark-cache"


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> str:
    first = _parse(SPECS / "digits_cnn.nn", tmp_path_factory.mktemp("first"))
    assert first.returncode == 0 and first.stderr == ""
    return first.stdout


def test_a_second_process_reads_the_tables_the_first_wrote(tmp_path: Path,
                                                           expected: str) -> None:
    assert _parse(SPECS / "digits_cnn.nn", tmp_path).stdout == expected
    os.utime(_cache(tmp_path), ns=(0, 0))
    again = _parse(SPECS / "digits_cnn.nn", tmp_path)
    assert (again.stdout, again.stderr) == (expected, "")
    assert _cache(tmp_path).stat().st_mtime_ns == 0  # read, not written again


@pytest.mark.parametrize("content", [b"", b"not a cache\n", b"0" * 64 + b"\n\x80\x04garbage"])
def test_a_damaged_cache_is_rebuilt_silently(tmp_path: Path, expected: str,
                                             content: bytes) -> None:
    _cache(tmp_path).parent.mkdir(parents=True)
    _cache(tmp_path).write_bytes(content)
    run = _parse(SPECS / "digits_cnn.nn", tmp_path)
    assert (run.returncode, run.stdout, run.stderr) == (0, expected, "")
    assert _cache(tmp_path).read_bytes() != content
    assert _parse(SPECS / "digits_cnn.nn", tmp_path).stdout == expected


def test_no_cache_directory_still_parses(tmp_path: Path, expected: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory would go")
    run = _parse(SPECS / "digits_cnn.nn", blocker)
    assert (run.returncode, run.stdout, run.stderr) == (0, expected, "")


def test_syntax_errors_read_the_same_from_the_cache(tmp_path: Path) -> None:
    spec = tmp_path / "broken.nn"
    spec.write_text(BROKEN)
    fresh = _parse(spec, tmp_path / "fresh")
    cached = _parse(spec, tmp_path / "fresh")
    assert fresh.returncode == 3 and "broken.nn:4:1" in fresh.stdout
    assert (cached.returncode, cached.stdout, cached.stderr) == (3, fresh.stdout, "")
