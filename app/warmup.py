"""Import the dashboard's heavy modules in the background as soon as the server starts.

A fresh server spends most of its first page run importing (torch, the app's modules,
torchattacks and the part of scipy that torchattacks imports): seconds on a small machine,
while the browser is still loading Streamlit's own scripts and the server has nothing to do.
``python -m app.serve`` (``make run``) calls :func:`start` before the server starts, so those
imports run in that idle time; ``streamlit run app/main.py`` does not, and imports them in the
first page run as before.

:func:`wait` is called by ``app/main.py`` before its own heavy imports: the page run never
imports one of this project's modules while the warm-up thread is importing it (two threads
importing one package's circular imports can see a module half initialised). A module that fails to import
here is imported again by the page run, which then shows the error; the warm-up only logs it.
The third-party packages of :data:`LATER` go on importing after that, while the page run draws.

:func:`preload_chart_library` is the browser's side of the same idea: drawn with the loading note, an
empty chart makes the browser fetch and parse Streamlit's chart library (4.7 MB of JavaScript,
a second or more on a small machine) while the server imports torch, instead of after the first
real chart arrives.

This module imports only the standard library: ``app/main.py`` imports it before torch.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time

_LOG = logging.getLogger(__name__)

#: What the first run of the default page (Attack, on digits-cnn) imports, which :func:`wait`
#: waits for: the app's modules (which import torch), what the Attack page imports besides, the
#: Defences page (the session link reads its parameters), and what the model list and the model's
#: weights need. Not pandas: the first render builds no table (tests/test_startup_imports.py
#: checks both lists against what the first render imports).
MODULES: tuple[str, ...] = (
    "app.url_state",
    "neuronviz.workflows.sweep",  # the Attack page's ε sweep (the page itself is run as a script)
    "app.app_pages.defences",
    "huggingface_hub.file_download",  # the timm source's weight cache (the model list asks it; the package is lazy)
    "safetensors.torch",  # checkpoints (the default model's weights)
)
#: Imported after :data:`MODULES`, while the page run draws the sidebar and loads the model:
#: torchattacks (its package imports scipy.stats), which the first attack needs. Third-party
#: packages only, which import none of this project's modules: when the page run reaches one
#: while the warm-up is importing it, it waits on that module's import lock and nothing else.
LATER: tuple[str, ...] = ("torchattacks",)

_thread: threading.Thread | None = None
_ours = threading.Event()  # set when MODULES are imported (or failed)
#: {module: seconds} of the warm-up's imports, and the failures ({module: error text}).
imported: dict[str, float] = {}
failed: dict[str, str] = {}


def _server_up(timeout: float = 60.0) -> bool:
    """Wait until Streamlit's runtime has started (the server answers), at most ``timeout`` s:
    imports started earlier hold the interpreter while the server starts and delay it (measured:
    server up after 3.5 s instead of 1.5 s on a loaded 2-core machine)."""
    from streamlit.runtime import Runtime

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Runtime.exists() and Runtime.instance().state.name != "INITIAL":
            return True
        time.sleep(0.02)
    return False


def _import_all(modules: tuple[str, ...], later: tuple[str, ...] = (), after_server_up: bool = True) -> None:
    try:
        if after_server_up:
            _server_up()
        _import_each(modules)
    finally:
        _ours.set()
    _import_each(later)


def _import_each(modules: tuple[str, ...]) -> None:
    for name in modules:
        started = time.perf_counter()
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 - the page run imports it again and shows the error
            failed[name] = f"{type(error).__name__}: {error}"
            _LOG.warning("warm-up: importing %s failed (%s); the first page run will import it", name, failed[name])
        else:
            imported[name] = time.perf_counter() - started


def start(modules: tuple[str, ...] = MODULES, later: tuple[str, ...] = LATER, after_server_up: bool = True) -> threading.Thread:
    """Start importing ``modules`` and then ``later`` in a daemon thread (once per process), once
    Streamlit's server is up (``after_server_up``); returns the thread."""
    global _thread
    if _thread is None:
        _ours.clear()
        _thread = threading.Thread(target=_import_all, args=(modules, later, after_server_up), name="neuronviz-warmup", daemon=True)
        _thread.start()
    return _thread


def running() -> bool:
    """Whether a warm-up was started and has not yet imported :data:`MODULES`."""
    return _thread is not None and not _ours.is_set()


#: What :func:`preload_chart_library` draws: a chart with no points, no axes, no toolbar and no hover,
#: 10 px high (plotly's least): blank space under the loading note, which the page removes with it.
PRELOAD_FIGURE = {
    "data": [{"type": "scatter", "x": [], "y": [], "hoverinfo": "skip"}],
    "layout": {"height": 10, "margin": {"l": 0, "r": 0, "t": 0, "b": 0}, "xaxis": {"visible": False},
               "yaxis": {"visible": False}, "showlegend": False},
}


def preload_chart_library() -> None:
    """Draw an empty chart (:data:`PRELOAD_FIGURE`) in the current container: Streamlit's frontend
    loads its plotly library when the first chart arrives, so this starts loading it before the
    server has anything to chart. ``app/main.py`` draws it in the loading note's placeholder, so it
    goes when the note goes, before the page draws anything. Streamlit only: no torch."""
    import streamlit as st

    st.plotly_chart(PRELOAD_FIGURE, config={"staticPlot": True, "displayModeBar": False}, theme=None, key="warmup.preload")


def wait() -> None:
    """Block until the warm-up has imported :data:`MODULES` (at once when none was started); the
    :data:`LATER` packages may still be importing."""
    if _thread is not None:
        _ours.wait()
