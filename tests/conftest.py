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
