"""`nndsl graph`: every shipped spec draws to valid, non-blank PNG and SVG files showing each
node; blocks are framed, tied weights and frozen layers marked; deep models fold into columns;
wrong output names are errors before anything is drawn."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from nndsl.cli import main
from nndsl.graph_layout import FOLD_ROWS, layout
from nndsl.graph_picture import Box, Picture, describe, draw_network
from nndsl.program import load

from .conftest import ROOT, SPECS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SVG = "{http://www.w3.org/2000/svg}"


def svg_texts(path: Path) -> list[str]:
    """Every text run of an SVG (the file must parse as XML)."""
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def ink(path: Path) -> float:
    """The fraction of a PNG's pixels that are not (near) white."""
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) >= 200
    return float((pixels[..., :3].min(axis=-1) < 0.8).mean())


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_every_shipped_spec_draws_to_png_and_svg(spec: Path, tmp_path: Path) -> None:
    png, svg = tmp_path / "net.png", tmp_path / "net.svg"
    assert main(["graph", str(spec), "-o", str(png), "-o", str(svg)]) == 0
    assert 0.01 < ink(png) < 0.5
    texts = svg_texts(svg)
    program, _ = load(spec)
    for model in program.models:  # every model, titled, with a box per input and node
        assert any(t.startswith(f"model {model.name} · ") for t in texts)
        for name, _type in model.inputs:
            assert f"{name}: input" in texts
        for node in model.nodes:
            assert f"{node.name.rsplit('/', 1)[-1]}: {node.op}" in texts, node.name


def test_tied_weights_are_marked_on_both_layers(tmp_path: Path) -> None:
    svg = tmp_path / "tied.svg"
    assert main(["graph", str(ROOT / "specs" / "tied_autoencoder.nn"), "-o", str(svg)]) == 0
    texts = svg_texts(svg)
    assert texts.count("tied weight enc.weight") == 2  # the encoder and the decoder using it
    assert "tied" in texts and "tied weights" in texts  # the bracket's label, the legend
    program, _ = load(ROOT / "specs" / "tied_autoencoder.nn")
    picture = describe(program, program.models[0])
    assert picture.ties == [("enc", "dense_1", "enc.weight")]


@pytest.mark.parametrize(("spec", "node", "mark"), [
    ("pretrain_finetune", "enc", "frozen in finetune"),
    ("dbn_digits", "h1", "frozen in rbm2"),
])
def test_layers_frozen_in_a_phase_are_marked(spec: str, node: str, mark: str,
                                             tmp_path: Path) -> None:
    program, _ = load(ROOT / "specs" / f"{spec}.nn")
    picture = describe(program, program.models[0])
    assert [k for k, b in picture.boxes.items() if b.frozen] == [node]
    assert mark in picture.boxes[node].lines
    svg = tmp_path / "net.svg"
    draw_network(program, program.models[0], svg)
    assert mark in svg_texts(svg) and "frozen in training" in svg_texts(svg)  # box, legend


def test_a_train_block_freeze_marks_the_layer_frozen(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = write_spec("""model m {
  input x: [batch, 2]
  h = x -> enc: dense(4) -> sign
  out = h -> dense(1) -> sigmoid
  output out
}
train m { data = builtin("xor"); target y: [batch, 1]; loss = mse(out, y); freeze = [enc] }
""")
    program, _ = load(spec)
    boxes = describe(program, program.models[0]).boxes
    assert boxes["enc"].frozen == ("main",) and "frozen" in boxes["enc"].lines
    assert not any(b.frozen for k, b in boxes.items() if k != "enc")


def test_blocks_are_framed_and_labelled_with_their_instance(tmp_path: Path) -> None:
    program, _ = load(ROOT / "specs" / "digits_cnn.nn")
    boxes = describe(program, program.models[0]).boxes
    scopes = {k: b.scope for k, b in boxes.items() if b.scope}
    assert sorted(scopes.values()) == [("conv_pool_1",)] * 3 + [("conv_pool_2",)] * 3
    svg = tmp_path / "cnn.svg"
    assert main(["graph", str(ROOT / "specs" / "digits_cnn.nn"), "-o", str(svg)]) == 0
    texts = svg_texts(svg)
    assert "conv_pool_1" in texts and "conv_pool_2" in texts and "block" in texts


def test_nested_blocks_and_a_renamed_last_node_keep_their_scope(write_spec) -> None:  # type: ignore[no-untyped-def]
    program, _ = load(ROOT / "specs" / "residual_mlp.nn")
    boxes = describe(program, program.models[0]).boxes
    assert boxes["repeat_1.2/residual_1/add_1"].scope == ("repeat_1.2", "residual_1")
    spec = write_spec("""block conv_pool(channels) {
  conv2d(channels, kernel=3, padding=same) -> relu -> maxpool2d(2)
}
model m {
  input x: [batch, 1, 8, 8]
  f = x -> conv_pool(4)
  g = f -> conv_pool(8)
  output g
}
""")
    program, _ = load(spec)
    boxes = describe(program, program.models[0]).boxes
    assert boxes["f"].scope == ("conv_pool_1",) and boxes["g"].scope == ("conv_pool_2",)


def test_skip_connections_are_routed_beside_the_boxes() -> None:
    """A residual edge runs through waypoints one layer apart, none of them on a box."""
    program, _ = load(ROOT / "specs" / "residual_mlp.nn")
    picture = describe(program, program.models[0])
    placed = layout(picture)
    boxes = {placed.pos[k] for k in picture.boxes}
    assert len(boxes) == len(picture.boxes)  # no two boxes on one spot
    long = [points for points, _ in placed.paths if len(points) > 2]
    assert len(long) == 3  # one skip edge per residual block
    for points, _target in placed.paths:
        assert all(b[1] - a[1] == 1 for a, b in zip(points, points[1:], strict=False))
        assert not boxes.intersection(points[1:-1])


def test_a_deep_chain_folds_into_columns() -> None:
    n = 600
    boxes = {f"n{i}": Box(f"n{i}", [f"n{i}: dense", "[batch, 8] · 72 params"])
             for i in range(n)}
    picture = Picture("chain", boxes, [(f"n{i}", f"n{i + 1}") for i in range(n - 1)])
    placed = layout(picture)
    columns = max(placed.column.values()) + 1
    assert columns > 1 and placed.rows >= FOLD_ROWS and placed.rows * columns >= n
    assert len(set(placed.pos.values())) == n
    aspect = placed.width * placed.slot_in / (placed.rows * placed.row_in)
    assert 0.5 < aspect < 3
    for points, _target in placed.paths:  # a column change climbs the gutter: 6 points
        assert len(points) in (2, 6)


def test_pdf_too(tmp_path: Path) -> None:
    program, _ = load(ROOT / "specs" / "xor.nn")
    draw_network(program, program.models[0], tmp_path / "xor.pdf")
    assert (tmp_path / "xor.pdf").read_bytes()[:5] == b"%PDF-"


@pytest.mark.parametrize(("output", "message"), [
    ("net.jpg", "unsupported file type"),
    ("missing/net.svg", "does not exist"),
    ("spec.nn/net.svg", "is not a folder"),
    ("folder.svg", "is a directory"),
])
def test_bad_outputs_are_errors_before_drawing(output: str, message: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "spec.nn").write_text("", encoding="utf-8")
    (tmp_path / "folder.svg").mkdir()
    assert main(["graph", str(ROOT / "specs" / "xor.nn"), "-o", str(tmp_path / output)]) == 1
    err = capsys.readouterr().err
    assert message in err and "hint:" in err and "Traceback" not in err
    assert not list(tmp_path.glob("**/net.*"))


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs a folder no one can write")
def test_an_unwritable_path_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(ROOT / "specs" / "xor.nn"), "-o", "/proc/nndsl-net.svg"]) == 1
    assert "cannot write '/proc/nndsl-net.svg'" in capsys.readouterr().err


def test_an_unknown_model_is_an_error_naming_the_models(capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path) -> None:
    out = tmp_path / "g.svg"
    assert main(["graph", str(ROOT / "specs" / "gan.nn"), "--model", "generatr",
                 "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "has no model 'generatr'" in err and "did you mean 'generator'?" in err
    assert main(["graph", str(ROOT / "specs" / "gan.nn"), "--model", "generator",
                 "-o", str(out)]) == 0
    titles = [t for t in svg_texts(out) if t.startswith("model ")]
    assert len(titles) == 1 and titles[0].startswith("model generator ")


def test_the_command_imports_no_plotting_library_until_it_draws() -> None:
    code = ("import sys; import nndsl.commands.graph, nndsl.graph_picture, nndsl.graph_layout\n"
            "assert 'matplotlib' not in sys.modules and 'networkx' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
