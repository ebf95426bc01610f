"""neuronviz/workflows/export.py: PDF/SVG/PNG at a physical size through kaleido and chromium, with provenance.

Tests that render need a chromium (Debian's /usr/bin/chromium; CI has it) and skip without one.
pdfinfo/pdffonts (Debian's poppler-utils) check the PDF from outside; those skip without them.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import plotly.graph_objects as go
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from neuronviz.infra.errors import InputError, NeuronvizError  # noqa: E402
from neuronviz.workflows import export  # noqa: E402

needs_chromium = pytest.mark.skipif(
    export.find_chromium() is None, reason="no chromium (/usr/bin/chromium or $BROWSER_PATH): static export needs one"
)
needs_poppler = pytest.mark.skipif(
    shutil.which("pdfinfo") is None or shutil.which("pdffonts") is None,
    reason="pdfinfo/pdffonts (Debian poppler-utils) are not installed",
)

RECORD = {"model": {"name": "digits-cnn", "content_hash": "ab" * 32}, "image": {"content_hash": "cd" * 20},
          "attacks": [{"attack": "pgd", "params": {"eps": 0.1}}], "note": "ε ∂ “quotes” ]]> (paren) \\ back"}


def _figure() -> go.Figure:
    fig = go.Figure(go.Bar(x=["front", "tail"], y=[2.5, -1.25], text=["2.5", "-1.25"]))
    fig.update_layout(title="Influence plotted", font=dict(family="Arial, 'Liberation Sans', sans-serif"), template="plotly_white")
    return fig


def test_parse_length():
    assert export.parse_length("85mm") == 85.0
    assert export.parse_length("85") == 85.0
    assert export.parse_length(178) == 178.0
    assert export.parse_length("8.5cm") == pytest.approx(85.0)
    assert export.parse_length("3.5in") == pytest.approx(88.9)
    assert export.parse_length("72pt") == pytest.approx(25.4)
    assert export.parse_length("single") == 85.0 and export.parse_length("double") == 178.0
    for bad in ("", "wide", "85 furlongs", "-3mm", "2mm", True, None):
        with pytest.raises(InputError):
            export.parse_length(bad)


def test_png_pixels_and_formats():
    assert export.png_pixels(85, 60, 300) == (1004, 709)
    assert export.png_pixels(25.4, 25.4, 600) == (600, 600)
    assert export.format_of("fig.PDF") == "pdf"
    with pytest.raises(InputError, match="must end in"):
        export.format_of("fig.jpg")


def test_no_chromium_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(export, "_STARTED", False)
    monkeypatch.setattr(export, "find_chromium", lambda: None)
    with pytest.raises(export.ExportUnavailableError, match="No chromium was found") as info:
        export.export_figure(_figure(), "svg", 85, 60)
    assert isinstance(info.value, NeuronvizError)


def test_bad_sizes_are_refused():
    with pytest.raises(InputError):
        export.export_figure(_figure(), "pdf", 85, 5)
    with pytest.raises(InputError):
        export.export_figure(_figure(), "png", 85, 60, dpi=10)
    with pytest.raises(InputError):
        export.export_figure(_figure(), "eps", 85, 60)


@needs_chromium
def test_svg_is_xml_with_text_and_provenance():
    data = export.export_figure(_figure(), "svg", 85, 60, provenance=RECORD)
    root = ET.fromstring(data)
    assert root.tag.endswith("svg")
    texts = " ".join("".join(e.itertext()) for e in root.iter() if e.tag.endswith("text"))
    assert "Influence plotted" in texts and "front" in texts and "tail" in texts
    assert "sans-serif" in data.decode()
    assert export.read_provenance(data, "svg") == RECORD
    assert export.read_provenance(export.export_figure(_figure(), "svg", 85, 60), "svg") is None


@needs_chromium
@needs_poppler
def test_pdf_page_size_fonts_and_provenance(tmp_path):
    paths = export.write_figure(_figure(), tmp_path / "fig.pdf", 85, 60, provenance=RECORD)
    pdf = paths[0].read_bytes()
    assert pdf.startswith(b"%PDF")
    info = subprocess.run(["pdfinfo", str(paths[0])], capture_output=True, text=True, timeout=60)
    assert info.returncode == 0 and "Syntax Error" not in info.stderr, info.stderr
    size = next(line for line in info.stdout.splitlines() if line.startswith("Page size:"))
    width, height = (float(v) for v in size.split()[2:5:2])
    assert width == pytest.approx(85 / 25.4 * 72, abs=1.0)
    assert height == pytest.approx(60 / 25.4 * 72, abs=1.0)
    assert "neuronviz figure: digits-cnn" in info.stdout  # the Title of the new Info dictionary
    custom = subprocess.run(["pdfinfo", "-custom", str(paths[0])], capture_output=True, text=True, timeout=60)
    line = next(line for line in custom.stdout.splitlines() if line.startswith("NeuronvizProvenance:"))
    assert json.loads(line.partition(":")[2]) == RECORD  # poppler reads the record back
    fonts = subprocess.run(["pdffonts", str(paths[0])], capture_output=True, text=True, timeout=60).stdout.splitlines()[2:]
    assert fonts, "the PDF has no fonts: the text was not kept as text"
    for line in fonts:
        assert line.split()[-5] == "yes", f"font not embedded: {line}"
    assert export.read_provenance(pdf, "pdf") == RECORD
    assert json.loads(paths[1].read_text()) == RECORD
    assert paths[1].name == "fig.pdf.provenance.json"


@needs_chromium
@pytest.mark.parametrize("dpi", [300, 600])
def test_png_pixel_size_dpi_and_provenance(dpi):
    from PIL import Image

    data = export.export_figure(_figure(), "png", 85, 40, dpi=dpi, provenance=RECORD)
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == export.png_pixels(85, 40, dpi)
        assert image.size[0] == round(85 / 25.4 * dpi)
        assert round(image.info["dpi"][0]) == dpi
    assert export.read_provenance(data, "png") == RECORD


@needs_chromium
def test_later_exports_are_fast():
    export.export_figure(_figure(), "svg", 85, 60)  # the server is up after this one
    started = time.perf_counter()
    for fmt in ("svg", "pdf", "png"):
        export.export_figure(_figure(), fmt, 85, 60)
    assert (time.perf_counter() - started) / 3 < 2.0  # ~0.3–0.5 s each here; generous for a loaded CI machine
    assert len(export.timings()) >= 4


@needs_chromium
def test_concurrent_exports_get_their_own_results():
    import threading

    results: dict[int, bytes] = {}
    start = threading.Barrier(3)

    def work(index: int) -> None:
        fig = go.Figure(go.Bar(x=[f"thread{index}"], y=[index + 1]))
        start.wait()
        results[index] = export.export_figure(fig, "svg", 60, 40)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(results) == [0, 1, 2]
    for index, data in results.items():
        assert f"thread{index}".encode() in data
        others = [i for i in range(3) if i != index]
        assert all(f"thread{i}".encode() not in data for i in others)
