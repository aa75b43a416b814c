"""`nndsl fmt`: one canonical layout that keeps every comment and never changes a spec's meaning.

Meaning is compared on the checked program: the IR text of every model without source
positions, the models and train specs themselves (their equality ignores spans), or, for a spec
that does not check, the same errors (message, expected, received, hint). The fuzzed specs come
from tests/fuzz (generated from the grammar and the op registry, mutated shipped specs, and
either with comments added at every kind of place), derandomized like tests/test_fuzz.py.
"""

from __future__ import annotations

import os
import re
import stat
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from nndsl.cli import main
from nndsl.errors import ErrorGroup, NndslError
from nndsl.format import format_text
from nndsl.format.source import scan_comments
from nndsl.ir import format_graph
from nndsl.program import load

from .conftest import LANGUAGE_EXAMPLES, ROOT, SPECS
from .fuzz.comments import add_comments
from .fuzz.mutate import mutate
from .fuzz.strategies import GeneratedSpec, specs
from .fuzz.values import Drawer

SHIPPED = sorted({*SPECS, *(ROOT / "specs").rglob("*.nn"), *LANGUAGE_EXAMPLES})
ERROR_SPECS = sorted((ROOT / "tests" / "errors").glob("*.nn"))
GENERATED_PATH = ROOT / "specs" / "generated.nn"  # beside specs/lib, which specs may import
POSITION = re.compile(r"\s+# \S+:\d+:\d+$", re.M)
FUZZ = settings(deadline=None, database=None, derandomize=True, print_blob=True,
                suppress_health_check=list(HealthCheck))
GENERATED, MUTATED, COMMENTED = 750, 900, 200


def outcome(path: Path, text: str) -> Any:
    """What a spec means once checked: the IR and train specs, or its errors; no positions."""
    try:
        program, _ = load(path, text)
    except NndslError as e:
        errors = e.errors if isinstance(e, ErrorGroup) else [e]
        return sorted((x.message, x.expected or "", x.received or "", x.hint or "")
                      for x in errors)
    return ([POSITION.sub("", format_graph(g)) for g in program.models], program.models,
            program.trains)


def assert_canonical_and_same(path: Path, text: str) -> str:
    """Format `text`: idempotent, every comment kept in order, the same meaning."""
    formatted = format_text(text, str(path))
    assert format_text(formatted, str(path)) == formatted, "formatting twice changes the text"
    assert [c.text for c in scan_comments(formatted)] == [c.text for c in scan_comments(text)]
    assert outcome(path, formatted) == outcome(path, text), formatted
    return formatted


# ------------------------------------------------------------------ shipped specs


def test_shipped_specs_are_canonical(capsys: pytest.CaptureFixture[str]) -> None:
    """Every spec and language example passes `nndsl fmt --check` (fix: `nndsl fmt specs`)."""
    assert main(["fmt", "--check", *map(str, SHIPPED)]) == 0, capsys.readouterr().out
    assert f"0 specs would be reformatted, {len(SHIPPED)} unchanged" in capsys.readouterr().out


@pytest.mark.parametrize("path", SHIPPED + ERROR_SPECS, ids=lambda p: p.name)
def test_formatting_keeps_the_meaning(path: Path) -> None:
    """Shipped specs, and the error cases that parse: the same program, or the same errors."""
    text = path.read_text(encoding="utf-8")
    try:
        assert_canonical_and_same(path, text)
    except NndslError as e:  # a syntax error: fmt reports what check reports
        with pytest.raises(NndslError) as checked:
            load(path, text)
        assert path in ERROR_SPECS and e.render() == checked.value.render()


# ------------------------------------------------------------------ fuzzed specs


@pytest.mark.slow
def test_fuzzed_specs_keep_their_meaning() -> None:
    """At least 1,000 generated and mutated specs that parse: idempotent, same meaning."""
    stats: Counter[str] = Counter()
    corpus = [p.read_text(encoding="utf-8") for p in SHIPPED]

    def case(text: str) -> None:
        note(text)
        try:
            assert_canonical_and_same(GENERATED_PATH, text)
            stats["formatted"] += 1
        except NndslError:
            stats["syntax errors"] += 1

    @settings(FUZZ, max_examples=GENERATED)
    @given(specs())
    def generated(spec: GeneratedSpec) -> None:
        case(spec.text)

    @settings(FUZZ, max_examples=MUTATED)
    @given(st.data())
    def mutated(data: st.DataObject) -> None:
        case(mutate(Drawer(data.draw), data.draw(st.sampled_from(corpus))))

    generated()
    mutated()
    print(f"fmt fuzz: {dict(stats)}")
    assert stats["formatted"] >= 1000, dict(stats)


@pytest.mark.slow
def test_comments_survive_anywhere() -> None:
    """Generated and mutated specs with comments after statements, on their own lines and
    inside statements: all kept, in order; formatting is idempotent and keeps the meaning."""
    stats: Counter[str] = Counter()
    corpus = [p.read_text(encoding="utf-8") for p in SHIPPED]

    def case(d: Drawer, text: str) -> None:
        try:
            format_text(text)
        except NndslError:  # a faulty spec that does not parse
            return
        text = add_comments(d, text, d.int(1, 8))
        note(text)
        formatted = assert_canonical_and_same(GENERATED_PATH, text)
        stats["specs"] += 1
        stats["comments"] += len(scan_comments(formatted))

    @settings(FUZZ, max_examples=COMMENTED)
    @given(specs(), st.data())
    def generated(spec: GeneratedSpec, data: st.DataObject) -> None:
        case(Drawer(data.draw), spec.text)

    @settings(FUZZ, max_examples=COMMENTED)
    @given(st.data())
    def mutated(data: st.DataObject) -> None:
        d = Drawer(data.draw)
        case(d, mutate(d, data.draw(st.sampled_from(corpus))))

    generated()
    mutated()
    print(f"fmt comments: {dict(stats)}")
    assert stats["specs"] >= COMMENTED and stats["comments"] >= stats["specs"], dict(stats)


# ------------------------------------------------------------------ the rules


RULES = [
    ("model m{input x:[batch,2];h=x->dense(2,init=normal(0,1),)->relu;output h}",
     "model m {\n  input x: [batch, 2]\n  h = x -> dense(2, init=normal(0, 1)) -> relu\n"
     "  output h\n}\n"),
    ("model m { input x: [2]\n y = ((a + b) * (c - (d - e))) / -(-f)\n output y }",
     "model m {\n  input x: [2]\n  y = (a + b) * (c - (d - e)) / - -f\n  output y\n}\n"),
    ("model m { input x: [2]\n y = -(a ** (b ** c)) + (a ** b) ** c * (-a) ** -(2 * b)\n"
     " output y }",
     "model m {\n  input x: [2]\n  y = -a ** b ** c + (a ** b) ** c * (-a) ** -(2 * b)\n"
     "  output y\n}\n"),
    ("model m { input x: [2]\n y = ((x -> relu) -> tanh) - (x -> relu)\n output y }",
     "model m {\n  input x: [2]\n  y = ((x -> relu) -> tanh) - (x -> relu)\n  output y\n}\n"),
    ('import "a.nn"\n\n\nimport "b.nn"\nmodel m {}\n;train m {}',
     'import "a.nn"\n\nimport "b.nn"\n\nmodel m {}\n\ntrain m {}\n'),
    ("train t {\n  data = builtin(\"xor\")\n  epochs = 3\n\n  seed = 1\n}\n",
     "train t {\n  data   = builtin(\"xor\")\n  epochs = 3\n\n  seed = 1\n}\n"),
    ("train t { phase p { epochs = 3\n lr = 1e-3 } }",
     "train t {\n  phase p { epochs = 3; lr = 1e-3 }\n}\n"),
    ("train t { phase p { epochs = 3 # why\n } }",
     "train t {\n  phase p {\n    epochs = 3  # why\n  }\n}\n"),
    ("model m { defaults { init = he_normal\n bias_init = zeros } }",
     "model m {\n  defaults { init = he_normal; bias_init = zeros }\n}\n"),
    ("block b(u, k = 3,) { h = in -> dense(u); -h }",
     "block b(u, k=3) {\n  h = in -> dense(u);\n  -h\n}\n"),
    ("model m { input x: [2]\n h x -> dense(2)\n output h }",  # an error fmt must not hide
     "model m {\n  input x: [2]\n  h x -> dense(2)\n  output h\n}\n"),
    ("model m { y = x -> " + " -> ".join(["dense(1000000)"] * 6) + " }",
     "model m {\n  y = x\n" + "      -> dense(1000000)\n" * 6 + "}\n"),
    ("model m {\n  y = x # from x\n   -> relu\n}",
     "model m {\n  y = x  # from x\n      -> relu\n}\n"),
    ("model m {\n  y = f(a,  # first\n  b)\n}", "model m {\n  # first\n  y = f(a, b)\n}\n"),
    ("# head\n\n\nmodel m {  # opens\n\n\n  # lead\n  y = x   # t1\n          # t1 again\n"
     "  zz = x # t2\n\n  # last\n}  # closes\n# end",
     "# head\n\nmodel m {  # opens\n  # lead\n  y = x   # t1\n          # t1 again\n"
     "  zz = x  # t2\n\n  # last\n}  # closes\n# end\n"),
    ("model m {}\r\n", "model m {}\n"),
    ('model m { y = f(2.50, 1E-3, "a#b\\"") }', 'model m {\n  y = f(2.50, 1E-3, "a#b\\"")\n}\n'),
    ('import # which\n "a.nn"', '# which\nimport "a.nn"\n'),
    ("", ""),
]


@pytest.mark.parametrize("source,expected", RULES)
def test_canonical_layout(source: str, expected: str) -> None:
    assert format_text(source) == expected
    assert format_text(expected) == expected


def test_a_syntax_error_is_the_usual_positioned_error() -> None:
    with pytest.raises(NndslError) as e:
        format_text("model m {\n  h = x -> dense(2 3)\n}\n", "bad.nn")
    assert str(e.value) == "bad.nn:2:20: missing ',' between arguments"


# ------------------------------------------------------------------ the command


UGLY = "model m{input x:[batch,2]\nh=x->relu # keep me\noutput h}"
PRETTY = "model m {\n  input x: [batch, 2]\n  h = x -> relu  # keep me\n  output h\n}\n"


def test_fmt_rewrites_files_in_place(write_spec, capsys) -> None:  # type: ignore[no-untyped-def]
    ugly, pretty = write_spec(UGLY, "ugly.nn"), write_spec(PRETTY, "pretty.nn")
    os.chmod(ugly, 0o640)
    assert main(["fmt", str(ugly), str(pretty)]) == 0
    assert ugly.read_text(encoding="utf-8") == PRETTY and pretty.read_text() == PRETTY
    assert stat.S_IMODE(ugly.stat().st_mode) == 0o640
    assert not list(ugly.parent.glob("*.tmp"))
    out = capsys.readouterr().out
    assert f"reformatted {ugly}" in out and "pretty.nn" not in out
    assert "1 spec reformatted, 1 unchanged" in out


def test_fmt_keeps_a_byte_order_mark(write_spec) -> None:  # type: ignore[no-untyped-def]
    marked, pretty = write_spec("\ufeff" + UGLY, "ugly.nn"), write_spec("\ufeff" + PRETTY, "p.nn")
    assert main(["fmt", "--check", str(pretty)]) == 0
    assert main(["fmt", str(marked)]) == 0
    assert marked.read_bytes() == "\ufeff".encode() + PRETTY.encode()


def test_fmt_check_changes_nothing_and_exits_one(write_spec, capsys) -> None:  # type: ignore[no-untyped-def]
    ugly, pretty = write_spec(UGLY, "ugly.nn"), write_spec(PRETTY, "pretty.nn")
    assert main(["fmt", "--check", str(pretty)]) == 0
    assert main(["fmt", "--check", str(ugly), str(pretty)]) == 1
    assert ugly.read_text(encoding="utf-8") == UGLY
    out = capsys.readouterr().out
    assert f"would reformat {ugly}" in out and f"would reformat {pretty}" not in out


def test_fmt_diff_prints_a_unified_diff(write_spec, capsys) -> None:  # type: ignore[no-untyped-def]
    ugly = write_spec(UGLY, "ugly.nn")
    assert main(["fmt", "--diff", str(ugly)]) == 0
    captured = capsys.readouterr()
    assert ugly.read_text(encoding="utf-8") == UGLY
    assert captured.out.startswith(f"--- {ugly}\t(original)\n+++ {ugly}\t(formatted)\n@@ ")
    assert "-output h}\n\\ No newline at end of file\n" in captured.out
    assert "+  h = x -> relu  # keep me\n" in captured.out
    assert f"would reformat {ugly}" in captured.err


def test_fmt_stdin_to_stdout(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(UGLY))
    assert main(["fmt", "-"]) == 0
    assert capsys.readouterr().out == PRETTY
    monkeypatch.setattr("sys.stdin", io.StringIO(PRETTY))
    assert main(["fmt", "--check", "-"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("model m {"))
    assert main(["fmt", "-"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("<stdin>:1:10: error: unclosed '{'")


def test_fmt_leaves_a_spec_with_a_syntax_error_alone(write_spec, capsys) -> None:  # type: ignore[no-untyped-def]
    bad = write_spec("model m {\n  h = x -> dense(2 3)\n}\n", "bad.nn")
    ugly = write_spec(UGLY, "ugly.nn")
    assert main(["fmt", str(bad), str(ugly)]) == 1
    assert bad.read_text(encoding="utf-8") == "model m {\n  h = x -> dense(2 3)\n}\n"
    assert ugly.read_text(encoding="utf-8") == PRETTY  # the other spec is still formatted
    err = capsys.readouterr().err
    assert err.startswith(f"{bad}:2:20: error: missing ',' between arguments\n")
    assert "    h = x -> dense(2 3)\n" in err


def test_fmt_takes_directories_and_reports_unreadable_files(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.nn").write_text(UGLY, encoding="utf-8")
    (tmp_path / "b.nn").write_bytes(b"model m {\xff}")
    assert main(["fmt", "--check", str(tmp_path), str(tmp_path / "missing.nn")]) == 1
    captured = capsys.readouterr()
    assert f"would reformat {tmp_path / 'sub' / 'a.nn'}" in captured.out
    assert f"cannot read {tmp_path / 'b.nn'}: it is not UTF-8 text" in captured.err
    assert f"cannot read {tmp_path / 'missing.nn'}: no such file" in captured.err
