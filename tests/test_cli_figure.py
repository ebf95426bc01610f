"""``python -m neuronviz figure``: the same numbers as the library (and so as the Figure page)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from neuronviz import cli  # noqa: E402
from neuronviz.data.images import load_sample  # noqa: E402
from neuronviz.figures import compose  # noqa: E402
from neuronviz.workflows import analysis, export  # noqa: E402

needs_chromium = pytest.mark.skipif(
    export.find_chromium() is None, reason="no chromium (/usr/bin/chromium or $BROWSER_PATH): static export needs one"
)

ARGS = ["figure", "--model", "digits-cnn", "--image", "digit-test-3", "--attack", "fgsm", "--param", "eps=0.2",
        "--charts", "top5,front-tail,layers", "--width", "85mm", "--font-size", "7"]


def _library_numbers(model):
    x = load_sample("digit-test-3", model)
    result = analysis.compute_analysis(model, x, analysis.AttackChoice.make("fgsm", {"eps": 0.2}))
    spec = compose.FigureSpec(charts=("top5", "front-tail", "layers"), width_mm=85.0, font_pt=7.0)
    return result, json.loads(json.dumps(compose.figure_numbers(result, model.class_names, spec)))


@needs_chromium
def test_cli_figure_equals_the_library(tmp_path, digits_cnn):
    out = tmp_path / "fig.svg"
    assert cli.main([*ARGS, "--out", str(out)]) == 0
    numbers = json.loads((tmp_path / "fig.svg.numbers.json").read_text())
    result, expected = _library_numbers(digits_cnn)
    assert numbers == expected
    record = json.loads((tmp_path / "fig.svg.provenance.json").read_text())
    assert record["model"]["content_hash"] == digits_cnn.content_hash
    from neuronviz.infra.digest import tensor_digest

    assert record["image"] == {"name": "digit-test-3", "shape": [1, 1, 28, 28],
                               "content_hash": tensor_digest(load_sample("digit-test-3", digits_cnn))}
    assert record["attacks"][0]["attack"] == "fgsm" and record["attacks"][0]["params"]["eps"] == 0.2
    assert [d["defence"] for d in record["defences"]] == ["nip-guided", "pssr"]
    assert record["extra"]["figure"]["width_mm"] == 85.0
    svg = out.read_bytes()
    assert export.read_provenance(svg, "svg") == record
    clean = expected["panels"]["clean"]
    assert f"{clean['class_name']} · {100 * clean['confidence']:.1f}%".encode() in svg


def test_cli_build_matches_without_export(digits_cnn):
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    from neuronviz.cli.figure import add_parser, build

    add_parser(sub)
    args = parser.parse_args([*ARGS, "--defences", "pssr", "--out", "x.pdf"])
    _, name, result, spec, fig, numbers, record = build(args)
    assert spec.panels == ("clean", "perturbation", "adversarial", "pssr")
    assert [d["defence"] for d in record["defences"]] == ["pssr"]
    _, expected = _library_numbers(digits_cnn)
    numbers = json.loads(json.dumps(numbers))
    assert numbers["panels"]["clean"] == expected["panels"]["clean"]
    assert numbers["front_tail"] == expected["front_tail"]


def test_cli_errors_are_messages(tmp_path, capsys):
    assert cli.main([*ARGS, "--out", str(tmp_path / "fig.jpg")]) == 2
    assert "must end in .pdf, .svg or .png" in capsys.readouterr().err
    assert cli.main([*ARGS[:-4], "--width", "2mm", "--out", str(tmp_path / "f.pdf")]) == 2
    assert "between 10 mm and 1000 mm" in capsys.readouterr().err
    assert cli.main([*ARGS, "--defences", "jpeg2000", "--out", str(tmp_path / "f.pdf")]) == 2
    assert "unknown ['jpeg2000']" in capsys.readouterr().err
    assert cli.main([*ARGS, "--session", "s.json", "--out", str(tmp_path / "f.pdf")]) == 2
    assert "--session s.json: no such file" in capsys.readouterr().err


def test_help_names_every_option():
    out = subprocess.run([sys.executable, "-m", "neuronviz", "figure", "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    for option in ("--model", "--image", "--attack", "--param", "--target", "--seed", "--defences", "--panels",
                   "--charts", "--layer", "--after", "--group-size", "--tail-rule", "--width", "--height",
                   "--font-size", "--dpi", "--no-letters", "--device", "--session", "--out"):
        assert option in out.stdout


def test_cli_figure_is_the_pages_figure(digits_cnn):
    """The page composes with the sample's true class marked; the CLI does the same for a sample id."""
    import argparse

    from neuronviz.cli.figure import add_parser, build
    from neuronviz.data.images import list_samples

    sample = list_samples(digits_cnn)[0]
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["figure", "--model", "digits-cnn", "--image", sample.id, "--out", "x.svg"])
    _, _, result, spec, fig, _, _ = build(args)
    page_fig = compose.compose_figure(result, digits_cnn.class_names, spec, true_class=sample.true_class)
    assert fig.to_plotly_json() == page_fig.to_plotly_json()
    ticks = [str(tick) for key in fig.layout if key.startswith("yaxis") for tick in (fig.layout[key].ticktext or ())]
    # The true class is marked in the top-5 bars: bold, with "(true)" where the cell leaves room for it.
    assert any(tick.startswith("<b>") for tick in ticks)
