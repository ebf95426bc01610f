"""The shared sidebar: a model (registry or your checkpoint), a device, an image, and the attack.

Widgets only collect requests; :mod:`app.state` loads them (cached) and keeps the last good
choice. The attack's parameters sit inside a form: nothing runs until "Run attack" is pressed,
and a submitted choice that does not validate is reported while the last good one stays.
:func:`render` returns the resolved selection and the messages of whatever failed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import streamlit as st
import torch

from app import analysis, components, state
from neuronviz.attacks import AttackInfo, list_attacks
from neuronviz.errors import NeuronvizError
from neuronviz.images import Sample
from neuronviz.models import ModelInfo, PixelModel, list_architectures, list_models

REGISTRY, CHECKPOINT = "Built-in", "Your checkpoint"
SAMPLE, UPLOAD = "Sample", "Upload"
PRETRAINED, RANDOM = "pretrained", "random initialisation"
CHECKPOINT_TYPES = ["safetensors", "pt", "pth"]
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


def _unless_set(key: str, default):
    """A widget's default, or None when the session already holds its value (set by a page, e.g.
    the Learn page's "open this example"): Streamlit warns when a widget gets both."""
    return None if key in st.session_state else default


# -- model ----------------------------------------------------------------------------------------


def _model_picker() -> state.ModelRequest | None:
    source = st.segmented_control(
        "Source", [REGISTRY, CHECKPOINT], default=_unless_set("model_source", REGISTRY), required=True, key="model_source", width="stretch"
    )
    request = _registry_picker() if source == REGISTRY else _checkpoint_picker()
    device = _device_picker()
    return None if request is None else replace(request, device=device)


def _registry_picker() -> state.ModelRequest:
    infos = {info.name: info for info in list_models()}
    names = list(infos)
    name = st.selectbox(
        "Model",
        names,
        index=_unless_set("model_name", names.index(state.DEFAULT_MODEL) if state.DEFAULT_MODEL in names else 0),
        format_func=lambda n: _model_label(infos[n]),
        key="model_name",
    )
    info = infos[name]
    st.caption(info.description)
    if info.kind != "zoo":
        return state.ModelRequest(name=name)
    if not info.weights_available:
        st.warning(
            f"Pretrained weights for **{name}** are not cached here. Download them (internet), "
            "or use random initialisation.",
            icon=":material/cloud_off:",
        )
        st.button(
            "Download weights",
            key=f"download:{name}",
            icon=":material/download:",
            on_click=_download,
            args=(name,),
        )
    message = st.session_state.get(DOWNLOAD_MESSAGE)
    if message and message[0] == name:
        (st.error if message[1] else st.success)(message[1] or f"Weights of {name} downloaded.")
    weights = st.radio(
        "Weights",
        [PRETRAINED, RANDOM],
        index=0 if info.weights_available else 1,
        key=f"weights:{name}",
        horizontal=True,
    )
    return state.ModelRequest(name=name, weights="default" if weights == PRETRAINED else None)


def _model_label(info: ModelInfo) -> str:
    if info.kind == "embedded":
        return f"{info.name} · embedded" + ("" if info.weights_available else " (weights missing)")
    return f"{info.name} · ImageNet, " + ("cached" if info.weights_available else "not cached")


def _download(name: str) -> None:
    """Button callback: runs before the rerun, so the weights radio can switch to pretrained."""
    error = state.download_zoo_weights(name)
    st.session_state[DOWNLOAD_MESSAGE] = (name, error)
    if error is None:
        st.session_state[f"weights:{name}"] = PRETRAINED


def _checkpoint_picker() -> state.ModelRequest | None:
    uploaded = st.file_uploader(
        "Checkpoint",
        type=CHECKPOINT_TYPES,
        key="checkpoint_upload",
        help="A state dict (.pt/.pth, read with weights_only=True) or a .safetensors file for a "
        "registered architecture. TorchScript archives are refused: loading them runs code.",
    )
    architecture = st.selectbox(
        "Architecture",
        [None, *list_architectures()],
        format_func=lambda a: "from the file (or inferred)" if a is None else a,
        key="checkpoint_architecture",
    )
    if uploaded is None:
        st.caption("No checkpoint uploaded yet: the previous model stays selected.")
        return None
    return state.ModelRequest(name=uploaded.name, upload=state.Upload.from_file(uploaded), architecture=architecture)


def _device_picker() -> str:
    devices = state.available_devices()
    default = state.default_device()
    return st.selectbox(
        "Device",
        devices,
        index=devices.index(default) if default in devices else 0,
        format_func=_device_label,
        key="device",
        help="CUDA is offered only when a GPU is available here.",
    )


def _device_label(device: str) -> str:
    return f"cuda ({torch.cuda.get_device_name(0)})" if device == "cuda" else "cpu"


# -- image ----------------------------------------------------------------------------------------


def _image_picker(model: PixelModel) -> state.ImageRequest | None:
    source = st.segmented_control(
        "Source", [SAMPLE, UPLOAD], default=_unless_set("image_source", SAMPLE), required=True, key="image_source", width="stretch"
    )
    if source == UPLOAD:
        uploaded = st.file_uploader("Image", type=IMAGE_TYPES, key="image_upload")
        if uploaded is None:
            st.caption("No image uploaded yet: the previous image stays selected.")
            return None
        return state.ImageRequest.for_upload(state.Upload.from_file(uploaded))
    samples = state.samples_for(model)
    if not samples:
        st.caption("This model has no sample images: upload one.")
        return None
    sample = _digit_picker(model, samples) if _by_class(samples) else _sample_list_picker(samples)
    if sample.credit:
        st.caption(sample.credit)
    return state.ImageRequest.for_sample(sample)


def _by_class(samples: list[Sample]) -> bool:
    return all(s.kind == "digit" and s.true_class is not None for s in samples)


def _digit_picker(model: PixelModel, samples: list[Sample]) -> Sample:
    groups: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        groups[sample.true_class].append(sample)  # type: ignore[index]
    classes = sorted(groups)
    # The start-up example (analysis.DEFAULT_SAMPLE_ID, chosen by bench/choose_example.py) when present.
    start = next((s for s in samples if s.id == analysis.DEFAULT_SAMPLE_ID), None)
    start_class = start.true_class if start is not None else classes[0]
    start_example = groups[start_class].index(start) if start is not None else 0
    chosen = st.segmented_control(
        "Digit",
        classes,
        default=_unless_set("sample_class", start_class),
        required=True,
        format_func=lambda c: model.class_names[c],
        key="sample_class",
    )
    members = groups[chosen]
    example = 0
    if len(members) > 1:
        example = st.segmented_control(
            "Example",
            list(range(len(members))),
            default=_unless_set("sample_example", start_example if chosen == start_class else 0),
            required=True,
            format_func=lambda i: f"{i + 1}",
            key="sample_example",
            help="Different handwritten examples of this digit (digits test split).",
        )
    return members[min(example, len(members) - 1)]


def _sample_list_picker(samples: list[Sample]) -> Sample:
    by_id = {sample.id: sample for sample in samples}
    chosen = st.selectbox("Sample", list(by_id), format_func=lambda i: by_id[i].label, key="sample_id")
    return by_id[chosen]


# -- attack -----------------------------------------------------------------------------------------


def _attack_form(model: PixelModel) -> list[str]:
    """The attack picker and, in a form, its parameters, target and seed. Returns error messages."""
    current = analysis.attack_choice(model)
    attacks = {info.name: info for info in list_attacks()}
    names = list(attacks)
    if st.session_state.get(ATTACK_CHANNELS) != model.channels:
        # The choice is kept per input channel count (digits vs photos): show that one's attack
        # and seed, not what the widgets last held for the other kind of model.
        st.session_state["attack_name"] = current.attack
        st.session_state["attack_seed"] = int(current.seed)
        st.session_state[ATTACK_CHANNELS] = model.channels
    name = st.selectbox("Attack", names, format_func=lambda n: attacks[n].label, key="attack_name")
    info = attacks[name]
    st.caption(f"{info.description} ({_paper_short(info.paper)})" if info.paper != "—" else info.description)
    overrides = dict(current.overrides) if current.attack == name else {}
    with st.form("attack_form", border=False, enter_to_submit=False):
        values = {
            p.name: components.param_widget(
                p, f"attack:{info.name}:{p.name}:{model.channels}ch", overrides.get(p.name, p.default_for(model))
            )
            for p in info.params
        }
        target = _target_widget(info, model, current if current.attack == name else None)
        seed = st.number_input(
            "Seed", min_value=0, max_value=2**31 - 1, step=1, key="attack_seed",
            help="Seeds the attack's randomness (random start, restarts): the same seed gives the same image.",
        )
        submitted = st.form_submit_button("Run attack", type="primary", icon=":material/bolt:", width="stretch")
    if not submitted:
        return []
    try:
        choice = analysis.AttackChoice.make(name, values, target=target, seed=int(seed))
        choice.params(model)  # validate now, against this model
    except NeuronvizError as error:
        return [f"The attack was not changed: {error}. Still using {current.describe(model)}."]
    analysis.set_attack_choice(model, choice)
    return []


def _paper_short(paper: str) -> str:
    """"Madry et al., Towards Deep Learning Models…, arXiv:1706.06083" → "Madry et al."."""
    return paper.split(",")[0]


UNTARGETED, LEAST_LIKELY = "untargeted", "least-likely"
ATTACK_CHANNELS = "sidebar.attack_channels"  # the channel count the attack widgets were last set for


def reset_attack_widgets(choice: analysis.AttackChoice) -> None:
    """Put ``choice`` into the attack widgets (call from a callback, before the sidebar is drawn):
    its attack and seed, and its parameters' widgets back to the choice's values."""
    for key in [k for k in st.session_state if isinstance(k, str) and k.startswith(f"attack:{choice.attack}:")]:
        del st.session_state[key]
    st.session_state["attack_name"] = choice.attack
    st.session_state["attack_seed"] = int(choice.seed)


def _target_widget(info: AttackInfo, model: PixelModel, current: analysis.AttackChoice | None):
    if not info.targeted:
        st.caption(f"{info.label} has no targeted mode: it moves away from the true class.")
        return None
    options: list = [UNTARGETED, LEAST_LIKELY, *range(model.num_classes)]
    default = UNTARGETED if current is None or current.target is None else current.target
    labels = {UNTARGETED: "untargeted (away from the true class)", LEAST_LIKELY: "least-likely class"}
    chosen = st.selectbox(
        "Target class",
        options,
        index=options.index(default) if default in options else 0,
        format_func=lambda o: labels[o] if isinstance(o, str) else f"{o} · {model.class_names[o]}",
        key=f"attack_target:{model.content_hash[:12]}",
        help="A targeted attack pushes the image toward this class.",
    )
    return None if chosen == UNTARGETED else chosen
