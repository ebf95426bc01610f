"""The shared sidebar: a model (from any registered source, or an upload), a device, an image, and
the attack. The model part loops over ``neuronviz.core.models.list_sources()`` and knows no source.

Widgets only collect requests; :mod:`app.state` loads them (cached) and keeps the last good
choice. The attack's parameters sit inside a form: nothing runs until "Run attack" is pressed,
and a submitted choice that does not validate is reported while the last good one stays.
:func:`render` returns the resolved selection and the messages of whatever failed.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import replace

import streamlit as st
import torch

from app import choices, components, state, surrogate
from app import runs as analysis
from app.actions import REGISTRY, SAMPLE, SEED_GENERATION, reset_attack_widgets  # noqa: F401 - the shared actions' keys and values
from app.actions import new_seed_widget as _new_seed_widget
from neuronviz.core.models import ModelInfo, ModelSource, PixelModel, list_sources
from neuronviz.data.images import Sample
from neuronviz.infra.errors import InputError, NeuronvizError
from neuronviz.methods.attacks import AttackInfo, list_attacks

UPLOAD = "Upload"
PRETRAINED, RANDOM = "pretrained", "random initialisation"
FROM_FILE = "from the file (or inferred)"  # how an upload option's blank choice is shown
UNKNOWN = "unknown"  # an upload's true class when the user gives none
IMAGE_TYPES = ["png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp"]
DOWNLOAD_MESSAGE = "sidebar.download_message"


def render() -> tuple[state.Selection | None, list[str]]:
    """Draw the sidebar; return the selection to show and the error messages to report."""
    with st.sidebar:
        st.header("Model", divider="gray")
        model_request = _model_picker()
        model, used_model_request, errors = state.resolve_model(model_request)
        if model is None or used_model_request is None:
            state.set_selection(None)
            return None, errors
        st.header("Image", divider="gray")
        image_request = _image_picker(model)
        image, used_request, info, image_errors = state.resolve_image(image_request, model)
        st.header("Attack", divider="gray")
        errors += _attack_form(model)
        surrogate.sidebar_choice(model)  # issue 23: transfer attacks (app/surrogate.py)
    errors += image_errors
    if image is None or used_request is None:
        state.set_selection(None)
        return None, errors
    selection = state.Selection(
        model=model,
        model_request=used_model_request,
        image=image,
        image_request=used_request,
        image_info=info,
        true_class=state.true_class_of(used_request, model),
    )
    state.set_selection(selection)
    return selection, errors


# -- model ----------------------------------------------------------------------------------------


def _model_picker() -> state.ModelRequest | None:
    uploads = {source.label: source for source in list_sources() if source.upload_suffixes}
    source = choices.choose(
        st.segmented_control, "Source", [REGISTRY, *uploads], key="model_source", default=REGISTRY, width="stretch"
    )
    request = _registry_picker() if source == REGISTRY else _upload_picker(uploads[source])
    device = _device_picker()
    return None if request is None else replace(request, device=device)


ANOTHER = ":*"  # the Model box's "another model of this source" entry is the source's name + ANOTHER


def _registry_picker() -> state.ModelRequest | None:
    """The Model box: every source's listed models, grouped by source, then one "another … model"
    entry per source that takes any name (its text box). A source's own facts decide the rest:
    a fetch button when weights are missing and the source fetches them, the weights radio when
    it offers random initialisation."""
    sources = list_sources()
    infos: dict[str, tuple[ModelSource, ModelInfo | None]] = {}
    for source in sources:
        for listed_info in source.list_models():
            infos[listed_info.name] = (source, listed_info)
    for source in sources:
        if source.spec_field is not None:
            infos[source.name + ANOTHER] = (source, None)
    name = choices.choose(
        st.selectbox, "Model", list(infos), key="model_name", default=state.DEFAULT_MODEL, format_func=lambda n: _model_label(n, infos[n])
    )
    source, listed = infos[name]
    info = listed if listed is not None else _typed_model(source)
    if info is None:
        return None
    spec = info.name
    st.caption(info.description)
    if source.fetch_label and not info.weights_available:
        if _shared_server():
            st.warning(
                f"Pretrained weights for **{spec}** are not cached on this server, and downloads are off "
                "(shared server): use random initialisation, or ask the operator to cache them.",
                icon=":material/cloud_off:",
            )
        else:
            st.warning(
                f"Pretrained weights for **{spec}** are not cached here: press **{source.fetch_label}** "
                "(internet), or use random initialisation.",
                icon=":material/cloud_off:",
            )
            st.button(source.fetch_label, key=f"download:{spec}", icon=":material/download:", on_click=_download, args=(spec,))
    message = st.session_state.get(DOWNLOAD_MESSAGE)
    if message and message[0] == spec:
        (st.error if message[1] else st.success)(message[1] or f"Weights of {spec} downloaded.")
    if not source.offers_random:
        return state.ModelRequest(name=spec)
    weights = choices.choose(
        st.radio, "Weights", [PRETRAINED, RANDOM], key=f"weights:{spec}", default=PRETRAINED if info.weights_available else RANDOM, horizontal=True
    )
    return state.ModelRequest(name=spec, weights="default" if weights == PRETRAINED else None)


def _model_label(name: str, entry: tuple[ModelSource, ModelInfo | None]) -> str:
    source, info = entry
    if info is None:
        return f"{source.label or source.name}: another model (type its name)…"
    return source.picker_label(info)


def _typed_model(source: ModelSource) -> ModelInfo | None:
    """The text box of a source that takes any name; the model's facts, or None (reported)."""
    field = source.spec_field
    assert field is not None
    text = kept_text(field.label, f"{source.name}_spec", field.default, help=field.help or None)
    if not text.strip():
        st.caption("No model named yet: the previous model stays selected.")
        return None
    try:
        return source.info(source.spec_from_text(text))
    except NeuronvizError as error:
        st.error(f"{state.error_text(error)} The previous model stays selected.", icon=":material/error:")
        return None


def _shared_server() -> bool:
    """Whether this server is shared (env NEURONVIZ_SHARED_SERVER=1): no downloads, no local paths."""
    from neuronviz.infra.settings import shared_server

    return bool(shared_server())


def _download(spec: str) -> None:
    """Button callback: runs before the rerun, so the weights radio can switch to pretrained."""
    if _shared_server():  # the button is not drawn then; a crafted client gets the same answer
        st.session_state[DOWNLOAD_MESSAGE] = (spec, "Downloads are off on this shared server.")
        return
    error = state.fetch_weights(spec)
    st.session_state[DOWNLOAD_MESSAGE] = (spec, error)
    if error is None:
        st.session_state[f"weights:{spec}"] = PRETRAINED


def _upload_picker(source: ModelSource) -> state.ModelRequest | None:
    """A source's file upload and its options (a select box for an option with choices, a text
    box otherwise; blank: from the file)."""
    uploaded = st.file_uploader(
        source.label,
        type=[suffix.lstrip(".") for suffix in source.upload_suffixes],
        key=f"{source.name}_upload",
        help=source.upload_help or None,
    )
    values = []
    for field in source.options:
        key = f"{source.name}_{field.name}"
        if field.choices:
            value = choices.choose(
                st.selectbox, field.label, list(field.choices), key=key, default=field.default,
                format_func=lambda c: c or FROM_FILE, help=field.help or None,
            )
        else:
            value = kept_text(field.label, key, field.default, help=field.help or None)
        values.append((field.name, str(value).strip()))
    if uploaded is None:
        # The uploader is empty after another source was shown (Streamlit forgets a widget that is
        # not drawn): this source's last file is still its choice, and it says so.
        earlier = st.session_state.get(LAST_UPLOADS, {}).get(source.name)
        if earlier is None:
            st.caption("No file uploaded yet: the previous model stays selected.")
            return None
        st.caption(f":material/description: Using **{earlier.name}**, uploaded earlier; upload another file to replace it.")
        return state.ModelRequest(name=earlier.name, upload=earlier, source=source.name, options=tuple(values))
    try:
        upload = state.Upload.from_file(uploaded)
    except NeuronvizError as error:
        st.error(f"{str(error)[:1].upper()}{str(error)[1:]}. The previous model stays selected.", icon=":material/error:")
        return None
    remember_upload(source.name, upload)
    return state.ModelRequest(name=upload.name, upload=upload, source=source.name, options=tuple(values))


LAST_UPLOADS = "sidebar.last_uploads"  # {upload source's name: its last Upload}
KEPT_TEXT = "sidebar.kept_text"  # {text box key: its last value}


def remember_upload(source_name: str, upload: state.Upload) -> None:
    """Make ``upload`` the file of the upload source ``source_name`` (kept while other sources are shown)."""
    st.session_state.setdefault(LAST_UPLOADS, {})[source_name] = upload


def kept_text(label: str, key: str, default: str, **kwargs) -> str:
    """``st.text_input`` whose value survives runs that do not draw it (another model source was
    shown): the last value typed comes back, not ``default``. A value put into session state
    before the sidebar draws (a link) wins."""
    kept = st.session_state.setdefault(KEPT_TEXT, {})
    if key not in st.session_state:
        st.session_state[key] = kept.get(key, default)
    value = st.text_input(label, key=key, **kwargs)
    kept[key] = value
    return value


def _device_picker() -> str:
    devices = state.available_devices()
    default = state.default_device()
    return choices.choose(
        st.selectbox, "Device", devices, key="device", default=default, format_func=_device_label,
        help="CUDA is offered only when a GPU is available here.",
    )


def _device_label(device: str) -> str:
    return f"cuda ({torch.cuda.get_device_name(0)})" if device == "cuda" else "cpu"


# -- image ----------------------------------------------------------------------------------------


def _image_picker(model: PixelModel) -> state.ImageRequest | None:
    source = choices.choose(st.segmented_control, "Source", [SAMPLE, UPLOAD], key="image_source", default=SAMPLE, width="stretch")
    if source == UPLOAD:
        uploaded = st.file_uploader("Image", type=IMAGE_TYPES, key="image_upload")
        if uploaded is None:
            st.caption("No image uploaded yet: the previous image stays selected.")
            return None
        try:
            upload = state.Upload.from_file(uploaded)
        except NeuronvizError as error:
            st.error(f"{str(error)[:1].upper()}{str(error)[1:]}. The previous image stays selected.", icon=":material/error:")
            return None
        return state.ImageRequest.for_upload(upload, true_class=_true_class_picker(model, upload))
    samples = state.samples_for(model)
    if not samples:
        st.caption("This model has no sample images: upload one.")
        return None
    sample = _digit_picker(model, samples) if _by_class(samples) else _sample_list_picker(samples)
    if sample.credit:
        st.caption(sample.credit)
    return state.ImageRequest.for_sample(sample)


def _true_class_picker(model: PixelModel, upload: state.Upload) -> int | None:
    """The upload's true class, if the user knows it ("unknown" by default): verdicts such as
    "correct" and "restored" are judged against it."""
    options: list = [UNKNOWN, *range(model.num_classes)]
    chosen = choices.choose(
        st.selectbox,
        "True class of the upload",
        options,
        key=f"image_true_class:{upload.digest[:16]}:{model.num_classes}",
        default=UNKNOWN,
        format_func=lambda c: "unknown" if c == UNKNOWN else f"{c} · {model.class_names[c]}",
        help="If you know what the image shows, give its class: the pages then say whether the "
        "model is correct on it. Unknown: they only compare predictions.",
    )
    return None if chosen == UNKNOWN else int(chosen)


_DIGIT_LABEL = re.compile(r"digit (\d+)\b")


def digit_of(sample: Sample) -> int | None:
    """The digit a sample digit shows (from the data set's label: "digit 3 (#12)"), whatever the
    model's class names are; None for anything else."""
    found = _DIGIT_LABEL.match(sample.label) if sample.kind == "digit" else None
    return int(found.group(1)) if found else None


def by_digit(samples: list[Sample]) -> bool:
    """Whether the samples are digits: picked by the digit shown (for any model that takes them,
    also one whose class names are not the digits, e.g. an ONNX upload's "class 0")."""
    return bool(samples) and all(digit_of(s) is not None for s in samples)


def _by_class(samples: list[Sample]) -> bool:
    return by_digit(samples)


def _digit_picker(model: PixelModel, samples: list[Sample]) -> Sample:
    groups: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        groups[digit_of(sample)].append(sample)  # type: ignore[index]
    classes = sorted(groups)
    names = {digit: groups[digit][0].true_class for digit in classes}  # the model's class of each digit, when it has one

    def label(digit: int) -> str:
        index = names[digit]
        return model.class_names[index] if index is not None else str(digit)

    # The start-up example (analysis.DEFAULT_SAMPLE_ID, chosen by bench/choose_example.py) when present.
    start = next((s for s in samples if s.id == analysis.DEFAULT_SAMPLE_ID), None)
    start_class = digit_of(start) if start is not None else classes[0]
    start_example = groups[start_class].index(start) if start is not None else 0  # type: ignore[index]
    chosen = choices.choose(st.segmented_control, "Digit", classes, key="sample_class", default=start_class, format_func=label)
    members = groups[chosen]
    example = 0
    if len(members) > 1:
        example = choices.choose(
            st.segmented_control,
            "Example",
            list(range(len(members))),
            key="sample_example",
            default=start_example if chosen == start_class else 0,
            format_func=lambda i: f"{i + 1}",
            help="Different handwritten examples of this digit (digits test split).",
        )
    return members[example]


def _sample_list_picker(samples: list[Sample]) -> Sample:
    by_id = {sample.id: sample for sample in samples}
    chosen = choices.choose(st.selectbox, "Sample", list(by_id), key="sample_id", format_func=lambda i: by_id[i].label)
    return by_id[chosen]


# -- attack -----------------------------------------------------------------------------------------


def _attack_form(model: PixelModel) -> list[str]:
    """The attack picker and, in a form, its parameters, target and seed. Returns error messages.

    The submitted choice (:func:`analysis.attack_choice`) is what every page and the banner use;
    a picked attack that has not been run yet is said to be pending, under the picker. A submitted
    value that does not validate (out of range, not finite, not a whole number: the number inputs
    are unbounded so that such a value reaches the schema instead of being reset silently) is
    refused with the schema's message, and the previous choice stays."""
    current = analysis.attack_choice(model)
    attacks = {info.name: info for info in list_attacks()}
    names = list(attacks)
    switched = st.session_state.get(ATTACK_CHANNELS) != model.channels
    if switched:
        # The choice is kept per input channel count (digits vs photos): show that one's attack
        # and seed, not what the widgets last held for the other kind of model.
        _new_seed_widget()
        st.session_state[ATTACK_CHANNELS] = model.channels
    name = choices.choose(
        st.selectbox, "Attack", names, key="attack_name", default=current.attack,
        set_to=current.attack if switched else None, format_func=lambda n: attacks[n].label,
    )
    info = attacks[name]
    st.caption(f"{info.description} ({_paper_short(info.paper)})" if info.paper != "—" else info.description)
    pending = st.empty()  # filled once the form's submission (if any) is handled
    overrides = dict(current.overrides) if current.attack == name else {}
    # The parameter widgets are keyed by the choice in use, so that their default is always its
    # value: Streamlit resets a value it cannot take (NaN, infinity) to the widget's first
    # default, which would otherwise be the attack's default, not the choice in use.
    tag = analysis.digest(current)[:10]
    with st.form("attack_form", border=False, enter_to_submit=False):
        values = {
            p.name: components.param_widget(
                p, f"attack:{info.name}:{p.name}:{model.channels}ch:{tag}", overrides.get(p.name, p.default_for(model)), bounded=False
            )
            for p in info.params
        }
        target = _target_widget(info, model, current if current.attack == name else None)
        seed = st.number_input(
            "Seed", value=int(current.seed), step=1, key=f"attack_seed.{st.session_state.get(SEED_GENERATION, 0)}",
            help=f"Seeds the attack's randomness (random start, restarts): the same seed gives the same image. "
            f"A whole number from 0 to {SEED_MAX}.",
        )
        submitted = st.form_submit_button("Run attack", type="primary", icon=":material/bolt:", width="stretch")
    messages = []
    if submitted:
        try:
            choice = analysis.AttackChoice.make(name, values, target=target, seed=_seed(seed))
            choice.params(model)  # validate now, against this model
        except NeuronvizError as error:
            messages.append(f"The attack was not changed: {error}. Still using {current.describe(model)}.")
        else:
            if choice != current:
                analysis.set_attack_choice(model, choice)
                st.rerun()  # draw the form again, its widgets keyed by the new choice (see `tag`)
    in_use = analysis.attack_choice(model).attack
    if name != in_use:
        pending.caption(
            f":material/pending: Not run yet: the pages show **{attacks[in_use].label}** until you press Run attack."
        )
    return messages


SEED_MAX = 2**31 - 1


def _seed(value) -> int:
    """The form's seed as an int in 0..SEED_MAX. Raises InputError for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (float("inf"), float("-inf")):
        raise InputError(f"the seed must be a whole number from 0 to {SEED_MAX}, got {value!r}")
    if int(value) != value or not 0 <= value <= SEED_MAX:
        raise InputError(f"the seed must be a whole number from 0 to {SEED_MAX}, got {value!r}")
    return int(value)


def _paper_short(paper: str) -> str:
    """"Madry et al., Towards Deep Learning Models…, arXiv:1706.06083" → "Madry et al."."""
    return paper.split(",")[0]


UNTARGETED, LEAST_LIKELY = "untargeted", "least-likely"
#: What an untargeted attack moves away from, as computed (analysis.compute_analysis, run_attack's
#: default label): the clean prediction, not the true class, which uploads often lack.
AWAY = "away from the clean prediction"
ATTACK_CHANNELS = "sidebar.attack_channels"  # the channel count the attack widgets were last set for


def _target_widget(info: AttackInfo, model: PixelModel, current: analysis.AttackChoice | None):
    if not info.targeted:
        st.caption(f"{info.label} has no targeted mode: it moves {AWAY}.")
        return None
    options: list = [UNTARGETED, LEAST_LIKELY, *range(model.num_classes)]
    default = UNTARGETED if current is None or current.target is None else current.target
    labels = {UNTARGETED: "untargeted", LEAST_LIKELY: "least-likely class"}
    chosen = choices.choose(
        st.selectbox,
        "Target class",
        options,
        key=f"attack_target:{model.content_hash[:12]}",
        default=default,
        format_func=lambda o: labels[o] if isinstance(o, str) else f"{o} · {model.class_names[o]}",
        help=f"A targeted attack pushes the image toward this class; untargeted, it moves {AWAY}.",
    )
    return None if chosen == UNTARGETED else chosen
