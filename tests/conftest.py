"""Shared fixtures. Everything runs offline on a CPU: no weights or data are downloaded."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

# Tests are hermetic: the torch hub cache is an empty temporary folder for the whole session, so
# a developer's cached weights change nothing and nothing is ever downloaded (tests that need a
# cached file write one into their own TORCH_HOME with monkeypatch).
os.environ["TORCH_HOME"] = tempfile.mkdtemp(prefix="neuronviz-test-torch-home-")


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def digits_cnn():
    from neuronviz.models import load_model

    return load_model("digits-cnn", device="cpu")


@pytest.fixture(scope="session")
def digits_test():
    from neuronviz.datasets import digits

    return digits("test")
