"""The Defences page's "Your evaluation images" panel (app/pssr_training.py): what PSSR and reactive
NIP use now, training a regenerator with progress, estimate and Cancel, and the profile source."""

from __future__ import annotations

import threading

import pytest
import torch
from apptest import errors, open_page
from torch import nn

from app import pssr_training
from neuronviz.core.models import wrap_model
from neuronviz.workflows.evaluate import Dataset

DEFENCES = "app_pages/defences.py"


@pytest.fixture
def pssr_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NEURONVIZ_PSSR_DIR", str(tmp_path / "pssr"))
    return tmp_path / "pssr"


def _tiny():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 10 * 10, 3))
    model = wrap_model(net.eval(), [0.5], [0.25], (10, 10), ("a", "b", "c"), name="tiny-app")
    g = torch.Generator().manual_seed(0)
    data = Dataset("test", torch.rand(12, 1, 10, 10, generator=g), torch.arange(12) % 3, tuple(map(str, range(12))), "12 images")
    return model, data


def test_status_words_follow_the_model(pssr_dir, digits_cnn):
    model, _ = _tiny()
    assert "inpainting fallback" in pssr_training.pssr_status(model)
    assert "unavailable" in pssr_training.nip_status(model)
    assert "uses regenerator" in pssr_training.pssr_status(digits_cnn)
    assert "digits training split" in pssr_training.nip_status(digits_cnn)


def test_a_job_trains_reports_progress_and_the_page_model_gets_it(pssr_dir):
    model, data = _tiny()
    job = pssr_training.start(model, data, estimate_s=1.0)
    assert job.thread is not None
    job.thread.join(120)
    assert job.error is None and job.card is not None and job.fraction == 1.0
    assert "uses regenerator" in pssr_training.pssr_status(model)
    rows = pssr_training.held_out_rows(job.card["held_out"])
    assert [r["images"] for r in rows] == ["clean", "FGSM ε 0.1", "PGD-20 ε 0.1"]
    assert rows[0]["DSR, regenerator"] == "not defined"  # no attack on clean images: no DSR
    assert "n = 2" in rows[0]["accuracy, PSSR (trained regenerator)"]


def test_cancel_stops_the_job_and_writes_nothing(pssr_dir, monkeypatch):
    model, data = _tiny()
    started = threading.Event()
    release = threading.Event()
    from neuronviz.training import pssr as training

    original = training._pool

    def slow_pool(*args, **kwargs):
        started.set()
        release.wait(30)
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "_pool", slow_pool)
    job = pssr_training.start(model, data, estimate_s=1.0)
    assert started.wait(30)
    with pytest.raises(Exception, match="already"):
        pssr_training.start(model, data, estimate_s=1.0)  # one training at a time
    job.cancel.set()
    release.set()
    assert job.thread is not None
    job.thread.join(60)
    assert job.card is None and job.error is not None and "cancelled" in job.error
    assert not list(pssr_dir.glob("*.safetensors")) if pssr_dir.exists() else True


@pytest.mark.slow
def test_defences_page_shows_the_panel_with_an_estimate(pssr_dir):
    """The whole Defences page runs every defence: about 40 s on the loaded 2-core machine."""
    at = open_page(DEFENCES)
    assert errors(at) == []
    text = "\n".join(m.value for m in at.main.markdown)
    assert "**PSSR** uses regenerator" in text and "digits training split" in text
    captions = "\n".join(c.value for c in at.caption)
    assert "training images" in captions and "held out" in captions and "estimated" in captions
    labels = [b.label for b in at.main.button]
    assert "Train a regenerator on the evaluation images" in labels
    assert "Use them for reactive NIP's class profiles" in labels


@pytest.mark.slow
def test_training_from_the_page_shows_progress_then_the_held_out_numbers(pssr_dir):
    """Train on 12 digits from the Defences page: the progress bar with the estimate while it runs,
    then the held-out table (about 60 s on the loaded 2-core machine)."""
    at = open_page(DEFENCES)
    at.number_input(key="defences.train.count").set_value(12).run()
    captions = "\n".join(c.value for c in at.caption)
    assert "10 training images (40 pairs with the attacked versions), 2 held out, 3 epochs" in captions
    at.button(key="defences.train.start").click().run()
    assert errors(at) == []
    jobs = [j for j in pssr_training._JOBS.values() if j.thread is not None]
    assert jobs, "the button started no training"
    job = jobs[-1]
    if job.running:  # the first rerun after the click draws the progress bar and Cancel
        assert any(b.label == "Cancel" for b in at.main.button)
    job.thread.join(300)
    assert job.error is None and job.card is not None
    at.run()
    assert errors(at) == []
    assert any(s.value.startswith(f"Regenerator `{job.card['weights_sha256'][:12]}` trained") for s in at.success)
    table = [d for d in at.dataframe if "accuracy, PSSR (inpainting fallback)" in d.value.columns][0].value
    assert table["images"].tolist() == ["clean", "FGSM ε 0.1", "PGD-20 ε 0.1"]
    assert list(pssr_dir.glob("*.safetensors"))
