"""The first screen's import discipline (issue 25.4): the page title is drawn before anything heavy is
imported, the first render imports none of the libraries it does not use, and the launcher's
warm-up (app/warmup.py, ``python -m app.serve``) imports exactly what the first render needs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from app import serve, warmup

ROOT = Path(__file__).resolve().parents[1]

#: Imported by the first render, together seconds on a small machine: none may be imported before the
#: title. (Streamlit itself imports plotly.graph_objects before the server is up, and numpy for the
#: favicon in st.set_page_config: neither is ours to defer.)
HEAVY = ("torch", "scipy", "torchattacks")
#: Not needed by the first render of the default page at all (the zoo list, the digits split, the
#: influence methods, figure export, other model sources, the export tables are lazy): none may be
#: imported by it.
UNUSED = ("torchvision", "sklearn", "captum", "matplotlib", "timm", "torch._dynamo", "kaleido", "onnxruntime", "skimage",
          "pandas", "pyarrow")

_FIRST_RUN = """
import json, sys
import streamlit
from streamlit.testing.v1 import AppTest

heavy, unused, modules = {heavy!r}, {unused!r}, {modules!r}
at_title = {{}}
original = streamlit.title

def title(body, *args, **kwargs):
    at_title.setdefault(body, sorted(m for m in heavy if m in sys.modules))
    return original(body, *args, **kwargs)

streamlit.title = title  # app/main.py calls st.title
charts_drawn = []
original_chart = streamlit.plotly_chart

def plotly_chart(figure, *args, **kwargs):
    charts_drawn.append((kwargs.get("key"), sorted(m for m in heavy if m in sys.modules)))
    return original_chart(figure, *args, **kwargs)

streamlit.plotly_chart = plotly_chart
at = AppTest.from_file({main!r}, default_timeout=300)
at.run()
print(json.dumps({{
    "first_charts": charts_drawn[:2],
    "empty_charts_at_end": sum(not any(len(trace.get("x", [1])) for trace in json.loads(c.proto.spec)["data"])
                               for c in at.get("plotly_chart")),
    "exceptions": [e.value for e in at.exception],
    "titles": [t.value for t in at.title],
    "charts": len(at.get("plotly_chart")),
    "heavy_at_title": at_title,
    "heavy_at_end": sorted(m for m in heavy if m in sys.modules),
    "unused_at_end": sorted(m for m in unused if m in sys.modules),
    "warmup_not_imported": [m for m in modules if m not in sys.modules],
}}))
"""


@pytest.fixture(scope="module")
def first_run() -> dict:
    """The default page's first run in a fresh process (AppTest of app/main.py), as observed there."""
    code = _FIRST_RUN.format(heavy=HEAVY, unused=UNUSED, modules=(*warmup.MODULES, *warmup.LATER), main=str(ROOT / "app" / "main.py"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_title_is_drawn_before_any_heavy_import(first_run):
    assert first_run["exceptions"] == []
    assert first_run["titles"] == ["Attack"] and first_run["charts"] >= 10  # the whole start-up analysis drew
    assert first_run["heavy_at_title"] == {"Attack": []}
    assert first_run["heavy_at_end"] == sorted(HEAVY)  # the check above is live: they are imported, later


def test_the_chart_library_is_preloaded_before_torch_and_gone_from_the_page(first_run):
    """The first run draws warmup's empty chart with the loading note, before torch is imported (the
    browser loads its chart library meanwhile); the page's own first chart is the clean image; the
    finished page holds no empty chart (the placeholder went with the note)."""
    preload, clean = first_run["first_charts"]
    assert preload == ["warmup.preload", []]  # [key, heavy modules imported when it was drawn]
    assert clean[0] == "attack.image.clean" and "torch" in clean[1]
    assert first_run["empty_charts_at_end"] == 0 and first_run["charts"] >= 10


def test_the_first_render_imports_nothing_it_does_not_use(first_run):
    assert first_run["unused_at_end"] == []


def test_the_warm_up_imports_only_what_the_first_render_imports(first_run):
    """Each module of warmup.MODULES and warmup.LATER is imported by the first render (a stale entry
    would make a fresh server import something nobody needs)."""
    assert first_run["warmup_not_imported"] == []


def test_the_warm_up_and_the_launcher_import_only_the_standard_library():
    code = (
        "import sys\n"
        "import app.warmup, app.serve\n"
        "print(sorted(m for m in ('streamlit', 'torch', 'numpy', 'neuronviz', 'plotly') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_warm_up_imports_in_the_background_and_records_failures(monkeypatch):
    monkeypatch.setattr(warmup, "_thread", None)
    monkeypatch.setattr(warmup, "imported", {})
    monkeypatch.setattr(warmup, "failed", {})
    assert not warmup.running()
    thread = warmup.start(("json", "neuronviz_no_such_module"), later=("email.parser",), after_server_up=False)
    assert warmup.start(("csv",), after_server_up=False) is thread  # once per process
    warmup.wait()  # the project's modules (the first tuple) are done ...
    assert not warmup.running()
    assert list(warmup.imported)[:1] == ["json"] and warmup.imported["json"] >= 0
    assert list(warmup.failed) == ["neuronviz_no_such_module"]
    assert warmup.failed["neuronviz_no_such_module"].startswith("ModuleNotFoundError")
    thread.join(timeout=60)  # ... and the later ones follow
    assert list(warmup.imported) == ["json", "email.parser"] and "csv" not in warmup.imported


def test_the_later_warm_up_packages_import_none_of_the_projects_modules():
    """wait() does not wait for warmup.LATER: safe only if they import nothing of app/ or neuronviz/."""
    code = (
        "import sys, importlib\n"
        "from app import warmup\n"
        "for name in warmup.LATER:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('app', 'neuronviz') and m != 'app.warmup' and m != 'app'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_wait_returns_at_once_without_a_warm_up(monkeypatch):
    monkeypatch.setattr(warmup, "_thread", None)
    warmup.wait()  # nothing started (streamlit run app/main.py): nothing to wait for
    assert not warmup.running()


def test_running_until_the_projects_modules_are_imported(monkeypatch):
    """While the warm-up imports the project's modules, running() says so (app/main.py shows its
    loading note then) and wait() blocks; the server-up wait is what holds it here."""
    import threading

    gate = threading.Event()
    monkeypatch.setattr(warmup, "_thread", None)
    monkeypatch.setattr(warmup, "_server_up", gate.wait)
    thread = warmup.start(("json",), later=(), after_server_up=True, precompute=False)
    assert warmup.running() and thread.is_alive()
    gate.set()
    warmup.wait()
    assert not warmup.running()
    thread.join(timeout=60)


def test_serve_is_streamlit_run_of_app_main_with_the_same_options(monkeypatch):
    from streamlit.web import cli

    started, called = [], []
    monkeypatch.setattr(warmup, "start", lambda: started.append(True))
    monkeypatch.setattr(cli, "main", lambda prog_name: called.append((prog_name, list(sys.argv))))
    monkeypatch.setattr(sys, "argv", ["serve"])
    serve.main(["--server.port", "9", "--", "--model", "net.pt2"])
    assert started == [True]
    assert called == [("streamlit", ["streamlit", "run", str(ROOT / "app" / "main.py"), "--server.port", "9", "--", "--model", "net.pt2"])]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_python_m_app_serve_serves_the_dashboard(tmp_path):
    """The launcher make run uses starts a server that answers (its warm-up runs after that)."""
    port = _free_port()
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "app.serve", "--server.headless", "true", "--server.address", "127.0.0.1",
               "--server.port", str(port), "--browser.gatherUsageStats", "false"]  # fmt: skip
    with log.open("w") as output:
        server = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        status = None
        while status != 200 and time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                    status = response.status
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        assert status == 200, log.read_text()[-3000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.status == 200 and b"<html" in response.read().lower()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_clean_image_is_drawn_before_the_analysis(monkeypatch):
    """The Attack page draws the clean image first, before the analysis: when the analysis fails,
    the clean image is on the page all the same (beside the error), and it is the first chart."""
    from apptest import clear_caches, errors, open_page, plotly_titles

    from app import runs
    from neuronviz.infra.errors import InputError

    clear_caches()
    at = open_page()
    titles = plotly_titles(at)
    assert titles[0] == "Clean" and len(titles) >= 10  # the whole page, the clean image first

    def failing(*args, **kwargs):
        raise InputError("the analysis failed on purpose")

    monkeypatch.setattr(runs, "full_analysis", failing)
    clear_caches()
    at = open_page()
    assert plotly_titles(at) == ["Clean"]
    assert errors(at) == ["The analysis failed on purpose"]  # app.messages capitalises the error


_PRELOAD = r"""
import json, sys, threading, time
from app import warmup

path = warmup.torch_library()
stalls, stop = [0.0], threading.Event()

def tick():  # how long this thread waits, at most, for the interpreter lock while the libraries load
    last = time.perf_counter()
    while not stop.is_set():
        now = time.perf_counter()
        stalls[0] = max(stalls[0], now - last)
        last = now
        time.sleep(0.001)

ticker = threading.Thread(target=tick)
ticker.start()
started = time.perf_counter()
loaded = warmup.preload_torch_libraries()
took = time.perf_counter() - started
stop.set()
ticker.join()
maps = open("/proc/self/maps").read()
before_import = "torch" in sys.modules
import torch

x = torch.arange(6.0, requires_grad=True)
(x * x).sum().backward()
mapped = sorted({line.split()[-1] for line in open("/proc/self/maps") if line.rstrip().endswith("/libtorch.so")})
print(json.dumps({"path": path, "loaded": loaded, "took": took, "stall": stalls[0], "mapped_before": path in maps,
                  "torch_before": before_import, "mapped_after": mapped, "grad": x.grad.tolist(),
                  "again": warmup.preload_torch_libraries()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the preload is for Linux (libtorch.so)")
def test_torchs_libraries_load_with_the_interpreter_lock_released_and_torch_uses_them():
    """In a fresh interpreter: the preload finds the libtorch.so that ``import torch`` maps (without
    importing torch), loads it while another thread keeps running (its longest wait for the lock is a
    small part of the load's time: with the lock held it would be all of it), and torch imports and
    differentiates afterwards; a second call (torch imported) does nothing."""
    out = subprocess.run([sys.executable, "-c", _PRELOAD], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["loaded"] is True and got["mapped_before"] and not got["torch_before"]
    assert got["mapped_after"] == [got["path"]]  # torch uses the library loaded, no second copy
    assert got["grad"] == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert got["stall"] < 0.5 * got["took"], got
    assert got["again"] is False


def test_a_preload_that_fails_names_the_loaders_error_and_the_warm_up_goes_on(monkeypatch, tmp_path):
    not_a_library = tmp_path / "libtorch.so"
    not_a_library.write_bytes(b"not an ELF file")
    monkeypatch.setattr(warmup, "torch_library", lambda: str(not_a_library))
    with pytest.raises(OSError, match="dlopen.*libtorch.so"):
        warmup.preload_torch_libraries()
    monkeypatch.setattr(warmup, "_thread", None)
    monkeypatch.setattr(warmup, "imported", {})
    monkeypatch.setattr(warmup, "failed", {})
    thread = warmup.start(("json",), later=(), after_server_up=False, precompute=False)
    thread.join(timeout=60)
    assert list(warmup.failed) == [warmup.PRELOAD] and "dlopen" in warmup.failed[warmup.PRELOAD]
    assert list(warmup.imported) == ["json"]  # the imports went on


def test_waiting_for_the_server_imports_nothing(monkeypatch):
    """The warm-up thread starts while the server's thread imports Streamlit: importing
    streamlit.runtime from it could hand the server a module half initialised."""
    monkeypatch.delitem(sys.modules, "streamlit.runtime", raising=False)
    assert warmup._server_up(timeout=0.05) is False
    assert "streamlit.runtime" not in sys.modules
