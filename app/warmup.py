"""Import the dashboard's heavy modules in the background as soon as the server starts.

A fresh server spends most of its first page run importing (torch, the app's modules,
torchattacks and the part of scipy that torchattacks imports): seconds on a small machine,
while the browser is still loading Streamlit's own scripts and the server has nothing to do.
``python -m app.serve`` (``make run``) calls :func:`start` before the server starts, so those
imports run in that idle time; ``streamlit run app/main.py`` does not, and imports them in the
first page run as before. Before the imports, once the server is up, it loads torch's shared
libraries with the interpreter lock released (:func:`preload_torch_libraries`): ``import torch``
would load them holding the lock for a quarter of a second and more at a stretch, in which the
web server and the first page run (the page's title) cannot run.

:func:`wait` is called by ``app/main.py`` before its own heavy imports: the page run never
imports one of this project's modules while the warm-up thread is importing it (two threads
importing one package's circular imports can see a module half initialised). A module that fails to import
here is imported again by the page run, which then shows the error; the warm-up only logs it.

Then it computes the start-up analysis (:func:`start_up_analysis`: what the first run of the default
page asks for, the default model, image, attack and methods, and its ε sweep) into the dashboard's
result cache, claimed before :func:`wait` returns (:func:`app.result_cache.reserve`): the page run
that asks for the same result waits for it and reads it instead of computing it again; when the
warm-up's computation fails, the page computes it itself and shows its own error. A page that asks
for anything else (another model, image, attack, a link's settings) computes as before. The
third-party packages of :data:`LATER` are imported after that (already, by the analysis).

:func:`preload_chart_library` is the browser's side of the same idea: drawn with the loading note, an
empty chart makes the browser fetch and parse Streamlit's chart library (4.7 MB of JavaScript,
a second or more on a small machine) while the server imports torch, instead of after the first
real chart arrives.

This module imports only the standard library: ``app/main.py`` imports it before torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

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

#: What :data:`imported` and :data:`failed` call :func:`preload_torch_libraries`.
PRELOAD = "torch's shared libraries, loaded with the interpreter lock released"

_thread: threading.Thread | None = None
_THREAD_NAME = "neuronviz-warmup"
_ours = threading.Event()  # set when MODULES are imported (or failed)
#: {module: seconds} of the warm-up's imports (and of its start-up analysis, by what it did), and the
#: failures ({module or what: error text}).
imported: dict[str, float] = {}
failed: dict[str, str] = {}


def _server_up(timeout: float = 60.0) -> bool:
    """Wait until Streamlit's runtime has started (the server answers), at most ``timeout`` s:
    imports started earlier hold the interpreter while the server starts and delay it (measured:
    server up after 3.5 s instead of 1.5 s on a loaded 2-core machine). It imports nothing: the
    server's thread is importing Streamlit meanwhile, and a second thread importing the same
    package can hand it a module half initialised (seen: an ImportError of ``Runtime`` when this
    thread imported ``streamlit.runtime`` 0.3 s after the start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runtime = getattr(sys.modules.get("streamlit.runtime"), "Runtime", None)
        if runtime is not None and runtime.exists() and runtime.instance().state.name != "INITIAL":
            return True
        time.sleep(0.02)
    return False


def _import_all(modules: tuple[str, ...], later: tuple[str, ...] = (), after_server_up: bool = True,
                precompute: bool = False) -> None:
    analysis = None
    try:
        if after_server_up:
            _server_up()
        _preload()
        _import_each(modules)
        if precompute and not any(name in failed for name in modules):
            analysis = _guarded("claiming the start-up analysis", start_up_analysis)
    finally:
        _ours.set()
    sweep = None if analysis is None else _guarded("computing the start-up analysis", analysis)
    if sweep is not None:
        _guarded("computing the start-up ε sweep", sweep)
    _import_each(later)


def _preload() -> None:
    """:func:`preload_torch_libraries`, timed into :data:`imported` when it loaded them; a failure is
    logged and recorded in :data:`failed` (``import torch`` then loads them itself, as without it)."""
    started = time.perf_counter()
    try:
        loaded = preload_torch_libraries()
    except OSError as error:
        failed[PRELOAD] = f"{type(error).__name__}: {error}"
        _LOG.warning("warm-up: %s failed (%s); import torch loads them itself", PRELOAD, failed[PRELOAD])
        return
    if loaded:
        imported[PRELOAD] = time.perf_counter() - started


def _guarded(what: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, timed into :data:`imported` under ``what``; an error is logged and recorded in
    :data:`failed` (the page run computes the same itself and shows its own message)."""
    started = time.perf_counter()
    try:
        value = fn()
    except Exception as error:  # noqa: BLE001 - the page run computes it again and shows the error
        failed[what] = f"{type(error).__name__}: {error}"
        _LOG.warning("warm-up: %s failed (%s); the first page run computes it", what, failed[what])
        return None
    imported[what] = time.perf_counter() - started
    return value


class _NoContextWarning(logging.Filter):
    """Drops Streamlit's "missing ScriptRunContext" warning of this thread: the warm-up calls the
    sidebar's cached loaders outside any page run on purpose (their results are shared)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.threadName == _THREAD_NAME and "missing ScriptRunContext" in record.getMessage())


_NO_CONTEXT_WARNING = _NoContextWarning()


def start_up_analysis() -> Callable[[], Callable[[], Any] | None] | None:
    """Claim the analysis the first run of the default page asks for (the default model on the
    default device, the start-up image, the default attack, the default restorations and influence
    method: :func:`app.runs.full_analysis` with a session that has chosen nothing), loading the model
    and the image as the sidebar does; returns the function that computes it into the result cache
    and returns the computation of its ε sweep (claimed before the analysis is released). None when
    it is cached or claimed already, or when plugins are configured (they may change the defaults:
    the page computes then). Imports what the sweep needs too: before :func:`wait` returns."""
    from app import result_cache, runs, state
    from app.app_pages import attack  # noqa: F401 - for start_up_sweep, imported before the page run's imports
    from neuronviz.infra import plugins

    if plugins.plugin_modules():
        return None
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").addFilter(_NO_CONTEXT_WARNING)  # once
    model = state.load_checked_model(state.ModelRequest(device=state.default_device()))
    image, _ = state.load_requested_image(state.ImageRequest(sample_id=runs.DEFAULT_SAMPLE_ID), model)
    run = result_cache.reserve(runs.compute_analysis, model, image, runs.default_choice(),
                               defences=(*runs.RESTORATIONS, *runs.default_extras()),
                               influence_method=runs.DEFAULT_INFLUENCE_METHOD)
    if run is None:
        return None

    def compute() -> Callable[[], Any] | None:  # the analysis; returns the computation of its ε sweep
        claimed: list[Callable[[], Any] | None] = []
        run(then=lambda result: claimed.append(_guarded("claiming the start-up ε sweep", lambda: start_up_sweep(model, image, result))))
        return claimed[0] if claimed else None

    return compute


def start_up_sweep(model: Any, image: Any, result: Any) -> Callable[[], Any] | None:
    """Claim the Attack page's ε sweep of the start-up analysis ``result`` (its budgets, layer and
    front/tail size as the page asks for them with nothing changed); returns its computation."""
    from app import components, result_cache
    from app.app_pages import attack
    from neuronviz.methods.attacks import get_attack
    from neuronviz.workflows.sweep import eps_sweep

    info = get_attack(result.choice.attack)
    if info.budget_param is None:
        return None
    fraction = components.DEFAULT_GROUP_FRACTION
    return result_cache.reserve(eps_sweep, model, image, info.name, result.params, attack.sweep_budgets(info, result, model),
                                target=result.choice.target, seed=result.choice.seed, layer=result.default_layer,
                                front=fraction, tail=fraction)


def torch_library() -> str | None:
    """The path of the ``libtorch.so`` that ``import torch`` would load (found without importing
    torch), or None (not Linux, no such file, or torch already imported)."""
    if not sys.platform.startswith("linux") or "torch" in sys.modules:
        return None
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(next(iter(spec.submodule_search_locations)), "lib", "libtorch.so")
    return path if os.path.isfile(path) else None


def preload_torch_libraries() -> bool:
    """Load torch's shared libraries (``libtorch.so`` and what it links: the CPU and CUDA kernels,
    their static operator registrations) with the interpreter lock released.

    ``import torch`` loads them inside its extension module's import, holding the lock for a
    quarter of a second and more in one stretch: the web server and a page run cannot run
    meanwhile (measured on the 2-core machine: the longest stall of another thread during ``import
    torch``, 207–300 ms; after this preload 56–69 ms, and the import itself 0.2–0.4 s shorter).
    ``dlopen`` called through ctypes releases the lock (a foreign call), with the flags the
    interpreter uses for extension modules; the import then finds the libraries loaded. Returns
    whether it loaded them; raises OSError with the loader's message when ``dlopen`` fails."""
    path = torch_library()
    if path is None:
        return False
    import ctypes

    loader = ctypes.CDLL(None)
    try:
        dlopen, dlerror = loader.dlopen, loader.dlerror
    except AttributeError:  # a C library without them among the process's symbols
        raise OSError(f"dlopen({path}): no dlopen among this process's symbols") from None
    dlopen.restype, dlopen.argtypes, dlerror.restype = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_int], ctypes.c_char_p
    if not dlopen(os.fsencode(path), sys.getdlopenflags()):
        raise OSError(f"dlopen({path}) failed: {(dlerror() or b'').decode(errors='replace')}")
    return True


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


def start(modules: tuple[str, ...] = MODULES, later: tuple[str, ...] = LATER, after_server_up: bool = True,
          precompute: bool = True) -> threading.Thread:
    """Start importing ``modules`` in a daemon thread (once per process), once Streamlit's server is
    up (``after_server_up``) and torch's libraries are loaded (:func:`preload_torch_libraries`),
    then (``precompute``, and only when every module imported) computing the start-up analysis and
    its ε sweep, then importing ``later``; returns the thread."""
    global _thread
    if _thread is None:
        _ours.clear()
        _thread = threading.Thread(target=_import_all, args=(modules, later, after_server_up, precompute),
                                   name=_THREAD_NAME, daemon=True)
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
