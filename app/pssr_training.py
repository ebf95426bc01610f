"""The Defences page's "Your evaluation images" panel: train PSSR's regenerator on them, and use
them as reactive NIP's class profiles.

:func:`render` (one call from ``app/app_pages/defences.py``) draws the evaluation-images choice
shared with the Batch, Filters and Sensitivity pages (:func:`app.evaluation_set.evaluation_images`),
says which PSSR and reactive NIP this model gets now (a trained regenerator or the inpainting
fallback; profiles from your data, the digits training split, or none), and offers:

- **Train a regenerator on the evaluation images**: :func:`neuronviz.training.pssr.train_for_data`
  in a worker thread (80% trained on, 20% held out), with a progress bar, the estimate made before
  it starts (:func:`neuronviz.training.pssr.plan`, refused when it is over
  :func:`training_budget_s`), and a Cancel button that sets the run's :mod:`neuronviz.infra.budget` cancel
  flag. The result is written to the user cache folder keyed by the model's and the data's content
  hashes, where PSSR finds it for this model; the held-out restored accuracy is shown.
- **Use them for reactive NIP's class profiles** (:func:`neuronviz.methods.defences.nip.use_profile_data`).

One training runs at a time in the server process (:data:`_JOBS`); a second waits for it to end.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from neuronviz.core.models import PixelModel
from neuronviz.infra import budget
from neuronviz.infra.errors import InputError, NeuronvizError
from neuronviz.methods.defences import nip
from neuronviz.methods.defences.pssr import find_regenerator
from neuronviz.workflows.evaluate import Dataset

#: Longest training the page starts (seconds; env ``NEURONVIZ_PSSR_TRAIN_BUDGET_S``), checked against
#: the estimate before it starts and enforced by the run's budget.
DEFAULT_TRAIN_BUDGET_S = 1800.0


def training_budget_s() -> float:
    text = os.environ.get("NEURONVIZ_PSSR_TRAIN_BUDGET_S", "").strip()
    if not text:
        return DEFAULT_TRAIN_BUDGET_S
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"NEURONVIZ_PSSR_TRAIN_BUDGET_S must be a number of seconds, got {text!r}") from None
    if not value > 0:
        raise InputError(f"NEURONVIZ_PSSR_TRAIN_BUDGET_S must be positive, got {text!r}")
    return value


@dataclass
class Job:
    """One training run in a worker thread: its progress, and how it ended."""

    key: tuple[str, str]
    estimate_s: float
    cancel: threading.Event = field(default_factory=threading.Event)
    fraction: float = 0.0
    message: str = "starting"
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    card: dict | None = None
    error: str | None = None
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.ended is None

    def progress(self, fraction: float, message: str) -> None:
        self.fraction, self.message = float(fraction), message


#: Training runs by (model content hash, data digest); the last one of each is kept for its result.
_JOBS: dict[tuple[str, str], Job] = {}
_LOCK = threading.Lock()


def start(model: PixelModel, data: Dataset, estimate_s: float, seconds: float | None = None) -> Job:
    """Start training in a worker thread (raises InputError while another training runs)."""
    key = (model.content_hash, data.digest)
    with _LOCK:
        running = [j for j in _JOBS.values() if j.running]
        if running:
            raise InputError("a regenerator is being trained already on this server; wait for it to end or cancel it")
        job = _JOBS[key] = Job(key, estimate_s)

    def work() -> None:
        from neuronviz.training.pssr import train_for_data

        try:
            with budget.limit(seconds or training_budget_s(), cancel=job.cancel, what="training the regenerator"):
                job.card = train_for_data(model, data, progress=job.progress,
                                          command=f"dashboard, Defences page: {data.description}")
        except NeuronvizError as error:
            job.error = str(error)
        except Exception as error:  # noqa: BLE001 - shown on the page, not lost in a thread
            job.error = f"{type(error).__name__}: {error}"
        finally:
            job.ended = time.monotonic()

    job.thread = threading.Thread(target=work, name="neuronviz-train-pssr", daemon=True)
    job.thread.start()
    return job


def job_for(model: PixelModel, data: Dataset) -> Job | None:
    return _JOBS.get((model.content_hash, data.digest))


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


def pssr_status(model: PixelModel) -> str:
    """Which PSSR this model gets now, in words."""
    located = find_regenerator(model)
    if located is None:
        return ("**PSSR** runs as the **inpainting fallback** for this model: no regenerator has been trained for "
                "these weights. Its numbers are labelled *PSSR (inpainting fallback)* everywhere.")
    card = located[1]
    data = card.get("data", {})
    trained_on = data.get("description") or data.get("images") or "the digits training split"
    return (f"**PSSR** uses regenerator `{str(card.get('weights_sha256', ''))[:12]}`, trained for these weights on "
            f"{trained_on}.")


def nip_status(model: PixelModel) -> str:
    """Where reactive NIP's class profiles come from for this model, in words."""
    found = nip.profile_source(model)
    if found is None:
        return "**Reactive NIP** is unavailable for this model: it has no class profiles yet."
    return f"**Reactive NIP** builds its class profiles from {found[1]['source']}."


def held_out_rows(held: dict) -> list[dict[str, Any]]:
    """The held-out numbers as table rows: accuracy (and DSR) after the regenerator and the fallback."""
    def pct(entry: dict | None) -> str:
        if not entry or entry.get("share") is None:
            return "not defined"
        return f"{100 * entry['share']:.1f}% ({100 * entry['low']:.1f}–{100 * entry['high']:.1f}, n = {entry['n']})"

    rows = []
    for key, title in (("clean", "clean"), ("fgsm", f"FGSM ε {held['eps']:g}"), ("pgd20", f"PGD-20 ε {held['eps']:g}")):
        row = held[key]
        rows.append({
            "images": title,
            "accuracy, no defence": pct(row["accuracy_undefended"]),
            "accuracy, PSSR (trained regenerator)": pct(row["accuracy_regenerator"]),
            "accuracy, PSSR (inpainting fallback)": pct(row["accuracy_fallback"]),
            "DSR, regenerator": pct(row.get("dsr_regenerator")),
            "DSR, fallback": pct(row.get("dsr_fallback")),
        })
    return rows


def render(model: PixelModel) -> None:
    """The panel (see the module docstring)."""
    from app import evaluation_set

    with st.expander("Your evaluation images: train PSSR's regenerator, build reactive NIP's profiles",
                     icon=":material/model_training:"):
        st.markdown(pssr_status(model) + "  \n" + nip_status(model))
        choice = evaluation_set.evaluation_images(
            model, count_key="defences.train.count", purpose="PSSR's regenerator is trained on (80%) and measured on (20%)",
            label="Evaluation images",
        )
        if choice.images is None or choice.images.size == 0:
            st.info("No labelled images for this model from this source.", icon=":material/info:")
            return
        images = choice.images
        data = Dataset(spec=f"dashboard:{choice.source}", images=images.images, labels=images.labels,
                       ids=tuple(images.ids) or tuple(str(i) for i in range(images.size)), description=images.description)
        left, right = st.columns(2, gap="medium")
        with left:
            _training(model, data)
        with right:
            if st.button("Use them for reactive NIP's class profiles", icon=":material/group_work:",
                         key="defences.train.profiles", width="stretch"):
                try:
                    nip.use_profile_data(model, data.images, data.labels, images.description)
                except NeuronvizError as error:
                    st.error(str(error), icon=":material/error:")
                else:
                    st.rerun()
            st.caption("Reactive NIP scores its candidate classes against each class's mean neuron-influence "
                       "profile on labelled benign images; these images become that source for this model.")


def _training(model: PixelModel, data: Dataset) -> None:
    from neuronviz.training import pssr as training

    try:
        plan = training.plan(model, data)
    except NeuronvizError as error:
        st.error(f"Cannot train on these images: {error}", icon=":material/error:")
        return
    limit = training_budget_s()
    st.caption(f"{plan.describe()}.")
    job = job_for(model, data)
    if job is not None and job.running:
        _progress(model, data)
        return
    too_long = plan.estimate_s > limit
    if st.button("Train a regenerator on the evaluation images", icon=":material/model_training:",
                 key="defences.train.start", disabled=too_long, width="stretch"):
        try:
            start(model, data, plan.estimate_s, limit)
        except NeuronvizError as error:
            st.error(str(error), icon=":material/error:")
        else:
            st.rerun()
    if too_long:
        st.warning(f"The estimate is over this server's training limit of {_seconds(limit)}: use fewer images.",
                   icon=":material/timer:")
    if job is not None:
        _outcome(job)


@st.fragment(run_every=1.0)
def _progress(model: PixelModel, data: Dataset) -> None:
    job = job_for(model, data)
    if job is None:
        return
    if not job.running:
        st.rerun()  # the whole page: PSSR now finds the new regenerator
    elapsed = time.monotonic() - job.started
    st.progress(min(max(job.fraction, 0.0), 1.0),
                text=f"Training: {job.message} · {_seconds(elapsed)} of about {_seconds(job.estimate_s)}")
    if st.button("Cancel", icon=":material/cancel:", key="defences.train.cancel",
                 help="Stop the training; nothing is written."):
        job.cancel.set()


def _outcome(job: Job) -> None:
    if job.error is not None:
        st.error(f"Training stopped: {job.error}", icon=":material/error:")
        return
    if job.card is None:
        return
    st.success(f"Regenerator `{job.card['weights_sha256'][:12]}` trained in {_seconds(job.card['train_seconds'])}; "
               "PSSR uses it for this model from now on.", icon=":material/check_circle:")
    st.dataframe(held_out_rows(job.card["held_out"]), hide_index=True, width="stretch", key="defences.train.held_out")
    st.caption(f"On the {job.card['held_out']['images']} held-out images (not trained on): accuracy with 95% Wilson "
               "intervals, and the DSR (among the images the attack fooled, the share whose clean prediction comes back).")
