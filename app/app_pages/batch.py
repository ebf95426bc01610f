"""Batch: the sidebar's attack and the defences over N images, with a progress bar; success rate,
DSR and accuracies, per-class bars, and the per-image table; each with its numbers (CSV, JSON)
and provenance (model, images, attack with ε and every parameter, target, seed, defences).

Nothing is computed on page load: "Run batch" (the labelled images and their number above it, the
optional defences in its form) starts the work, chunk by chunk through the shared cache, so only a cold run
takes time and shows progress; the page then shows the session's last result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import streamlit as st

from app import components, surrogate
from app import export_controls as exports
from app import runs as analysis
from app.evaluation_set import BUILTIN, evaluation_images
from neuronviz.core.models import PixelModel
from neuronviz.data import labelled as evalset
from neuronviz.figures import batch as batch_figures
from neuronviz.methods.defences import get_defence, list_defences
from neuronviz.workflows import batch

#: Images per chunk: one progress step and one cache entry (a whole number of batch.BLOCK).
CHUNK = 2 * batch.BLOCK
DEFAULT_IMAGES = 50
LAST = "batch.last"  # session_state: the last BatchRun of this session
# The page's controls (session_state keys).
IMAGES_KEY = "batch.n"
PER_CLASS_KEY = "batch.per_class_metric"


def defence_key(name: str) -> str:
    """The session_state key of an optional defence's checkbox."""
    return f"batch.{name}"


@dataclass(frozen=True)
class BatchRun:
    """What the last "Run batch" computed: for which model and attack, on which images."""

    model_key: tuple[str, str]
    choice: analysis.AttackChoice
    source: str
    result: batch.BatchResult
    seconds: float  # wall time of the run (chunks found in the cache cost nearly nothing)
    images: evalset.EvaluationSet | None = None  # the images the run was on (the export's provenance)


def run_batch(model, choice: analysis.AttackChoice, images: evalset.EvaluationSet, defences: tuple[str, ...], bar,
              crafted_on: PixelModel | None = None) -> BatchRun:
    """The evaluation of ``images`` chunk by chunk (each chunk cached by content); ``crafted_on``:
    the sidebar's surrogate (a transfer attack), None for the white-box attack."""
    started = time.perf_counter()
    params = choice.params(crafted_on or model)

    def advance(done: int, total: int) -> None:
        bar.progress(done / total, text=f"{done} of {components.plural(total, 'image')} attacked and restored")

    result = batch.evaluate_batch(
        model,
        images.images,
        images.labels,
        choice.attack,
        params,
        defences=defences,
        target=choice.target,
        seed=choice.seed,
        chunk=CHUNK,
        progress=advance,
        ids=images.ids,
        call=analysis.memo,
        surrogate=crafted_on,
    )
    seconds = time.perf_counter() - started
    source = images.description + (f"; images crafted on {crafted_on.name} (transfer)" if crafted_on is not None else "")
    return BatchRun((model.content_hash, str(model.device)), choice, source, result, seconds, images)


def _percent(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.1f}%"


def show_metrics(result: batch.BatchResult) -> None:
    summary = result.summary()
    rates = result.rates()
    fooled = int(result.success.sum())
    excluded = int(getattr(summary, "excluded", 0))  # targeted runs: images already of the target class
    attacked = summary.images - excluded
    columns = st.columns(4)
    columns[0].metric(
        "Images",
        f"{summary.images}",
        delta=f"{excluded} excluded" if excluded else None,
        delta_color="off",
        delta_arrow="off",
        help=excluded_note(result, summary.images, excluded) if excluded else None,
    )
    columns[1].metric(
        "Attack success",
        _percent(summary.attack_success),
        help=f"{fooled} of {components.plural(attacked, 'attacked image')} fooled"
        + (f" ({components.plural(excluded, 'image')} excluded: already the target class)" if excluded else "")
        + f". Definition: {batch.ATTACK_SUCCESS_DEFINITION}.",
    )
    columns[1].caption(rates.attack_success.text())
    if excluded:
        st.caption(f":material/filter_alt: {excluded_note(result, summary.images, excluded)}")
    columns[2].metric("Clean accuracy", _percent(summary.clean_accuracy))
    columns[2].caption(rates.clean_accuracy.text())
    columns[3].metric("Adversarial accuracy", _percent(summary.adversarial_accuracy))
    columns[3].caption(rates.adversarial_accuracy.text())
    for name in result.defences:
        label = batch.defence_label(name, result.method_labels)
        columns = st.columns(4)
        columns[0].markdown(f"**{label}**  \n{'not deployable' if _oracle(name) else 'deployable'}")
        columns[1].metric(
            f"DSR · {label}",
            _percent(summary.dsr[name]),
            help="Among the fooled images, the share whose prediction after the defence is the clean prediction again. "
            "An image the attack did not fool has nothing to restore and is left out.",
        )
        columns[1].caption(rates.dsr[name].text())
        columns[2].metric(f"Accuracy after {label}", _percent(summary.accuracy_after[name]), help="On the attacked images.")
        columns[2].caption(rates.accuracy_after[name].text())
        columns[3].metric(
            f"Clean accuracy after {label}",
            _percent(summary.clean_accuracy_after[name]),
            help="The defence applied to the clean images: its cost on benign inputs.",
        )
        columns[3].caption(rates.clean_accuracy_after[name].text())


def batch_record(model: PixelModel, last: BatchRun) -> dict[str, Any]:
    """The provenance of the last run: model, the images (description, count, digest), the attack
    with its ε and every other parameter, target, seed, and each defence with its parameters."""
    result = last.result
    images = last.images if last.images is not None else analysis.memo(batch.batch_images, model, result.images)
    defences = [{"defence": name, "params": get_defence(name).resolve({}, model), "label": batch.defence_label(name, result.method_labels),
                 **get_defence(name).variant_for(model).provenance} for name in result.defences]  # the form that ran
    return exports.set_record(
        model, images.images, images.labels, last.source, result.attack, result.params, result.target, result.seed,
        defences=defences, ids=result.ids, page="batch", seconds=last.seconds,
    )


def excluded_note(result: batch.BatchResult, images: int, excluded: int) -> str:
    """Why some images of a targeted run were not attacked, and what the rates are over."""
    attacked = images - excluded
    return (
        f"{components.plural(excluded, 'image')} of {images} {'was' if excluded == 1 else 'were'} not attacked: the "
        f"clean prediction already was the target class. Attack success, DSR and the restored counts are over the "
        f"other {components.plural(attacked, 'image')}; the accuracies are over all {images}."
    )


def _oracle(name: str) -> bool:
    return get_defence(name).oracle


def optional_defences() -> list[str]:
    """The defences a run may add to the two it always has: every other registered one but the
    identity, in registry order (NIP oracle, NIP reactive, then plugins')."""
    return [d.name for d in list_defences(include_none=False) if d.name not in batch.DEFAULT_DEFENCES]


def column_config(result: batch.BatchResult) -> dict:
    config = {
        "image": st.column_config.TextColumn("Image"),
        "label": st.column_config.TextColumn("True class"),
        "clean_pred": st.column_config.TextColumn("Clean prediction"),
        "adv_pred": st.column_config.TextColumn("Adversarial prediction"),
        "success": st.column_config.CheckboxColumn("Attack succeeded"),
        "attacked": st.column_config.CheckboxColumn(
            "Attacked", help="False: a targeted run left the image alone, its clean prediction already was the target"
        ),
        "linf": st.column_config.NumberColumn("L∞", format="%.4f", help="Largest pixel change (pixel units)"),
        "l2": st.column_config.NumberColumn("L2", format="%.3f", help="Euclidean norm of the perturbation (pixel units)"),
        "l0": st.column_config.NumberColumn("L0", format="%d", help="Pixel positions changed"),
    }
    for name in result.defences:
        label = batch.defence_label(name, result.method_labels)
        config[name] = st.column_config.TextColumn(f"{label}: prediction")
        config[f"{name}:restored"] = st.column_config.TextColumn(
            f"{label}: verdict",
            help="restored: the prediction after the defence is the clean prediction again; not restored; nothing to "
            "restore: the attack did not fool the image (left out of the DSR); not attacked: a targeted run left it alone.",
        )
        config[f"{name}:clean"] = st.column_config.TextColumn(f"{label} on clean", help="The defence applied to the clean image.")
    return config


# -- the page ----------------------------------------------------------------------------------------


def render() -> None:
    started = components.page_start()
    if started is None:
        return
    selection, model, choice = started
    st.markdown(
        f"The sidebar's attack, **{choice.describe(model)}**, and the defences over many images: how often "
        "the attack succeeds, how often each defence undoes it (DSR), and what each defence costs on clean images."
    )

    chosen = evaluation_images(  # the labelled images (built-in or the user's) and how many
        model, count_key=IMAGES_KEY, default=DEFAULT_IMAGES, label="Images", slider=evalset.is_digits_model(model),
        purpose="are attacked and restored",
    )
    if chosen.images is None:
        if chosen.source == BUILTIN and not chosen.available:
            st.info(f"There are no images with a known class to evaluate {model.name} on (sample images with a class it knows).")
        return
    st.caption(f"Images: {chosen.images.description}.")

    crafted_on = surrogate.surrogate_for(model)
    if crafted_on is not None:
        st.caption(f":material/swap_horiz: Transfer attack: the images are crafted on **{crafted_on.name}** (the sidebar's "
                   f"surrogate) and every verdict, rate and defence below is {model.name}'s.")
    submitted, extra = batch_form(model)
    if submitted:
        defences = (*batch.DEFAULT_DEFENCES, *extra)
        bar = st.progress(0.0, text="Starting…")
        run = analysis.attempt(run_batch, model, choice, chosen.images, defences, bar, crafted_on)
        bar.empty()
        if run is not None:
            st.session_state[LAST] = run

    last: BatchRun | None = st.session_state.get(LAST)
    if last is None:
        st.info("Choose the number of images and the defences, then press **Run batch**.", icon=":material/play_arrow:")
        return
    expected = chosen.images.description + (f"; images crafted on {crafted_on.name} (transfer)" if crafted_on is not None else "")
    if last.model_key != (model.content_hash, str(model.device)) or last.choice != choice or last.source != expected:
        st.info(
            "The model, the attack or the images changed since the last batch: press **Run batch** to evaluate this choice.",
            icon=":material/refresh:",
        )
        return

    show_result(model, choice, last)


def batch_form(model: PixelModel) -> tuple[bool, list[str]]:
    """The optional defences, in a form: (submitted, defences). A defence that cannot run on this
    model is shown unticked and disabled, with its reason as the help."""
    with st.form("batch.form", enter_to_submit=False):
        st.markdown("**Defences**: NIP (guided toward the clean prediction) and PSSR always; also:")
        extra = []
        for name in optional_defences():
            defense = get_defence(name)
            reason = defense.unavailable(model)
            if st.checkbox(
                defense.label,
                key=defence_key(name),
                help=defense.description if reason is None else reason,
                disabled=reason is not None,
            ) and reason is None:
                extra.append(name)
        submitted = st.form_submit_button("Run batch", type="primary", icon=":material/play_arrow:")
    return submitted, extra


def show_result(model: PixelModel, choice: analysis.AttackChoice, last: BatchRun) -> None:
    """The last run's summary, accuracy charts and per-image table."""
    result = last.result
    record = batch_record(model, last)
    st.subheader("Summary", divider="gray")
    st.caption(
        f"{choice.describe(model)} on {last.source}. The last run took {last.seconds:.2f} s: chunks of "
        f"{CHUNK} images already computed (by any session) come from the cache."
    )
    st.caption(f":material/rule: Attack success, as every number on this page counts it: {batch.ATTACK_SUCCESS_DEFINITION}. "
               "Each rate is shown with its 95% Wilson interval and n.")
    show_metrics(result)

    st.subheader("Accuracy", divider="gray")
    left, right = st.columns(2, gap="large")
    with left:
        accuracy = components.figure(batch_figures.accuracy_figure, result.summary(), rates=result.rates())
        components.chart(accuracy, "batch-accuracy", key="batch.accuracy")
        exports.export_controls(
            accuracy, batch.summary_frame(result), f"batch-accuracy-{model.name}-{result.attack}", record,
            key="batch.export.accuracy",
        )
        st.caption(
            "For each defence, the left bar is its accuracy on the clean images (what it costs when there is no "
            "attack), the right bar its accuracy on the attacked images. A good defence lifts the right bar "
            "without lowering the left one. Error bars: 95% Wilson intervals."
        )
    with right:
        components.persist(PER_CLASS_KEY)
        metric = st.segmented_control(
            "Per class",
            batch_figures.PER_CLASS_METRICS,
            default="accuracy",
            required=True,
            format_func=lambda m: {"accuracy": "Accuracy", "attack_success": "Attack success & DSR"}[m],
            key=PER_CLASS_KEY,
        )
        per_class = components.figure(batch_figures.per_class_figure, result, model.class_names, metric=metric or "accuracy")
        components.chart(per_class, f"batch-per-class-{metric}", key="batch.per_class")
        exports.export_controls(
            per_class, result.per_class(model.class_names), f"batch-per-class-{model.name}-{result.attack}", record,
            key="batch.export.per_class",
        )
        st.caption("The same numbers per true class: which classes the attack breaks most, and which the defences recover.")

    st.subheader("Per image", divider="gray")
    frame = result.to_frame(model.class_names)
    st.dataframe(frame, column_config=column_config(result), hide_index=True, key="batch.table")
    exports.export_controls(None, frame, f"batch-{model.name}-{result.attack}-{result.images}", record, key="batch.export.table")
    with st.expander("How the defences are run"):
        st.markdown(
            f"- Attack success: {batch.ATTACK_SUCCESS_DEFINITION}.\n"
            "- **DSR** (defence success rate): among the fooled images, the share whose prediction after the "
            "defence is the clean prediction again.\n"
            "- NIP (guided) restores toward the clean prediction and the NIP oracle uses the clean image: both "
            "are analysis tools, not deployable defences. A clean image already predicted as its clean "
            "prediction is left alone by guided NIP.\n"
            f"- Images are attacked {batch.BLOCK} at a time with a seed derived from the sidebar's seed and "
            "the block, so the numbers do not depend on how the work is split."
        )
        for name in result.defences:
            defense = get_defence(name)
            if defense.reconstruction:
                st.markdown(f"**{defense.label}** — reconstruction: {defense.reconstruction}")


if __name__ == "__main__":  # st.navigation runs a page as __main__; an import only defines it
    render()
