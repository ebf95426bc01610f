"""Server-side export of plotly figures for print: PDF, SVG and PNG at a physical size, with provenance.

- :func:`export_figure` renders a figure through kaleido 1.5 and the system chromium: PDF and SVG
  are vector with text as text (fonts embedded in the PDF; the SVG names a standard font), PNG is
  rendered at a chosen DPI (300 or 600 for print). Sizes are physical: :func:`parse_length`
  reads ``"85mm"``, ``"3.35in"``, ``"8.5cm"``; :data:`WIDTH_PRESETS` has the single (85 mm) and
  double (178 mm) column widths.
- :func:`embed_provenance` writes a provenance record into the file itself: the PDF's Info
  dictionary (an incremental update, key ``/NeuronvizProvenance``, plus Title/Subject/Keywords),
  an SVG ``<metadata>`` element, a PNG ``iTXt`` chunk (keyword ``neuronviz:provenance``);
  :func:`write_figure` also writes it beside the file as ``<name>.provenance.json``.
  :func:`read_provenance` reads it back from any of the three.
- kaleido's sync server (one headless chromium) is started once per process, lazily, on the
  first export; exports are serialised by a lock (kaleido's server answers one call at a time and
  its result queue is shared). :func:`timings` reports the first and the later export times.

Where no chromium can be found, :func:`export_figure` raises :class:`ExportUnavailableError`
(the page says so; plotly's toolbar still downloads an SVG in the browser).
Nothing here imports Streamlit.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import plotly.graph_objects as go

from neuronviz.infra.errors import InputError, NeuronvizError

#: Export formats, by file extension.
FORMATS = ("pdf", "svg", "png")
#: Column widths of most journals and conference templates, in mm.
WIDTH_PRESETS: dict[str, float] = {"single": 85.0, "double": 178.0}
#: Raster resolutions offered for PNG.
DPI_CHOICES = (300, 600)
MM_PER_INCH = 25.4
#: CSS pixels per inch: plotly lays a figure out in CSS pixels, chromium prints 96 px to the inch.
CSS_DPI = 96.0
PT_PER_INCH = 72.0
#: The key of the provenance record in PDF Info, SVG metadata and PNG text chunks.
PROVENANCE_KEY = "neuronviz:provenance"
_PDF_KEY = "NeuronvizProvenance"
#: Where chromium is looked for, in order, after ``$BROWSER_PATH``.
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


class ExportUnavailableError(NeuronvizError):
    """No chromium to render with (or it failed to start): static export is not possible here."""


# -- sizes -----------------------------------------------------------------------------------------

_LENGTH = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(mm|cm|in|inch|inches|pt|\")?\s*$", re.IGNORECASE)
_UNIT_MM = {"mm": 1.0, "cm": 10.0, "in": MM_PER_INCH, "inch": MM_PER_INCH, "inches": MM_PER_INCH, '"': MM_PER_INCH,
            "pt": MM_PER_INCH / PT_PER_INCH}


def parse_length(value: str | float | int) -> float:
    """A physical length in mm: ``85``/``"85mm"``, ``"8.5cm"``, ``"3.35in"``, ``"241pt"``, or a
    preset name (``"single"``, ``"double"``). A bare number is millimetres. Raises InputError."""
    if isinstance(value, bool):
        raise InputError(f"a length must be a number or text like '85mm' or '3.35in', got {value!r}")
    if isinstance(value, (int, float)):
        mm = float(value)
    elif isinstance(value, str):
        if value.strip().lower() in WIDTH_PRESETS:
            return WIDTH_PRESETS[value.strip().lower()]
        match = _LENGTH.match(value)
        if not match:
            raise InputError(
                f"cannot read the length {value!r}: write a number with mm, cm, in or pt (e.g. 85mm, 3.35in), "
                f"or one of {', '.join(WIDTH_PRESETS)}"
            )
        mm = float(match.group(1)) * _UNIT_MM[(match.group(2) or "mm").lower()]
    else:
        raise InputError(f"a length must be a number or text like '85mm', got {type(value).__name__}")
    if not 10.0 <= mm <= 1000.0:
        raise InputError(f"a figure side must be between 10 mm and 1000 mm, got {mm:.4g} mm")
    return mm


def mm_to_px(mm: float) -> float:
    """CSS pixels (plotly's layout unit) for a length in mm."""
    return mm / MM_PER_INCH * CSS_DPI


def mm_to_pt(mm: float) -> float:
    return mm / MM_PER_INCH * PT_PER_INCH


def png_pixels(width_mm: float, height_mm: float, dpi: int) -> tuple[int, int]:
    """The pixel size of a PNG of that physical size at ``dpi``."""
    return round(width_mm / MM_PER_INCH * dpi), round(height_mm / MM_PER_INCH * dpi)


# -- the kaleido server ------------------------------------------------------------------------------

_LOCK = threading.Lock()
_STARTED = False
_TIMES: list[tuple[str, float]] = []


def find_chromium() -> str | None:
    """The chromium kaleido will use: ``$BROWSER_PATH`` if it is a file, else the first of
    :data:`CHROMIUM_CANDIDATES` that exists, else ``chromium`` on the PATH; None if there is none."""
    env = os.environ.get("BROWSER_PATH")
    if env and Path(env).is_file():
        return env
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


def available() -> bool:
    """Whether static export can work here (a chromium exists)."""
    return find_chromium() is not None


def _print_page():
    """kaleido's page with one more rule: no scroll bars. kaleido prints a PDF from an ``<img>`` of
    the figure; when the figure is taller than its window, chromium's vertical scroll bar narrowed the
    page and shrank the content (by ~4.5 % at 85 mm × 390 mm), leaving a blank strip at the right and
    the bottom of the page."""
    import kaleido

    class PrintPage(kaleido.PageGenerator):
        footer = kaleido.PageGenerator.footer.replace(
            "</head>", "<style>@page { margin: 0; } html, body { margin: 0; overflow: hidden; } #kaleido-image { display: block; }</style>\n    </head>", 1
        )

    return PrintPage()


def _ensure_server() -> None:
    global _STARTED
    if _STARTED:
        return
    browser = find_chromium()
    if browser is None:
        raise ExportUnavailableError(
            "No chromium was found (looked at $BROWSER_PATH, " + ", ".join(CHROMIUM_CANDIDATES) + " and the PATH), so "
            "figures cannot be exported here as PDF, SVG or PNG. Install chromium (Debian: apt-get install chromium) "
            "or use the SVG button of the chart's toolbar."
        )
    os.environ.setdefault("BROWSER_PATH", browser)  # choreographer, kaleido's browser driver, reads it
    import kaleido

    try:
        kaleido.start_sync_server(page_generator=_print_page(), silence_warnings=True)
    except Exception as error:  # noqa: BLE001 - any start failure means "cannot export here"
        raise ExportUnavailableError(f"chromium ({browser}) did not start for the export: {error}") from error
    _STARTED = True


def timings() -> list[tuple[str, float]]:
    """``(format, seconds)`` of every export of this process, in order (the first includes
    starting chromium)."""
    return list(_TIMES)


# -- export ------------------------------------------------------------------------------------------


def _check_format(fmt: str) -> str:
    fmt = str(fmt).lower().lstrip(".")
    if fmt not in FORMATS:
        raise InputError(f"export format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt


def format_of(path: str | Path) -> str:
    """The export format a file name asks for, by its extension. Raises InputError."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise InputError(f"{path}: the file name must end in .pdf, .svg or .png (got {suffix or 'no extension'!r})")
    return suffix


def export_figure(
    fig: go.Figure,
    fmt: str,
    width_mm: float,
    height_mm: float,
    dpi: int = 300,
    provenance: Mapping[str, Any] | None = None,
) -> bytes:
    """The figure as a file's bytes: ``fmt`` pdf, svg or png, ``width_mm`` × ``height_mm``.

    The figure is laid out at that size in CSS pixels (96 per inch, so a PDF page is exactly the
    physical size and font sizes are CSS px = 0.75 pt); a PNG is rendered at ``dpi``. With
    ``provenance`` the record is embedded (:func:`embed_provenance`). Raises InputError for bad
    sizes, ExportUnavailableError when there is no chromium.
    """
    fmt = _check_format(fmt)
    if not isinstance(fig, go.Figure):
        raise InputError(f"fig must be a plotly Figure, got {type(fig).__name__}")
    width_mm, height_mm = parse_length(width_mm), parse_length(height_mm)
    if isinstance(dpi, bool) or not isinstance(dpi, int) or not 72 <= dpi <= 1200:
        raise InputError(f"dpi must be an integer between 72 and 1200, got {dpi!r}")
    width_px, height_px = mm_to_px(width_mm), mm_to_px(height_mm)
    scale = dpi / CSS_DPI if fmt == "png" else 1.0
    opts = {"format": fmt, "width": width_px, "height": height_px, "scale": scale}
    import kaleido

    with _LOCK:
        _ensure_server()
        started = time.perf_counter()
        try:
            data = kaleido.calc_fig_sync(fig, opts=opts)
        except Exception as error:  # noqa: BLE001 - a render failure is reported with what was asked
            raise ExportUnavailableError(f"chromium could not render the {fmt.upper()} export: {error}") from error
        _TIMES.append((fmt, time.perf_counter() - started))
    if fmt == "png":  # one decode and one encode: size, DPI and provenance together
        text = provenance_text(provenance) if provenance is not None else None
        return _png_finish(data, *png_pixels(width_mm, height_mm, dpi), dpi=dpi, text=text)
    if provenance is not None:
        data = embed_provenance(data, fmt, provenance)
    return data


def _png_finish(data: bytes, width: int, height: int, dpi: int, text: str | None = None) -> bytes:
    """The PNG at exactly ``width × height`` pixels (chromium rounds the scaled size), its DPI set,
    and the provenance record (when given) in an iTXt chunk."""
    from PIL import Image, PngImagePlugin

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.LANCZOS)  # type: ignore[assignment]
        info = PngImagePlugin.PngInfo()
        if text is not None:
            info.add_itxt(PROVENANCE_KEY, text, zip=True)
        out = io.BytesIO()
        image.save(out, format="PNG", dpi=(dpi, dpi), pnginfo=info, compress_level=3)
    return out.getvalue()


# -- provenance in the file ----------------------------------------------------------------------------


def provenance_text(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)


def embed_provenance(data: bytes, fmt: str, record: Mapping[str, Any]) -> bytes:
    """``data`` (a pdf, svg or png file) with ``record`` (JSON-able) stored in its metadata."""
    fmt = _check_format(fmt)
    text = provenance_text(record)
    if fmt == "svg":
        return _svg_embed(data, text, record)
    if fmt == "png":
        return _png_embed(data, text)
    return _pdf_embed(data, text, record)


def _title(record: Mapping[str, Any]) -> str:
    model = (record.get("model") or {}).get("name", "")
    attacks = ", ".join(str(a.get("attack", "")) for a in record.get("attacks", []) or [])
    return " · ".join(p for p in (f"neuronviz figure: {model}" if model else "neuronviz figure", attacks) if p)


def _svg_embed(data: bytes, text: str, record: Mapping[str, Any]) -> bytes:
    svg = data.decode("utf-8")
    match = re.search(r"<svg\b[^>]*>", svg)
    if match is None:
        raise InputError("not an SVG document: no <svg> element")
    body = text.replace("]]>", "]]]]><![CDATA[>")
    block = (
        f"<title>{escape(_title(record))}</title>"
        f'<metadata><neuronviz:provenance xmlns:neuronviz="https://github.com/neuronviz/workflows/provenance">'
        f"<![CDATA[{body}]]></neuronviz:provenance></metadata>"
    )
    return (svg[: match.end()] + block + svg[match.end():]).encode("utf-8")


def _png_embed(data: bytes, text: str) -> bytes:
    from PIL import Image, PngImagePlugin

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        info = PngImagePlugin.PngInfo()
        for key, value in image.text.items() if hasattr(image, "text") else ():
            if key != PROVENANCE_KEY:
                info.add_text(key, value)
        info.add_itxt(PROVENANCE_KEY, text, zip=True)
        out = io.BytesIO()
        dpi = image.info.get("dpi")
        image.save(out, format="PNG", pnginfo=info, **({"dpi": tuple(round(d) for d in dpi)} if dpi else {}))
    return out.getvalue()


def _pdf_string(text: str) -> bytes:
    """A PDF text string: UTF-16BE with a byte-order mark, as a hex string (no escaping pitfalls)."""
    return b"<" + ("\ufeff" + text).encode("utf-16-be").hex().upper().encode("ascii") + b">"


def _pdf_embed(data: bytes, text: str, record: Mapping[str, Any]) -> bytes:
    """An incremental update (PDF 1.4, §7.5.6): a new Info dictionary, one xref entry and a trailer
    pointing back to the previous cross-reference table. The original bytes are kept as they are."""
    if not data.startswith(b"%PDF-"):
        raise InputError("not a PDF file: it does not start with %PDF-")
    startxref = re.findall(rb"startxref\s+(\d+)\s+%%EOF", data)
    trailer = data[data.rfind(b"trailer"):]
    size = re.search(rb"/Size\s+(\d+)", trailer)
    root = re.search(rb"/Root\s+(\d+\s+\d+\s+R)", trailer)
    if not startxref or size is None or root is None or b"trailer" not in data:
        raise InputError("this PDF has no classic cross-reference trailer; cannot add its metadata")
    number = int(size.group(1))
    created = time.strftime("D:%Y%m%d%H%M%S+00'00'", time.gmtime())
    info = (
        b"/Title " + _pdf_string(_title(record))
        + b" /Subject " + _pdf_string("Figure made with neuronviz; its provenance is in /" + _PDF_KEY)
        + b" /Keywords " + _pdf_string("neuronviz, adversarial attack, neuron influence")
        + b" /Creator " + _pdf_string("neuronviz")
        + b" /Producer " + _pdf_string("neuronviz export (kaleido, chromium Skia/PDF)")
        + b" /CreationDate (" + created.encode() + b")"
        + b" /" + _PDF_KEY.encode() + b" " + _pdf_string(text)
    )
    body = bytearray(data)
    if not body.endswith(b"\n"):
        body += b"\n"
    offset = len(body)
    body += f"{number} 0 obj\n<<".encode() + info + b">>\nendobj\n"
    xref = len(body)
    body += f"xref\n{number} 1\n{offset:010d} 00000 n \n".encode()
    body += (
        f"trailer\n<</Size {number + 1} /Root ".encode() + root.group(1)
        + f" /Info {number} 0 R /Prev {int(startxref[-1])}>>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(body)


def _pdf_decode(hex_text: bytes) -> str:
    raw = bytes.fromhex(re.sub(rb"\s", b"", hex_text).decode("ascii"))
    if raw.startswith(b"\xfe\xff"):
        return raw[2:].decode("utf-16-be")
    return raw.decode("latin-1")


def read_provenance(data: bytes, fmt: str) -> dict[str, Any] | None:
    """The provenance record embedded in a pdf, svg or png file, or None if it has none."""
    fmt = _check_format(fmt)
    if fmt == "pdf":
        found = re.findall(rb"/" + _PDF_KEY.encode() + rb"\s*<([0-9A-Fa-f\s]*)>", data)
        return json.loads(_pdf_decode(found[-1])) if found else None
    if fmt == "svg":
        match = re.search(r"<neuronviz:provenance[^>]*><!\[CDATA\[(.*?)\]\]></neuronviz:provenance>", data.decode("utf-8"), re.S)
        return json.loads(match.group(1).replace("]]]]><![CDATA[>", "]]>")) if match else None
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        text = getattr(image, "text", {}).get(PROVENANCE_KEY)
    return json.loads(text) if text else None


def write_figure(
    fig: go.Figure,
    path: str | Path,
    width_mm: float,
    height_mm: float,
    dpi: int = 300,
    provenance: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Export ``fig`` to ``path`` (format from its extension) and, with ``provenance``, write the
    record beside it as ``<name>.provenance.json``. Returns the paths written."""
    path = Path(path)
    data = export_figure(fig, format_of(path), width_mm, height_mm, dpi=dpi, provenance=provenance)
    path.write_bytes(data)
    written = [path]
    if provenance is not None:
        side = sidecar_path(path)
        side.write_text(json.dumps(provenance, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        written.append(side)
    return written


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".provenance.json")

