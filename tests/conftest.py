"""Shared fixtures. Everything runs offline on a CPU: no weights or data are downloaded."""

from __future__ import annotations

import os
import tempfile

# Before torch is imported (see app/main.py): no OpenMP spin-waiting on a shared small machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

# Tests are hermetic: the torch hub cache is an empty temporary folder for the whole session, so
# a developer's cached weights change nothing and nothing is ever downloaded (tests that need a
# cached file write one into their own TORCH_HOME with monkeypatch).
os.environ["TORCH_HOME"] = tempfile.mkdtemp(prefix="neuronviz-test-torch-home-")
# ... and so is PSSR's folder of regenerators trained by `neuronviz train pssr` (a test that trains
# one points NEURONVIZ_PSSR_DIR at its own tmp_path).
os.environ["NEURONVIZ_PSSR_DIR"] = tempfile.mkdtemp(prefix="neuronviz-test-pssr-")


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _fresh_app_caches(request):
    """Dashboard tests (tests/test_app*.py) start and end with no cached model, result or figure:
    Streamlit's caches live in the process, shared by every AppTest."""
    if not request.module.__name__.rsplit(".", 1)[-1].startswith("test_app"):
        yield
        return
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture(scope="session")
def digits_cnn():
    from neuronviz.core.models import load_model

    return load_model("digits-cnn", device="cpu")


@pytest.fixture(scope="session")
def digits_test():
    from neuronviz.data.datasets import digits

    return digits("test")


def _run_in_threads(work, count: int) -> list:
    """Call ``work()`` in ``count`` threads at once; return the results, re-raise the first error."""
    import threading

    results: list = [None] * count
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(index: int) -> None:
        try:
            start.wait()  # all threads enter the library together
            results[index] = work()
        except BaseException as error:  # noqa: BLE001 - handed to the test below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


@pytest.fixture
def run_in_threads():
    """``run_in_threads(work, count)``: concurrent calls on one shared object (Streamlit's sessions)."""
    return _run_in_threads


# The fast tier (`make test-fast`, issue 25.3): the edit–test loop's few minutes. A test is in it
# when its module is listed here (unit tests that take well under a second each) or when it is
# marked `@pytest.mark.fast` itself (tests/test_app_smoke.py: every page once on the default
# model); never when it is marked `slow` or `e2e`. A new module is NOT in the tier until it is
# listed, so a slow test added elsewhere cannot slow the loop; `make test` runs everything.
FAST_MODULES = frozenset(
    {
        "test_analysis",
        "test_cache",
        "test_captions",
        "test_datasets",
        "test_figures",
        "test_figures_attack",
        "test_figures_neurons",
        "test_images",
        "test_influence",
        "test_layout_aliases",
        "test_pixel_model",
        "test_plugins",
        "test_probe_backward",
        "test_probe_hooks",
        "test_session",
        "test_settings",
        "test_startup",
        "test_stats_controls",
        "test_sweep",
    }
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module is not None else ""
        if item.get_closest_marker("slow") or item.get_closest_marker("e2e"):
            continue
        if module in FAST_MODULES and not item.get_closest_marker("fast"):
            item.add_marker(pytest.mark.fast)
