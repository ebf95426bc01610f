"""Sessions that reopen exactly: the URL's query parameters and session files.

:func:`sync` wraps the sidebar (``app/main.py`` calls it once per run):

1. On a browser session's first run it reads ``st.query_params`` (:func:`neuronviz.workflows.session_record.from_query`)
   and puts what they name into session state **before the sidebar draws**, through the values
   the widgets accept (:mod:`app.choices`: a value changed by the code goes through session
   state before its widget is drawn): the model picker, the device, the image picker, the
   session's attack choice (:func:`app.runs.set_attack_choice`, which the attack form
   shows), the target box and the pages' controls. A value that cannot be used (unknown, out of
   range, not this model's) gives one message naming the parameter and what is used instead;
   the rest of the link still applies. Nothing raises.
2. It draws the sidebar.
3. It writes the state now shown back to ``st.query_params``, only the values that differ from
   the defaults (short links), and draws the "Session" expander: the link's query, "Download
   session" (a JSON :class:`~neuronviz.workflows.session_record.SessionRecord` with the content hashes of the
   model, checkpoint and image) and "Open session" (the JSON, and any checkpoint or image it
   names: files are matched by SHA-256).

The sidebar's widget keys are read through the constants and the table below (:data:`CONTROLS`),
nowhere else; pages declare further controls with :func:`url_key`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import streamlit as st

from app import actions, choices, components, sidebar, state, store
from app import runs as analysis
from neuronviz.figures import page_controls
from neuronviz.infra.errors import NeuronvizError
from neuronviz.methods.influence import DEFAULT_GROUP_FRACTION
from neuronviz.workflows import session_record as library
from neuronviz.workflows.session_record import Control, SessionRecord

if TYPE_CHECKING:
    from neuronviz.core.models import PixelModel
    from neuronviz.data.images import Sample

# -- the sidebar's widget keys (app/sidebar.py) ---------------------------------------------------
MODEL_SOURCE, MODEL_NAME, DEVICE = "model_source", "model_name", "device"
IMAGE_SOURCE, SAMPLE_CLASS, SAMPLE_EXAMPLE, SAMPLE_ID = "image_source", "sample_class", "sample_example", "sample_id"
ATTACK_NAME = "attack_name"
#: The Model box's "another model of this source" entry (app/sidebar.py): the source's name + this.
ANOTHER: str = getattr(sidebar, "ANOTHER", ":*")


def spec_key(source_name: str) -> str:
    return f"{source_name}_spec"  # a source's text box of any model name


def upload_key(source_name: str, option: str) -> str:
    return f"{source_name}_{option}"  # an upload source's option widget


def upload_request(upload: state.Upload, source: str, options: Mapping[str, str], device: str) -> state.ModelRequest:
    """The sidebar's request for a file uploaded to an upload source (one place to adapt when ModelRequest changes)."""
    from neuronviz.core.models.registry import list_sources

    fields = next((s.options for s in list_sources() if s.name == source), ())
    values = tuple((f.name, str(options.get(f.name, "") or "")) for f in fields)
    return state.ModelRequest(name=upload.name, upload=upload, source=source, options=values, device=device)


def _upload_types() -> list[str]:
    from neuronviz.core.models.registry import list_sources

    return sorted({suffix.lstrip(".") for s in list_sources() for suffix in s.upload_suffixes})


def weights_key(name: str) -> str:
    return f"weights:{name}"


def target_key(model_hash: str) -> str:
    return f"attack_target:{model_hash[:12]}"


def true_class_key(digest: str, classes: int) -> str:
    return f"image_true_class:{digest[:16]}:{classes}"


# -- the pages' controls (keys of app/app_pages/*, see their components.persist calls) ------------
def _registry_controls() -> dict[str, Control]:
    """The controls whose options are registries (defences, influence and attribution methods:
    plugins too), built on every call so that a plugin registered after the first run is offered:
    the Neurons page's Methods box (the analysis' extra restorations and its influence method,
    which every page showing the analysis uses), the condition its charts compare and the
    attribution method."""
    from neuronviz.methods.attribution import list_attributions

    extras = tuple(analysis.extra_choices())
    return {
        **library.method_controls(analysis.default_extras()),  # analysis.extra_defences, analysis.influence_method
        # the Neurons page's chart_conditions: the attack, the control and every restoration it may compare
        "neurons.after": Control("choice", "adversarial", options=("adversarial", analysis.CONTROL, *analysis.RESTORATIONS, *extras)),
        "neurons.attribution_method": Control("choice", "saliency", options=tuple(a.name for a in list_attributions())),
    }


#: Input channels a link may name for the Filters page's weights (a first layer with more is drawn
#: as the mean, or by choosing the channel on the page).
MAX_INPUT_CHANNELS = 256


def _controls() -> dict[str, Control]:
    table = {
        components.GROUP_FRACTION_KEY: Control("choice", DEFAULT_GROUP_FRACTION, options=tuple(components.GROUP_FRACTIONS)),
        "neurons.layer": Control("layer"),
        "neurons.tail_rule": Control("choice", "bottom", options=("bottom", "next")),
        "neurons.groups": Control("choice", "clean", options=("clean", "reference")),
        "neurons.attribution_adversarial": Control("bool", False),
        "sensitivity.layer": Control("layer"),
        "filters.attack": Control("choice", "fgsm", options=("fgsm", "sidebar")),
        "filters.beta": Control("float", 0.2, low=0.0, high=1.0),
        "filters.curve": Control("bool", True),
        "filters.show": Control("choice", "fragile and robust", options=("fragile and robust", "all")),
        # whose weights the filter grid draws: the mean over the input channels or one of them (the Filters
        # page checks the channel against the model: a link's channel 5 of an RGB model is a message)
        "filters.input_channel": Control("choice", "mean", options=("mean", *range(MAX_INPUT_CHANNELS))),
        "sensitivity.source": Control("choice", "image", options=("image", "set")),
        "batch.per_class_metric": Control("choice", "accuracy", options=("accuracy", "attack_success")),
        # Controls that change what a page computes or shows, found missing from links (the class of gap the
        # Neurons page's Methods box was): image counts (the pages keep a count in plain state, *_kept, that
        # survives other pages; Batch keeps its widget's), Population's layer ("all" or one), share and view,
        # the Defences page's adaptive attacker, Sensitivity's channels shown. The defaults are the pages'.
        "batch.n": Control("int", 50, low=1),
        "filters.images_kept": Control("int", 200, low=1),
        "sensitivity.images_kept": Control("int", 100, low=1),
        "sensitivity.top_k": Control("int", 4, low=1, high=8),
        "population.images_kept": Control("int", 100, low=1),
        "population.layer": Control("layer", options=("all",)),
        "population.fraction": Control("choice", 0.2, options=tuple(round(0.05 * i, 2) for i in range(1, 10))),
        "population.detail_layer": Control("layer"),
        "population.quantity": Control("choice", "activation", options=("activation", "influence")),
        "defences.adaptive": Control("bool", False),
        # the Attack page's ε-sweep slider (the budget whose image and numbers it shows); written only when it is
        # not the chosen budget; its widget key depends on the attack and the chosen budget (sweep_eps_key)
        SWEEP_EPS: Control("float", None, low=0.0),
    }
    table.update({key: control for key, control in page_controls.figure_controls().items() if key != components.GROUP_FRACTION_KEY})
    return table


SWEEP_EPS = "attack.sweep_eps"  # the link's key of the Attack page's ε-sweep slider


def sweep_eps_key(attack: str, chosen: float) -> str:
    """The session_state key of the Attack page's ε-sweep slider for this attack and chosen budget."""
    return f"attack.eps.{attack}.{chosen:.6g}"


def _sweep_slider(model) -> tuple[str, float] | None:
    """``(slider key, chosen budget)`` of the session's attack on ``model``; None for an attack
    without a budget, or whose parameters do not resolve."""
    from neuronviz.methods.attacks import get_attack

    choice = analysis.attack_choice(model)
    info = get_attack(choice.attack)
    if info.budget_param is None:
        return None
    try:
        chosen = float(choice.params(model)[info.budget_param])
    except (NeuronvizError, KeyError, TypeError, ValueError):
        return None
    return sweep_eps_key(info.name, chosen), chosen


CONTROLS: dict[str, Control] = {}
_DECLARED: dict[str, Control] = {}  # url_key declarations of the pages

CONTROLS_MODEL = "session.controls_model"  # content hash of the model the page controls were set for
SYNCED = "session.synced"  # session_state: the query has been read in this browser session
MESSAGES = "session.messages"  # the last link's / file's messages
PENDING = "session.pending"  # raw query values of controls no table knew yet (read by url_key)
RECORD = "session.record"  # the record written to the URL in this run
OPEN_KEY = "session.open"
_KEPT = components.KEPT_CONTROLS_KEY  # components.persist's store


def controls() -> dict[str, Control]:
    if not CONTROLS:
        CONTROLS.update(_controls())
    return {**CONTROLS, **_registry_controls(), **_DECLARED}


def url_key(key: str, default: Any, options: tuple = (), low: float | None = None, high: float | None = None) -> None:
    """Declare a page control ``key`` (a widget key) whose value travels in links and session
    files; call before drawing the widget. A value the link gave for it (kept since the first run)
    is put into session state now, or reported when it does not fit."""
    if key in controls():
        return
    if options:
        control = Control("choice", default, options=tuple(options))
    elif isinstance(default, bool):
        control = Control("bool", default)
    elif isinstance(default, int):
        control = Control("int", default, low=low, high=high)
    elif isinstance(default, float):
        control = Control("float", default, low=low, high=high)
    else:
        control = Control("choice", default, options=(default,)) if default is not None else Control("layer")
    _DECLARED[key] = control
    pending = st.session_state.get(PENDING, {})
    if key in pending:
        text = pending.pop(key)
        try:
            st.session_state[key] = control.parse(str(text))
        except NeuronvizError as error:
            st.warning(f"The link's {key}={text!r} was not used ({error}): using the page's default.", icon=":material/link_off:")


# -- reading a record into session state -------------------------------------------------------------


def _registry_request(record: SessionRecord, messages: list[str], what: str) -> tuple[state.ModelRequest, str, str | None]:
    """The request for a named model, the Model box's entry for it and the spec text box's value
    (for a model a source takes by name without listing it, e.g. any timm architecture)."""
    from neuronviz.core.models.registry import list_sources

    listed = {info.name: source for source in list_sources() for info in source.list_models()}
    name, entry, typed = record.model, record.model, None
    source = listed.get(name)
    if source is None:
        source = next((s for s in list_sources() if s.spec_field is not None and _owns(s, name)), None)
        if source is None:
            messages.append(f"The {what}'s model={name!r} is not a model of this server: using {state.DEFAULT_MODEL} instead.")
            name = entry = state.DEFAULT_MODEL
            source = listed.get(name)
        else:
            entry, typed = source.name + ANOTHER, name
    weights: str | None = "default"
    if record.weights == "random":
        if source is not None and source.offers_random:
            weights = None
        else:
            messages.append(f"The {what}'s weights=random is not offered for {name} (its weights are part of it): using them.")
    return state.ModelRequest(name=name, weights=weights), entry, typed


def _owns(source, spec: str) -> bool:
    try:
        return bool(source.owns(spec))
    except Exception:  # noqa: BLE001 - a source that cannot tell does not own it
        return False


def _source_label(name: str) -> str | None:
    """The Source box's entry of an upload source (its label), None when no such source is registered."""
    from neuronviz.core.models.registry import list_sources

    return next((s.label for s in list_sources() if s.name == name and s.upload_suffixes), None)


def _upload(name: str, digest: str) -> state.Upload | None:
    """The upload ``digest`` names, when the server holds its bytes; under the file's own name
    when this server has seen it (a link carries only the hash: ``upload 8b8360ca2a5b``)."""
    data = store.uploads().get(digest)
    return None if data is None else state.Upload(name=state.upload_name(digest, name), digest=digest, size=len(data))


def _device(record: SessionRecord, messages: list[str], what: str) -> str:
    devices = state.available_devices()
    device = record.device.split(":")[0]
    if device not in devices:
        messages.append(f"The {what}'s device={record.device} is not available on this server: using {state.default_device()} instead.")
        return state.default_device()
    return device


def apply(record: SessionRecord, what: str = "link") -> list[str]:
    """Put ``record`` into session state (before the sidebar draws: the first run, or a callback).
    Returns the messages about what could not be used."""
    from neuronviz.methods.influence import probe_layers

    messages: list[str] = []
    device = _device(record, messages, what)
    loaded = _load_model(record, messages, what, device)
    if loaded is None:
        return messages
    record, request, entry, typed, model = loaded
    st.session_state[state.GOOD_MODEL] = request  # the sidebar keeps it if its own request fails
    st.session_state[CONTROLS_MODEL] = model.content_hash  # the link's layers are this model's
    samples = state.samples_for(model)
    layers = [info.name for info in probe_layers(model)]
    record, found = library.check_for_model(record, model, [s.id for s in samples], layers, controls(), what=what)
    messages += found
    record = _check_compared(record, messages, what)
    _apply_model_picker(request, entry, typed, device)
    record = _apply_image_picker(record, model, samples, messages, what)
    _apply_attack(record, model)
    _apply_sweep_eps(record, model)
    # the Defences page's parameters (defence.<name>.<param>), validated by the defence's schema
    messages += _apply_defences(record.page, model, what)
    _apply_page_controls(record)
    return messages


def _check_compared(record: SessionRecord, messages: list[str], what: str) -> SessionRecord:
    """The Neurons page's compared condition must be one the analysis computes: a restoration the
    record does not also choose under Methods (``analysis.extra_defences``) is reported and dropped."""
    after = record.page.get("neurons.after")
    extras = record.page.get(analysis.EXTRA_DEFENCES_KEY, list(analysis.default_extras()))
    if after is None or after in ("adversarial", analysis.CONTROL, *analysis.RESTORATIONS, *extras):
        return record
    messages.append(
        f"The {what}'s neurons.after={after!r} was not used ({after} is not among the restorations it compares: add it "
        f"to analysis.extra_defences): using adversarial instead."
    )
    return record.replace(page={k: v for k, v in record.page.items() if k != "neurons.after"})


def _load_model(
    record: SessionRecord, messages: list[str], what: str, device: str
) -> tuple[SessionRecord, state.ModelRequest, str, str | None, PixelModel] | None:
    """The record's model (its checkpoint, or its registry entry), or the default model with a message
    when that cannot be loaded (the record then names the default model); None if neither loads.
    Returns the record, the request, the registry entry, the typed spec and the model."""
    request: state.ModelRequest | None = None
    entry, typed = state.DEFAULT_MODEL, None
    if record.weights == "checkpoint" and record.checkpoint_sha256 is not None:
        upload = _upload(record.model, record.checkpoint_sha256)
        label = _source_label(record.upload_source)
        if label is None:
            messages.append(f"The {what}'s model is a file for the model source {record.upload_source!r}, which this server lacks: "
                            f"using {state.DEFAULT_MODEL} instead.")
        elif upload is None:
            messages.append(
                f"The {what} uses the checkpoint {record.model} (sha256 {record.checkpoint_sha256}), which this server does "
                f"not have: supply that file (Open session, or Model → {label}). Using {state.DEFAULT_MODEL} meanwhile."
            )
        else:
            request = upload_request(upload, record.upload_source, record.options, device)
    if request is None:
        named, entry, typed = _registry_request(record if record.weights != "checkpoint" else SessionRecord(), messages, what)
        request = state.ModelRequest(name=named.name, weights=named.weights, device=device)
    try:
        model = state.load_checked_model(request)
    except NeuronvizError as error:
        messages.append(f"The {what}'s model {request.label} could not be loaded ({state.error_text(error)}): using {state.DEFAULT_MODEL} instead.")
        # The announced fallback is what the sidebar draws: its Model box names the default model
        # (not the entry that failed, which the sidebar would try again and fail on).
        request = state.ModelRequest(device=device)
        entry, typed = state.DEFAULT_MODEL, None
        record = record.replace(model=state.DEFAULT_MODEL, weights="default", checkpoint_sha256=None, options={})
        try:
            model = state.load_checked_model(request)
        except NeuronvizError as again:
            messages.append(f"The default model could not be loaded either: {state.error_text(again)}")
            return None
    return record, request, entry, typed, model


def _apply_model_picker(request: state.ModelRequest, entry: str, typed: str | None, device: str) -> None:
    """The sidebar's model picker: the uploaded file's source and options, or the registry entry."""
    if request.upload is not None:
        st.session_state[MODEL_SOURCE] = _source_label(request.source)
        for option, value in request.options:
            st.session_state[upload_key(request.source, option)] = value
        sidebar.remember_upload(request.source, request.upload)  # the source's uploader says it is in use
    else:
        st.session_state[MODEL_SOURCE] = sidebar.REGISTRY
        st.session_state[MODEL_NAME] = entry
        if typed is not None:
            st.session_state[spec_key(entry[: -len(ANOTHER)])] = typed
        st.session_state[weights_key(request.name)] = sidebar.PRETRAINED if request.weights is not None else sidebar.RANDOM
    st.session_state[DEVICE] = device


def _apply_image_picker(
    record: SessionRecord, model: PixelModel, samples: list[Sample], messages: list[str], what: str
) -> SessionRecord:
    """The sidebar's image picker: the uploaded image (if this server has it) or the record's sample.
    Returns the record, without its image when the uploaded file is missing."""
    if record.image_is_upload and record.image_sha256 is not None:
        image_upload = _upload(record.image or "image", record.image_sha256)
        if image_upload is None:
            messages.append(
                f"The {what} uses the image {record.image} (sha256 {record.image_sha256}), which this server does not have: "
                "supply that file (Open session, or Image → Upload). Using the model's default sample meanwhile."
            )
            record = record.replace(image=None, image_sha256=None)
        else:
            st.session_state[IMAGE_SOURCE] = sidebar.UPLOAD
            st.session_state[state.GOOD_IMAGE] = state.ImageRequest.for_upload(image_upload, true_class=record.true_class)
            if record.true_class is not None:
                st.session_state[true_class_key(image_upload.digest, model.num_classes)] = record.true_class
    if not record.image_is_upload:
        st.session_state[IMAGE_SOURCE] = sidebar.SAMPLE
        wanted = record.image or analysis.DEFAULT_SAMPLE_ID
        sample = next((s for s in samples if s.id == wanted), samples[0] if samples else None)
        if sample is not None:
            if sidebar.by_digit(samples):  # the sidebar's digit picker
                members = [s for s in samples if sidebar.digit_of(s) == sidebar.digit_of(sample)]
                st.session_state[SAMPLE_CLASS] = sidebar.digit_of(sample)
                st.session_state[SAMPLE_EXAMPLE] = members.index(sample)
                choices.remember(SAMPLE_EXAMPLE, members.index(sample))
            else:
                st.session_state[SAMPLE_ID] = sample.id
    return record


def _apply_attack(record: SessionRecord, model: PixelModel) -> None:
    """The attack: the session's choice, which the sidebar's form shows."""
    choice = analysis.AttackChoice.make(record.attack, dict(record.params), target=record.target, seed=record.seed)
    analysis.set_attack_choice(model, choice)
    actions.reset_attack_widgets(choice)
    st.session_state[sidebar.ATTACK_CHANNELS] = model.channels
    from neuronviz.methods.attacks import get_attack

    if get_attack(choice.attack).targeted:
        st.session_state[target_key(model.content_hash)] = sidebar.UNTARGETED if choice.target is None else choice.target


def _apply_sweep_eps(record: SessionRecord, model) -> None:
    """The ε-sweep slider's budget, under the slider's key for the record's attack (the Attack page
    says so when it is not one of the sweep's budgets, and shows the chosen one)."""
    if SWEEP_EPS not in record.page:
        return
    slider = _sweep_slider(model)
    if slider is not None:
        st.session_state[slider[0]] = float(record.page[SWEEP_EPS])
        st.session_state.setdefault(_KEPT, {})[slider[0]] = float(record.page[SWEEP_EPS])


def _apply_page_controls(record: SessionRecord) -> None:
    """The pages' controls: in session state, and where components.persist puts forgotten values back."""
    kept = st.session_state.setdefault(_KEPT, {})
    pending = st.session_state.setdefault(PENDING, {})
    known = controls()
    for key, value in record.page.items():
        if key.startswith(DEFENCE_PREFIX) or key == SWEEP_EPS:
            continue
        if key in known:
            st.session_state[key] = value
            kept[key] = value
        else:
            pending[key] = value


DEFENCE_PREFIX = "defence."  # query keys defence.<name>.<param>: the Defences page's applied parameters


def _applied_key(name: str, model) -> str:
    from app.app_pages import defences  # importing a page draws nothing (it renders as __main__ only)

    return defences.applied_key(name, model)


def _apply_defences(page: Mapping[str, Any], model, what: str) -> list[str]:
    from neuronviz.methods.defences import get_defence

    messages: list[str] = []
    given: dict[str, dict[str, Any]] = {}
    for key, text in page.items():
        if not key.startswith(DEFENCE_PREFIX):
            continue
        name, _, param_name = key[len(DEFENCE_PREFIX):].rpartition(".")
        try:
            defense = get_defence(name)
        except NeuronvizError:
            messages.append(f"The {what}'s {key} names no defence of this server: ignored.")
            continue
        param = next((p for p in defense.params if p.name == param_name), None)
        if param is None:
            messages.append(f"The {what}'s {key}: {name} has no parameter {param_name!r}; ignored.")
            continue
        try:
            given.setdefault(defense.name, {})[param.name] = library.parse_param(param, str(text))
        except NeuronvizError as error:
            messages.append(f"The {what}'s {key}={str(text)[:80]!r} was not used ({error}): using the defence's default.")
    for name, values in given.items():
        try:
            get_defence(name).resolve(values, model)
        except NeuronvizError as error:
            messages.append(f"The {what}'s parameters of {name} ({values}) do not fit {model.name}: {error}. Using its defaults.")
            continue
        st.session_state[_applied_key(name, model)] = values
    return messages


def _defence_page(model) -> dict[str, Any]:
    """The Defences page's applied parameters that differ from the defaults, as defence.<name>.<param>."""
    from neuronviz.methods.defences import list_defences

    page: dict[str, Any] = {}
    for defense in list_defences():
        values = st.session_state.get(_applied_key(defense.name, model)) or {}
        for param in defense.params:
            if param.name in values and not _same(values[param.name], param.default_for(model)):
                page[f"{DEFENCE_PREFIX}{defense.name}.{param.name}"] = values[param.name]
    return page


# -- the current state as a record ---------------------------------------------------------------------

_default_layers: dict[str, str] = {}


def _default_layer(model) -> str:
    from neuronviz.methods.influence import default_layer

    key = model.content_hash
    if key not in _default_layers:
        _default_layers[key] = default_layer(model)
    return _default_layers[key]


_layers_of: dict[str, frozenset[str]] = {}


def _layer_names(model) -> frozenset[str]:
    from neuronviz.methods.influence import probe_layers

    key = model.content_hash
    if key not in _layers_of:
        _layers_of[key] = frozenset(info.name for info in probe_layers(model))
    return _layers_of[key]


def model_owned_keys() -> list[str]:
    """The controls whose values belong to one model (its layers): dropped when the model changes."""
    return [key for key, control in controls().items() if control.kind == "layer"]


def forget_other_models_settings(model) -> list[str]:
    """When the session's model is not the one its page controls were set for, drop the settings
    that belong to a model (a layer of the ONNX upload is no layer of digits-cnn): from session
    state and from the values pages keep (components.persist), so that neither the link, the
    session file, the Figure page nor a reopening carries them. Returns the keys dropped."""
    previous = st.session_state.get(CONTROLS_MODEL)
    st.session_state[CONTROLS_MODEL] = model.content_hash
    if previous is None or previous == model.content_hash:
        return []
    kept = st.session_state.get(_KEPT, {})
    dropped = []
    for key in model_owned_keys():
        if key in st.session_state or key in kept:
            dropped.append(key)
        kept.pop(key, None)
        if key in st.session_state:
            del st.session_state[key]
    return dropped


def current_record(selection: state.Selection) -> SessionRecord:
    """The record of what the session shows now (after the sidebar has drawn)."""
    model = selection.model
    request = selection.model_request
    fields: dict[str, Any] = {"device": request.device, "model_hash": model.content_hash, "image_hash": analysis.content_key(selection.image)["tensor"]}
    if request.upload is not None:
        fields.update(model=request.upload.name, weights="checkpoint", checkpoint_sha256=request.upload.digest,
                      upload_source=request.source or "checkpoint", options={k: v for k, v in request.options if v})
    else:
        fields.update(model=request.name, weights="random" if request.weights is None else "default")
    image = selection.image_request
    if image.upload is not None:
        fields.update(image=image.upload.name, image_sha256=image.upload.digest, true_class=image.true_class)
    else:
        fields["image"] = None if image.sample_id == _default_sample(model) else image.sample_id
    choice = analysis.attack_choice(model)
    from neuronviz.methods.attacks import get_attack

    info = get_attack(choice.attack)
    defaults = {p.name: p.default_for(model) for p in info.params}
    fields.update(
        attack=choice.attack, target=choice.target, seed=int(choice.seed),
        params={k: v for k, v in choice.overrides if k in defaults and not _same(v, defaults[k])},
    )
    kept = st.session_state.get(_KEPT, {})
    defences, method = analysis.analysis_methods()  # the Methods box's values, kept while other pages run
    methods = {analysis.EXTRA_DEFENCES_KEY: [d for d in defences if d not in analysis.RESTORATIONS],
               analysis.INFLUENCE_METHOD_KEY: method}
    page: dict[str, Any] = {}
    for key, control in controls().items():
        value = methods[key] if key in methods else st.session_state[key] if key in st.session_state else kept.get(key)
        if value is None:
            continue
        if control.kind == "layer" and (value == _default_layer(model) or value not in (*_layer_names(model), *control.options)):
            continue  # the default, or another model's layer (it belongs to that model: not in this link)
        if control.kind == "multi" and isinstance(value, (list, tuple)):
            value = [v for v in control.options if v in value]
        page[key] = value
    page.update(_defence_page(model))
    slider = _sweep_slider(model)
    if slider is not None:
        shown = st.session_state[slider[0]] if slider[0] in st.session_state else kept.get(slider[0])
        if isinstance(shown, (int, float)) and not _same(float(shown), slider[1]):
            page[SWEEP_EPS] = float(shown)
    fields["page"] = page
    return SessionRecord(**fields)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(float(a) - float(b)) <= 1e-12 + 1e-9 * abs(float(b))
    return bool(a == b)


def _default_sample(model) -> str | None:
    samples = state.samples_for(model)
    ids = [s.id for s in samples]
    return analysis.DEFAULT_SAMPLE_ID if analysis.DEFAULT_SAMPLE_ID in ids else (ids[0] if ids else None)


def _defaults() -> SessionRecord:
    return SessionRecord(device=state.default_device())


def query_of(record: SessionRecord) -> dict[str, str]:
    """The link's query parameters of ``record`` (short: only what differs from the defaults)."""
    return record.to_query(controls(), defaults=_defaults())


# -- the expander: link, download, open -----------------------------------------------------------------


def _opened() -> None:
    """The Open session uploader's callback (runs before the sidebar draws): files named by the
    session go into the upload store by their SHA-256, then the session file is applied."""
    files = st.session_state.get(OPEN_KEY) or []
    messages: list[str] = []
    records = []
    for uploaded in files:
        data = uploaded.getvalue()
        if uploaded.name.lower().endswith(".json"):
            try:
                record, found = library.from_json(data, controls())
            except NeuronvizError as error:
                messages.append(f"{uploaded.name}: {error}.")
                continue
            records.append((uploaded.name, record))
            messages += found
        else:
            try:
                state.Upload.from_file(uploaded)  # into the store, by SHA-256
            except NeuronvizError as error:
                messages.append(f"{uploaded.name}: {error}.")
    if not records:
        if files:
            messages.append("No session file (.json) among the files: nothing was opened.")
        st.session_state[MESSAGES] = messages
        return
    name, record = records[-1]
    for digest, label in ((record.checkpoint_sha256, record.model), (record.image_sha256, record.image)):
        if digest is not None:
            matched = next((f for f in files if hashlib.sha256(f.getvalue()).hexdigest() == digest), None)
            if matched is not None and label != matched.name:
                record = record.replace(**({"model": matched.name} if digest == record.checkpoint_sha256 else {"image": matched.name}))
    messages += apply(record, what="session file")
    st.session_state[MESSAGES] = [f"Opened {name}.", *messages]


def _expander(selection: state.Selection | None, record: SessionRecord | None, query: dict[str, str]) -> None:
    with st.sidebar.expander("Session: link and file", icon=":material/link:"):
        if record is None or selection is None:
            st.caption("Nothing to save yet: no model and image are loaded.")
        else:
            from urllib.parse import urlencode

            text = urlencode(query)
            st.caption(
                "The address bar's link reopens this analysis on any server with the same model and image "
                + ("(its query: all defaults)." if not text else "; its query:")
            )
            if text:
                st.code("?" + text, language=None, wrap_lines=True)
            text_json, stem = session_file(selection, record)
            st.download_button(
                "Download session", text_json, f"{stem}.json", "application/json",
                icon=":material/download:", key="session.download", width="stretch",
                help="A JSON file with the model, weights, image (uploads by SHA-256), attack, target, seed, device and "
                "the pages' controls. Open it here or render it with python -m neuronviz figure --session FILE.",
            )
        st.file_uploader(
            "Open session", type=["json", *_upload_types(), *sidebar.IMAGE_TYPES], accept_multiple_files=True,
            key=OPEN_KEY, on_change=_opened,
            help="A session file (.json); add the checkpoint or image it names, if this server does not have them "
            "(they are matched by SHA-256).",
        )
        for message in st.session_state.get(MESSAGES, []):
            st.caption(message)


def session_file(selection: state.Selection, record: SessionRecord | None = None) -> tuple[str, str]:
    """``(JSON text, file stem)`` of the session file of what the session shows now."""
    record = record or current_record(selection)
    extra = {"resolved_params": _resolved(selection), "created_by": "neuronviz dashboard"}
    stem = f"neuronviz-session-{record.model}-{record.image or 'default'}".replace("/", "_").replace(" ", "_")
    return record.to_json(extra=extra), stem


def _resolved(selection: state.Selection) -> dict[str, Any]:
    try:
        return dict(analysis.attack_choice(selection.model).params(selection.model))
    except NeuronvizError:
        return {}


def sync(draw: Callable[[], tuple[state.Selection | None, list[str]]]) -> tuple[state.Selection | None, list[str]]:
    """Read the link on the session's first run, draw the sidebar (``draw``), write the link back.

    Returns what ``draw`` returns, the link's messages added to its error messages' place (they
    are shown as warnings above the page)."""
    messages: list[str] = []
    if not st.session_state.get(SYNCED):
        st.session_state[SYNCED] = True
        given = {key: st.query_params.get_all(key) for key in st.query_params}
        if given:
            try:
                linked, messages = library.from_query(given, controls())
                messages += apply(linked, what="link")
            except Exception as error:  # noqa: BLE001 - a link never breaks the page
                messages.append(f"The link could not be applied ({type(error).__name__}: {error}): using the defaults.")
            st.session_state[MESSAGES] = messages
    selection, errors = draw()
    record: SessionRecord | None = None
    query: dict[str, str] = {}
    try:
        if selection is not None:
            forget_other_models_settings(selection.model)
            record = current_record(selection)
            query = query_of(record)
            st.session_state[RECORD] = record
            current = {key: st.query_params.get(key) for key in st.query_params}
            if current != query:
                st.query_params.from_dict(query)
        _expander(selection, record, query)
    except Exception as error:  # noqa: BLE001 - the session controls never take the sidebar down
        errors = [*errors, f"The session link could not be updated ({type(error).__name__}: {error})."]
    for message in messages:
        st.warning(message, icon=":material/link_off:")
    with st.sidebar:
        st.html(REPLACE_QUERY_SCRIPT, unsafe_allow_javascript=True, width="content")
    return selection, errors


#: A query-only change replaces the browser's history entry instead of adding one (issue 24.4).
#: Streamlit 1.67 pushes a history entry for every change of ``st.query_params`` (its
#: ``page_info_changed`` message carries no "replace" flag); only widgets bound with
#: ``bind="query-params"`` update the address with ``replaceState``. The link here is computed
#: from the whole session (the attack choice, uploads by hash, every page's controls), not from
#: one widget each, so this script (run once per browser page, in the page itself through
#: ``st.html``) turns a ``pushState`` that keeps the path into a ``replaceState``: Back then goes
#: to the previous page in one press, while a page switch (a new path) is still an entry.
REPLACE_QUERY_SCRIPT = """<script>
(() => {
  if (window.__neuronvizReplaceQuery) return;
  window.__neuronvizReplaceQuery = true;
  const history = window.history;
  const push = history.pushState.bind(history);
  history.pushState = function (state, unused, url) {
    try {
      const next = new URL(url, window.location.href);
      if (next.pathname === window.location.pathname) return history.replaceState(state, unused, url);
    } catch (error) { /* not a URL: as Streamlit asked */ }
    return push(state, unused, url);
  };
})();
</script>"""
