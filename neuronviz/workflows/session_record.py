"""A dashboard session as data: what a link (URL query parameters) or a session file reopens.

:class:`SessionRecord` holds the sidebar's state (model spec, weights source, device, image,
attack with its parameters, target, seed) and the pages' own controls (``page``: session-state
key → value), with the content hashes that let a server check it reopens the same analysis:
the model's :attr:`~neuronviz.core.models.PixelModel.content_hash`, the SHA-256 of an uploaded
checkpoint's or image's bytes, the digest of the image's pixels.

- :meth:`SessionRecord.to_query` / :func:`from_query`: the short form for a link, only the
  values that differ from the defaults, so links stay short. ``from_query`` never raises on what
  a URL carries: an unknown or invalid value becomes a message naming the parameter and what was
  used instead, and that field keeps its default.
- :meth:`SessionRecord.to_json` / :func:`from_json`: the session file (everything, hashes too).
- :func:`check_for_model`: the checks that need the loaded model (an attack parameter out of
  this model's range, a target class it does not have, a sample it does not offer, a layer it
  does not have), each again a message and a default.
- The Figure page's controls and the figure spec they give are in :mod:`neuronviz.figures.page_controls`
  (a layer above: the figures draw what the workflows compute).

Page controls are described by :class:`Control` (a kind, its options or bounds, a default);
the dashboard owns the table of its pages' controls (``app/url_state.py``) and passes it in.
Hand-written: the query string format is this project's own; nothing in the field covers it.
Nothing here imports Streamlit.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from neuronviz.infra.errors import InputError, NeuronvizError
from neuronviz.infra.json_text import JSON_STRING, nesting_depth

__all__ = [
    "EXTRA_DEFENCES_KEY", "FORMAT", "INFLUENCE_METHOD_KEY", "MAX_SESSION_BYTES", "Control", "SessionRecord",
    "analysis_methods", "check_for_model", "from_json", "method_controls", "parse_param", "parse_session_text",
    "from_query", "parse_value",
]

#: The "format" field of a session file.
FORMAT = "neuronviz-session/1"
#: A session file larger than this is refused before it is parsed.
MAX_SESSION_BYTES = 1_000_000
#: Deepest nesting of arrays and objects a session file may have, checked before it is parsed
#: (the dashboard writes depth 3: the file, ``page``, a list value). Python's ``json`` recurses
#: once a level and raises RecursionError near 1,000.
MAX_SESSION_DEPTH = 16
#: Most values (object members and array items) in a session file, checked before it is parsed
#: (the dashboard writes about 60); each unknown one would be a message on the page.
MAX_SESSION_VALUES = 5_000
#: Query keys of the sidebar's fields; an attack parameter is given by its own name (``eps=0.2``).
FIELDS = ("model", "weights", "arch", "source", "device", "image", "true_class", "attack", "target", "seed")
WEIGHTS = ("default", "random", "checkpoint")
#: Query keys Streamlit itself uses (never reported as unknown).
STREAMLIT_KEYS = frozenset({"embed", "embed_options"})
LEAST_LIKELY = "least-likely"
SEED_MAX = 2**31 - 1


def _defaults() -> tuple[str, str, str]:
    from neuronviz.workflows.analysis import DEFAULT_ATTACK, DEFAULT_SAMPLE_ID

    return "digits-cnn", DEFAULT_SAMPLE_ID, DEFAULT_ATTACK


@dataclass(frozen=True)
class Control:
    """One page control a link may carry: ``kind`` is ``"choice"`` (one of ``options``),
    ``"multi"`` (a subset of ``options``, in their order), ``"float"``/``"int"`` (within
    ``low``..``high``), ``"bool"``, or ``"layer"`` (a probe layer name, checked against the model
    by :func:`check_for_model`; ``options`` of a layer control are further values it accepts,
    e.g. ``"all"``). ``default`` None: the page's own default (e.g. the model's default layer), so
    the value is always written."""

    kind: str
    default: Any = None
    options: tuple = ()
    low: float | None = None
    high: float | None = None
    label: str = ""

    def parse(self, text: str) -> Any:
        """The value of the query text ``text``. Raises InputError saying what is allowed."""
        if self.kind == "multi":
            items = [t for t in (s.strip() for s in text.split(",")) if t and t != "none"]
            parsed = [self._option(item) for item in items]
            return [o for o in self.options if o in parsed]
        if self.kind == "choice":
            return self._option(text)
        if self.kind == "layer":
            if not text.strip():
                raise InputError("an empty layer name")
            return text.strip()
        return parse_value(text, self.kind, self.low, self.high)

    def _option(self, text: str) -> Any:
        for option in self.options:
            if text == _text(option):
                return option
        raise InputError(f"{text!r} is not one of {', '.join(_text(o) for o in self.options)}")

    def format(self, value: Any) -> str:
        if self.kind == "multi":
            return ",".join(_text(v) for v in value) or "none"
        return _text(value)


#: The analysis' method choices (the Neurons page's Methods box): keys of a record's ``page``.
EXTRA_DEFENCES_KEY = "analysis.extra_defences"
INFLUENCE_METHOD_KEY = "analysis.influence_method"


def method_controls(default_extras: Sequence[str] = ()) -> dict[str, Control]:
    """The controls of the analysis' methods, from the registries (plugins too): the restorations
    compared besides NIP (guided) and PSSR (``default_extras`` by default) and the influence method."""
    from neuronviz.methods.defences import list_defences
    from neuronviz.methods.influence import list_influence_methods
    from neuronviz.workflows.analysis import DEFAULT_INFLUENCE_METHOD, RESTORATIONS

    extras = tuple(d.name for d in list_defences(include_none=False) if d.name not in RESTORATIONS)
    return {
        EXTRA_DEFENCES_KEY: Control("multi", list(default_extras), options=extras),
        INFLUENCE_METHOD_KEY: Control("choice", DEFAULT_INFLUENCE_METHOD, options=tuple(m.name for m in list_influence_methods())),
    }


def analysis_methods(page: Mapping[str, Any], default_extras: Sequence[str] = ()) -> tuple[tuple[str, ...], str]:
    """``(defences, influence method)`` a record's ``page`` chooses for its analysis (as the
    dashboard computes it: NIP (guided), PSSR and the extras; the default method when not given)."""
    from neuronviz.workflows.analysis import DEFAULT_INFLUENCE_METHOD, RESTORATIONS

    extras = page.get(EXTRA_DEFENCES_KEY, list(default_extras))
    extras = [extras] if isinstance(extras, str) else list(extras)
    return (*RESTORATIONS, *[e for e in extras if e not in RESTORATIONS]), str(page.get(INFLUENCE_METHOD_KEY) or DEFAULT_INFLUENCE_METHOD)


def parse_value(text: str, kind: str, low: float | None = None, high: float | None = None) -> Any:
    """``text`` as a ``kind`` ("float", "int", "bool") value within ``low``..``high``; a float may be
    written ``k/255``. Raises InputError saying what is allowed."""
    text = text.strip()
    if kind == "bool":
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise InputError(f"{text!r} is not true or false")
    try:
        if kind == "float" and "/" in text:
            top, _, bottom = text.partition("/")
            number = float(top) / float(bottom)
        else:
            number = float(text)
    except (ValueError, ZeroDivisionError):
        raise InputError(f"{text!r} is not a number") from None
    if not math.isfinite(number):
        raise InputError(f"{text!r} is not a finite number")
    value: float | int = number
    if kind == "int":
        if number != int(number):
            raise InputError(f"{text!r} is not a whole number")
        value = int(number)
    if low is not None and value < low or high is not None and value > high:
        raise InputError(f"{text} is outside {_range(low, high)}")
    return value


def _range(low: float | None, high: float | None) -> str:
    return f"{'−∞' if low is None else f'{low:g}'}..{'∞' if high is None else f'{high:g}'}"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


@dataclass(frozen=True)
class SessionRecord:
    """What reopens one analysis. ``model`` is a registered model's name, or the file name of an
    uploaded checkpoint (``weights="checkpoint"``, then ``checkpoint_sha256`` names its bytes and
    ``upload_source`` the model source that reads it, ``options`` that source's options, e.g.
    ``{"architecture": "digits-cnn"}``; a blank value = from the file). ``image`` is a sample id (None: the
    model's default sample), or the file name of an uploaded image (then ``image_sha256``; ``true_class`` the class the user
    gave it). ``params`` are the attack's parameters that differ from its defaults (a session
    file stores them all); ``target`` None (untargeted), a class index or ``"least-likely"``."""

    model: str = "digits-cnn"
    weights: str = "default"
    upload_source: str = "checkpoint"
    options: Mapping[str, str] = field(default_factory=dict)
    checkpoint_sha256: str | None = None
    model_hash: str | None = None
    device: str = "cpu"
    image: str | None = None  # None: the model's default sample
    image_sha256: str | None = None
    image_hash: str | None = None
    true_class: int | None = None
    attack: str = "pgd"
    params: Mapping[str, Any] = field(default_factory=dict)
    target: int | str | None = None
    seed: int = 0
    page: Mapping[str, Any] = field(default_factory=dict)

    @property
    def image_is_upload(self) -> bool:
        return self.image_sha256 is not None

    def replace(self, **changes: Any) -> SessionRecord:
        return dataclasses.replace(self, **changes)

    # -- the link ---------------------------------------------------------------------------------

    def to_query(self, controls: Mapping[str, Control] | None = None, defaults: SessionRecord | None = None) -> dict[str, str]:
        """The link's query parameters: only what differs from ``defaults`` (default: a fresh
        record; ``device`` compared with ``defaults.device``) and page controls that differ from
        their :class:`Control` default. Uploads travel by their SHA-256 (``checkpoint``, ``image``
        = ``sha256:<hex>``): a link can name them, a server that has the bytes opens them."""
        base = defaults or SessionRecord()
        query: dict[str, str] = {}
        if self.weights == "checkpoint":
            query["model"] = f"sha256:{self.checkpoint_sha256}"
            if self.upload_source != "checkpoint":
                query["source"] = self.upload_source
            for name, value in sorted(self.options.items()):
                if value:
                    query["arch" if name == "architecture" else f"opt.{name}"] = str(value)
        elif self.model != base.model:
            query["model"] = self.model
        if self.weights == "random":
            query["weights"] = "random"
        if self.device != base.device:
            query["device"] = self.device
        if self.image_is_upload:
            query["image"] = f"sha256:{self.image_sha256}"
            if self.true_class is not None:
                query["true_class"] = str(self.true_class)
        elif self.image is not None and self.image != base.image:
            query["image"] = self.image
        if self.attack != base.attack:
            query["attack"] = self.attack
        for name, value in sorted(self.params.items()):
            query[name] = _text(value)
        if self.target is not None:
            query["target"] = str(self.target)
        if self.seed != base.seed:
            query["seed"] = str(self.seed)
        for key, value in sorted(self.page.items()):
            control = (controls or {}).get(key)
            if control is not None and control.default is not None and _same(value, control.default):
                continue
            query[key] = control.format(value) if control is not None else _text(value)
        return query

    # -- the file ---------------------------------------------------------------------------------

    def to_json(self, extra: Mapping[str, Any] | None = None) -> str:
        """The session file: every field, ``format`` = :data:`FORMAT`, and ``extra`` (e.g. provenance)."""
        body = {"format": FORMAT, **dataclasses.asdict(self), **dict(extra or {})}
        body["params"] = dict(self.params)
        body["page"] = dict(self.page)
        body["options"] = dict(self.options)
        return json.dumps(body, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def _attack_params(attack: str) -> dict[str, Any]:
    from neuronviz.methods.attacks import get_attack

    return {p.name: p for p in get_attack(attack).params}


def _known_attack(name: str) -> str | None:
    from neuronviz.methods.attacks import get_attack

    try:
        return str(get_attack(name).name)
    except NeuronvizError:
        return None


def _parse_target(text: str) -> int | str | None:
    lowered = text.strip().lower()
    if lowered in ("", "none", "untargeted"):
        return None
    if lowered == LEAST_LIKELY:
        return LEAST_LIKELY
    value = parse_value(text, "int", 0, None)
    return int(value)


def parse_param(param: Any, text: str) -> Any:
    """A schema parameter's (:class:`neuronviz.infra.schema.Param`) value from query text. Raises
    InputError saying what is allowed (the range check against a model is the schema's)."""
    if param.kind == "layer":
        return text.strip()
    if param.kind == "choice":
        for option in param.choices:
            if text == _text(option):
                return option
        raise InputError(f"{text!r} is not one of {', '.join(_text(o) for o in param.choices)}")
    return parse_value(text, param.kind, param.low, param.high)


def _sha256(text: str) -> str | None:
    digest = text.strip().lower()
    if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
        return digest
    return None


@dataclass
class _Query:
    """A link's values (the last of repeated ones, each cut at 2000 characters) and the messages about them."""

    values: dict[str, str]
    messages: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, query: Mapping[str, Any]) -> _Query:
        values: dict[str, str] = {}
        for key, raw in query.items():
            if isinstance(raw, (list, tuple)):
                raw = raw[-1] if raw else ""
            values[str(key)] = str(raw)[:2000]
        return cls(values)

    def bad(self, key: str, problem: str, used: str) -> None:
        self.messages.append(f"The link's {key}={self.values[key][:80]!r} was not used ({problem}): using {used} instead.")


def from_query(query: Mapping[str, Any], controls: Mapping[str, Control] | None = None) -> tuple[SessionRecord, list[str]]:
    """The record a link's query parameters describe, and a message for every value that could
    not be used (naming the parameter and what is used instead). Never raises: anything a URL
    can carry gives a record. A value given twice uses the last one. Keys that are neither
    fields, the attack's parameters nor known ``controls`` are reported and ignored, except keys
    with a dot (another page's control: kept as text in ``page`` for the page to read)."""
    found = _Query.of(query)
    record = SessionRecord()
    changes: dict[str, Any] = {}
    changes.update(_model_fields(found, record))
    changes.update(_image_fields(found))
    attack_changes, attack, params = _attack_fields(found, record)
    changes.update(attack_changes)
    changes["page"] = _page_fields(found, attack, params, controls)
    try:
        record = dataclasses.replace(record, **changes)
    except Exception as error:  # noqa: BLE001 - never raise on a URL
        found.messages.append(f"The link could not be read ({error}): using the defaults.")
        record = SessionRecord()
    return record, found.messages


def _model_fields(found: _Query, record: SessionRecord) -> dict[str, Any]:
    """``model`` (a name, or ``sha256:`` of an uploaded checkpoint with its ``opt.*`` options,
    ``arch`` and ``source``), ``weights`` and ``device``."""
    values, bad = found.values, found.bad
    changes: dict[str, Any] = {}
    model = values.get("model")
    if model is not None:
        if model.lower().startswith("sha256:"):
            digest = _sha256(model[7:])
            if digest is None:
                bad("model", "sha256: needs 64 hexadecimal digits", f"the default model {record.model}")
            else:
                options = {key[4:]: text for key, text in values.items() if key.startswith("opt.") and text}
                if values.get("arch"):
                    options["architecture"] = values["arch"]
                changes.update(model=f"upload {digest[:12]}", weights="checkpoint", checkpoint_sha256=digest, options=options,
                               upload_source=(values.get("source") or "checkpoint").strip())
        elif model.strip():
            changes["model"] = bounded_model_spec(model.strip(), found.messages)  # 24.21: a bad option is dropped, not the link
        else:
            bad("model", "an empty name", f"the default model {record.model}")
    if "weights" in values and changes.get("weights") != "checkpoint":
        weights = values["weights"].strip().lower()
        if weights in ("default", "pretrained"):
            changes["weights"] = "default"
        elif weights == "random":
            changes["weights"] = "random"
        else:
            bad("weights", "it is pretrained or random", "the model's default weights")
    if "device" in values:
        device = values["device"].strip().lower()
        if device == "cpu" or device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
            changes["device"] = device
        else:
            bad("device", "it is cpu or cuda", "this server's default device")
    return changes


def _image_fields(found: _Query) -> dict[str, Any]:
    """``image`` (a sample id, or ``sha256:`` of an uploaded image) and ``true_class``."""
    values, bad = found.values, found.bad
    changes: dict[str, Any] = {}
    image = values.get("image")
    if image is not None:
        if image.lower().startswith("sha256:"):
            digest = _sha256(image[7:])
            if digest is None:
                bad("image", "sha256: needs 64 hexadecimal digits", "the model's default sample")
            else:
                changes.update(image=f"image {digest[:12]}", image_sha256=digest)
        elif image.strip():
            changes["image"] = image.strip()
        else:
            bad("image", "an empty sample id", "the model's default sample")
    if "true_class" in values:
        try:
            changes["true_class"] = int(parse_value(values["true_class"], "int", 0, None))
        except InputError as error:
            bad("true_class", str(error), "unknown")
    return changes


def _attack_fields(found: _Query, record: SessionRecord) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """``attack``, its parameters (by their own names), ``target`` and ``seed``; with the attack
    used and its parameter schema (the page controls are told apart from them)."""
    values, bad = found.values, found.bad
    changes: dict[str, Any] = {}
    attack = record.attack
    if "attack" in values:
        known = _known_attack(values["attack"].strip())
        if known is None:
            bad("attack", "no such attack on this server", f"the default attack {record.attack}")
        else:
            attack = changes["attack"] = known
    params = _attack_params(attack)
    chosen: dict[str, Any] = {}
    for name, param in params.items():
        if name in values:
            try:
                chosen[name] = parse_param(param, values[name])
            except InputError as error:
                bad(name, f"{attack}'s {name}: {error}", "the attack's default")
    changes["params"] = chosen
    if "target" in values:
        try:
            changes["target"] = _parse_target(values["target"])
        except InputError as error:
            bad("target", f"{error}; it is a class index, least-likely or none", "untargeted")
    if "seed" in values:
        try:
            changes["seed"] = int(parse_value(values["seed"], "int", 0, SEED_MAX))
        except InputError as error:
            bad("seed", str(error), f"seed {record.seed}")
    return changes, attack, params


def _page_fields(found: _Query, attack: str, params: Mapping[str, Any], controls: Mapping[str, Control] | None) -> dict[str, Any]:
    """The pages' controls: known ``controls`` parsed, unknown keys with a dot kept as text (another
    page's control), anything else reported."""
    page: dict[str, Any] = {}
    for key, text in found.values.items():
        if key in FIELDS or key in params or key.startswith("opt.") or key in STREAMLIT_KEYS:
            continue
        control = (controls or {}).get(key)
        if control is None:
            if "." in key:
                page[key] = text  # a control this table does not know: the page that declares it reads it
            else:
                found.messages.append(f"The link's parameter {key!r} is not known here (not a parameter of {attack}): ignored.")
            continue
        try:
            page[key] = control.parse(text)
        except InputError as error:
            default = "the page's default" if control.default is None else control.format(control.default)
            found.bad(key, str(error), default)
    return page


def from_json(text: str | bytes, controls: Mapping[str, Control] | None = None) -> tuple[SessionRecord, list[str]]:
    """A session file's record and the messages about values that could not be used.

    Raises InputError when ``text`` is not a session file at all (too large, not JSON, not an
    object, another ``format``); each field is then checked as a link's value is."""
    body = parse_session_text(text)
    if not isinstance(body, dict):
        raise InputError("this is not a session file (not a JSON object)")
    if body.get("format") != FORMAT:
        raise InputError(f"this is not a session file (format {body.get('format')!r}, expected {FORMAT!r})")
    messages: list[str] = []
    query: dict[str, str] = {}
    for key, name in (("model", "model"), ("device", "device"), ("image", "image"), ("attack", "attack"), ("seed", "seed")):
        if body.get(name) is not None:
            query[key] = _text(body[name])
    weights = body.get("weights")
    if weights == "checkpoint":
        if not isinstance(body.get("checkpoint_sha256"), str):
            raise InputError("the session names an uploaded checkpoint but no checkpoint_sha256")
        query["model"] = f"sha256:{body['checkpoint_sha256']}"
        if body.get("upload_source"):
            query["source"] = str(body["upload_source"])
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise InputError("this is not a session file (options must be an object)")
        for name, value in options.items():
            if value:
                query[f"opt.{name}"] = str(value)
    elif weights is not None:
        query["weights"] = str(weights)
    if body.get("image_sha256") is not None:
        query["image"] = f"sha256:{body['image_sha256']}"
    if body.get("true_class") is not None:
        query["true_class"] = _text(body["true_class"])
    if body.get("target") is not None:
        query["target"] = _text(body["target"])
    params = body.get("params") or {}
    page = body.get("page") or {}
    if not isinstance(params, dict) or not isinstance(page, dict):
        raise InputError("this is not a session file (params and page must be objects)")
    for name, value in params.items():
        query[str(name)] = _text(value)
    for key, value in page.items():
        control = (controls or {}).get(str(key))
        query[str(key)] = control.format(value) if control is not None and _formattable(control, value) else _text(value)
    record, found = from_query(query, controls)
    messages += [m.replace("The link's", "The session file's") for m in found]
    names = {"model": body.get("model"), "image": body.get("image")}
    keep: dict[str, Any] = {}
    if record.weights == "checkpoint" and isinstance(names["model"], str):
        keep["model"] = names["model"]
    if record.image_is_upload and isinstance(names["image"], str):
        keep["image"] = names["image"]
    for name in ("model_hash", "image_hash"):
        if isinstance(body.get(name), str):
            keep[name] = body[name]
    return record.replace(**keep), messages


def bounded_model_spec(spec: str, messages: list[str]) -> str:
    """``spec`` without the model options that are out of bounds (issue 24.21: a ``timm:`` spec's
    keyword arguments, :func:`neuronviz.core.models.timm_source.drop_bad_options`); a message is added to
    ``messages`` for each dropped option. Other specs are returned as they are."""
    if not spec.startswith("timm:") or "?" not in spec:
        return spec
    from neuronviz.core.models.timm_source import drop_bad_options

    kept, dropped = drop_bad_options(spec)
    messages += [m.replace("The model option", "The link's model option") for m in dropped]
    return kept




def parse_session_text(text: str | bytes) -> Any:
    """The JSON value of a session file, after its size, encoding, nesting depth and value count
    are checked **before** ``json`` parses it (:data:`MAX_SESSION_BYTES`, :data:`MAX_SESSION_DEPTH`,
    :data:`MAX_SESSION_VALUES`). Every refusal is an :class:`InputError` saying "session file" and
    what is wrong (never a RecursionError, never a path of the server)."""
    if not isinstance(text, (str, bytes, bytearray, memoryview)):
        raise InputError(f"a session file is text or bytes, got {type(text).__name__}")
    # a str has at least as many bytes as characters: its length refuses most before encoding it
    size = len(text) if len(text) > MAX_SESSION_BYTES or not isinstance(text, str) else len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_SESSION_BYTES:
        raise InputError(f"a session file is at most {MAX_SESSION_BYTES // 1000} kB, this one has {size // 1000:,} kB")
    if not isinstance(text, str):
        try:
            text = bytes(text).decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise InputError(f"this is not a session file (not UTF-8 text: byte {error.start} cannot be decoded)") from None
    structure = JSON_STRING.sub('""', text)  # what is left are brackets, numbers and literals
    depth = nesting_depth(structure)
    if depth > MAX_SESSION_DEPTH:
        raise InputError(
            f"this is not a session file: it nests {depth:,} levels deep; a session file nests at most "
            f"{MAX_SESSION_DEPTH} (the dashboard writes 3). Nothing was parsed."
        )
    values = structure.count(",") + structure.count(":")
    if values > MAX_SESSION_VALUES:
        raise InputError(
            f"this is not a session file: it holds about {values:,} values; a session file holds at most "
            f"{MAX_SESSION_VALUES:,}. Nothing was parsed."
        )

    def refuse_constant(name: str) -> Any:
        raise InputError(f"this is not a session file ({name} is not a JSON number)")

    try:
        return json.loads(text, parse_constant=refuse_constant)
    except json.JSONDecodeError as error:
        raise InputError(f"this is not a session file (not JSON: {error.msg}, line {error.lineno} column {error.colno})") from None
    except (ValueError, RecursionError) as error:  # e.g. an integer of more than 4,300 digits
        if isinstance(error, InputError):
            raise
        raise InputError(f"this is not a session file (not JSON: {str(error)[:200]})") from None


def _formattable(control: Control, value: Any) -> bool:
    if control.kind == "multi":
        return isinstance(value, (list, tuple))
    return True


# -- checks against the loaded model --------------------------------------------------------------


def check_for_model(
    record: SessionRecord,
    model: Any,
    sample_ids: Sequence[str] | None = None,
    layers: Sequence[str] | None = None,
    controls: Mapping[str, Control] | None = None,
    what: str = "link",
) -> tuple[SessionRecord, list[str]]:
    """``record`` with what ``model`` cannot use replaced by defaults, and a message for each:
    attack parameters outside this model's range (all of them then go back to the attack's
    defaults), a target class the model does not have, a sample id it does not offer
    (``sample_ids``; the first is the default), a true class out of range, a layer control
    naming a layer it does not have (``layers``). Never raises for the record's values."""
    from neuronviz.methods.attacks import get_attack, resolve_params

    messages: list[str] = []
    changes: dict[str, Any] = {}
    info = get_attack(record.attack)
    try:
        resolve_params(info, dict(record.params), model)
    except NeuronvizError as error:
        given = ", ".join(f"{k}={_text(v)}" for k, v in record.params.items())
        messages.append(f"The {what}'s attack parameters ({given}) do not fit {model.name}: {error}. Using {info.label}'s defaults.")
        changes["params"] = {}
    target = record.target
    if target is not None and not info.targeted:
        messages.append(f"The {what}'s target={target} was not used: {info.label} has no targeted mode. Using untargeted.")
        changes["target"] = None
    elif isinstance(target, int) and not 0 <= target < model.num_classes:
        messages.append(f"The {what}'s target={target} was not used: {model.name} has classes 0..{model.num_classes - 1}. Using untargeted.")
        changes["target"] = None
    if record.true_class is not None and not 0 <= record.true_class < model.num_classes:
        messages.append(f"The {what}'s true_class={record.true_class} was not used: {model.name} has classes 0..{model.num_classes - 1}. Using unknown.")
        changes["true_class"] = None
    if sample_ids is not None and not record.image_is_upload and record.image is not None and record.image not in sample_ids:
        default = _default_sample(sample_ids)
        messages.append(f"The {what}'s image={record.image!r} is not a sample of {model.name}: using {default} instead.")
        changes["image"] = default
    if layers is not None:
        page = dict(record.page)
        for key, value in record.page.items():
            control = (controls or {}).get(key)
            if control is not None and control.kind == "layer" and value not in layers and value not in control.options:
                messages.append(f"The {what}'s {key}={value!r} is not a layer of {model.name}: using its default layer instead.")
                del page[key]
        changes["page"] = page
    return record.replace(**changes), messages


def _default_sample(sample_ids: Sequence[str]) -> str:
    _, sample, _ = _defaults()
    return sample if sample in sample_ids else (sample_ids[0] if sample_ids else sample)
