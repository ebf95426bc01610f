"""The attack registry: one :class:`AttackInfo` entry per attack carries every fact about it.

An entry says what the attack is (name, label, short label, paper, description, family), what it
takes (its parameter schema, whose names are the torchattacks constructor keywords, so the class
is called as ``cls(model, **params)``), what it can do (torchattacks' own ``supported_mode``),
what bounds it (``norm``, ``budget_param``, or the norm it minimises), how much it costs and
when it draws random numbers. What sets an attack apart from the generic run is an attribute or
a hook of its entry (``needs_rgb``, ``check``, ``untargeted_target``, ``cost``, ``named``,
``trace_unit``), never a branch on its name in :mod:`neuronviz.methods.attacks.runner`.

Entries are registered next to their definition (``register_attack(AttackInfo(...))``, in the
spirit of timm's ``register_model``): the built-in catalogue in
:mod:`neuronviz.methods.attacks.catalogue`, a third-party attack in its own module loaded as a plugin
(:mod:`neuronviz.infra.plugins`, docs/architecture.md "A new attack").
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from neuronviz.core.models.pixel import PixelModel
from neuronviz.infra.errors import InputError
from neuronviz.infra.schema import Param, resolve

#: The modes of torchattacks' ``Attack.supported_mode`` an entry may declare.
MODES = ("default", "targeted")
#: When an attack draws random numbers (see :attr:`AttackInfo.randomness`).
RANDOMNESS = ("none", "start", "steps")
#: What one trace entry is (see :attr:`AttackInfo.trace_unit`); None: no trace.
TRACE_UNITS = ("step", "forward pass")
#: Constructor keywords the runner supplies itself (see :attr:`AttackInfo.context`).
CONTEXT = ("seed", "n_classes")

Cost = Callable[[Mapping[str, Any], int], float]


def one_pass(params: Mapping[str, Any], classes: int) -> float:
    """The cost of an attack that evaluates the model once per image."""
    return 1.0


def model_int(model: nn.Module, name: str) -> int:
    """``model.channels`` or ``model.num_classes`` of the (possibly wrapped) model an attack is given:
    a :class:`PixelModel`, or a module in front of one that copies these two facts."""
    return int(getattr(model, name))


@dataclass(frozen=True, kw_only=True)
class AttackInfo:
    """A registered attack: every fact about it, and how it is built.

    Required: ``name`` (lower case, digits, ``-``/``_``: what the CLI and URLs write), ``label``
    (the sidebar's words), ``short_label`` (a table column's words), ``family``, ``norm``
    (``"Linf"``, ``"L2"``, ``"L0"`` or None when there is no fixed budget), ``params`` (the
    schema; each name is a keyword of ``cls``), ``paper``, ``description`` and ``cls``.
    """

    name: str
    label: str
    short_label: str
    family: str  # "gradient", "optimisation", "score", "ensemble", "none"
    norm: str | None
    params: tuple[Param, ...]
    paper: str
    description: str
    #: A torchattacks class name (``"PGD"``: looked up in torchattacks when first run, so listing
    #: the catalogue imports nothing), or a class or factory with torchattacks' ``Attack``
    #: interface. Called as ``cls(model, **params, **context)``.
    cls: str | Callable[..., Any]
    #: torchattacks' ``supported_mode`` of the class: ``("default",)`` or ``("default", "targeted")``.
    supported_mode: tuple[str, ...] = ("default",)
    #: The parameter that bounds the perturbation's norm (swept by :mod:`neuronviz.workflows.sweep`).
    budget_param: str | None = None
    #: The norm an attack without a fixed budget makes small (C&W, DeepFool: ``"L2"``).
    minimised_norm: str | None = None
    #: Constructor keywords outside the schema that the runner fills in: ``"seed"`` (the request's
    #: seed) and ``"n_classes"`` (the model's class count).
    context: tuple[str, ...] = ()
    #: Model evaluations per image at most, ``cost(params, classes)``: the unit of MAX_WORK.
    cost: Cost = one_pass
    #: Evaluations per image at least, for attacks that stop early on an image they fooled; None: ``cost``.
    cost_low: Cost | None = None
    #: One trace entry per iteration (``"step"``: one full-batch forward pass per step), per
    #: ``"forward pass"``, or None: the attack keeps no trace (no attack at all).
    trace_unit: str | None = "forward pass"
    #: When the attack draws random numbers (checked against the torchattacks 3.5.1 source and by
    #: tests/test_rng_isolation.py): "none" (never: no lock at all), "start" (only before its first
    #: gradient pass), "steps" (throughout). Unknown attacks should say "steps", the safe choice.
    randomness: str = "steps"
    #: A boolean parameter that, when false, turns all randomness off (PGD's ``random_start``).
    random_switch: str | None = None
    #: The class assumes 3 input channels (TI-FGSM's ``groups=3`` kernel): a 1-channel model is
    #: attacked through 3 identical channels whose mean it sees (:class:`OnGrayAsRGB`).
    needs_rgb: bool = False
    #: Hook: checks of the resolved parameters beyond each one's range; raises InputError.
    check: Callable[[Mapping[str, Any]], None] | None = None
    #: Hook for attacks targeted by nature: the targets of an untargeted request,
    #: ``untargeted_target(labels, classes)`` (JSMA aims at label + 1 mod K).
    untargeted_target: Callable[[Tensor, int], Tensor] | None = None
    #: Hook: the name of one configuration in a results table (default :meth:`run_name`'s rule).
    named: Callable[[Mapping[str, Any]], str] | None = None

    @property
    def targeted(self) -> bool:
        """Whether the attack has a targeted mode (torchattacks' ``supported_mode``)."""
        return "targeted" in self.supported_mode

    @property
    def per_step_trace(self) -> bool:
        return self.trace_unit == "step"

    def draws(self, params: Mapping[str, Any]) -> str:
        """``"none"``, ``"start"`` or ``"steps"``: when this attack draws random numbers with these parameters."""
        if self.random_switch is not None and not params.get(self.random_switch, True):
            return "none"
        return self.randomness

    def param(self, name: str) -> Param:
        for param in self.params:
            if param.name == name:
                return param
        raise InputError(f"{self.name} has no parameter {name!r}; it has {[p.name for p in self.params]}")

    def defaults(self, model: PixelModel | None = None) -> dict[str, Any]:
        return {p.name: p.default_for(model) for p in self.params}

    def resolve(self, params: Mapping[str, Any] | None, model: PixelModel | None = None) -> dict[str, Any]:
        """The defaults for this model, overridden by ``params``, each validated (and the entry's ``check``)."""
        resolved = resolve(self.params, params, model, self.name)
        if self.check is not None:
            self.check(resolved)
        return resolved

    def attack_class(self) -> Callable[..., Any]:
        """The class (or factory) :meth:`build` calls."""
        if not isinstance(self.cls, str):
            return self.cls
        import torchattacks

        return getattr(torchattacks, self.cls)  # type: ignore[no-any-return]

    def build(self, model: nn.Module, params: Mapping[str, Any], seed: int) -> Any:
        """The torchattacks object for ``model`` (a PixelModel or a module copying its
        ``channels``/``num_classes``): ``cls(model, **params, **context)``."""
        cls = self.attack_class()
        supplied = {"seed": int(seed), "n_classes": model_int(model, "num_classes")}
        keywords = {**dict(params), **{key: supplied[key] for key in self.context}}
        if self.needs_rgb and model_int(model, "channels") == 1:
            return OnGrayAsRGB(lambda rgb: cls(rgb, **keywords), model)
        return cls(model, **keywords)

    def run_name(self, params: Mapping[str, Any]) -> str:
        """One configuration's name in a table: ``named(params)``, else the label with the step
        count (``PGD-20 (L∞)``) when the attack has steps, else the label."""
        if self.named is not None:
            return self.named(params)
        if "steps" in params:
            head, sep, tail = self.label.partition(" (")
            return f"{head}-{params['steps']}{sep}{tail}"
        return self.label


class MeanOfChannels(nn.Module):
    """Lets a 1-channel model take a 3-channel image whose channels are copies of one another."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.model(x.mean(dim=1, keepdim=True))
        return out


class OnGrayAsRGB:
    """Runs a torchattacks attack that assumes 3 channels on a 1-channel model.

    The image is repeated into 3 identical channels and the model sees their mean: every channel
    then gets the same gradient and the same kernel, so the channels stay identical and channel 0
    is exactly the attack on the 1-channel image (TI-FGSM: no random start is involved).
    """

    def __init__(self, make: Callable[[nn.Module], Any], model: nn.Module) -> None:
        self.attack = make(MeanOfChannels(model))

    def set_mode_targeted_by_label(self, quiet: bool = False) -> None:
        self.attack.set_mode_targeted_by_label(quiet=quiet)

    def __call__(self, x: Tensor, labels: Tensor) -> Tensor:
        out: Tensor = self.attack(x.repeat(1, 3, 1, 1), labels)
        return out[:, :1]


# -- the registry ----------------------------------------------------------------------------------

ATTACKS: dict[str, AttackInfo] = {}
_lock = threading.Lock()
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
#: Other spellings people use (after lower-casing and dropping "-", "_" and spaces).
ALIASES = {"ifgsm": "bim", "pgdlinf": "pgd", "cwl2": "cw", "vanila": "none", "identity": "none"}


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "").replace(" ", "")


def _check_entry(info: AttackInfo) -> None:
    """Refuse an entry whose facts contradict each other (a plugin's mistake, named)."""
    where = f"attack {info.name!r}"
    if not isinstance(info.name, str) or not _NAME.fullmatch(info.name):
        raise InputError(f"attack name {info.name!r}: use lower-case letters, digits, '-' and '_' (it is written in the CLI and URLs)")
    names = [p.name for p in info.params]
    if len(set(names)) != len(names):
        raise InputError(f"{where} lists a parameter twice: {names}")
    if not set(info.supported_mode) <= set(MODES) or "default" not in info.supported_mode:
        raise InputError(f"{where}: supported_mode must be ('default',) or ('default', 'targeted'), got {info.supported_mode!r}")
    if info.budget_param is not None and info.budget_param not in names:
        raise InputError(f"{where}: budget_param {info.budget_param!r} is not one of its parameters {names}")
    if info.random_switch is not None and info.random_switch not in names:
        raise InputError(f"{where}: random_switch {info.random_switch!r} is not one of its parameters {names}")
    if info.randomness not in RANDOMNESS:
        raise InputError(f"{where}: randomness must be one of {list(RANDOMNESS)}, got {info.randomness!r}")
    if info.trace_unit is not None and info.trace_unit not in TRACE_UNITS:
        raise InputError(f"{where}: trace_unit must be one of {list(TRACE_UNITS)} or None, got {info.trace_unit!r}")
    extra = set(info.context) - set(CONTEXT)
    if extra or set(info.context) & set(names):
        raise InputError(f"{where}: context may name only {list(CONTEXT)}, and none of its parameters; got {info.context!r}")


def register_attack(info: AttackInfo) -> AttackInfo:
    """Add an attack to the catalogue (the sidebar, the pages and the CLI list it from here).

    Raises:
        InputError: the name (or a spelling of it) is taken, or the entry contradicts itself
            (a budget or switch parameter it does not have, an unknown mode...).
    """
    _check_entry(info)
    with _lock:
        clash = [name for name in ATTACKS if _key(name) == _key(info.name)] + [a for a in ALIASES if a == _key(info.name)]
        if clash:
            raise InputError(f"attack {info.name!r} is already registered (as {clash[0]!r})")
        ATTACKS[info.name] = info
    return info


def unregister_attack(name: str) -> AttackInfo:
    """Remove a registered attack (a plugin reloaded in a notebook, a test's clean-up)."""
    info = get_attack(name)
    with _lock:
        del ATTACKS[info.name]
    return info


def list_attacks() -> list[AttackInfo]:
    """Every registered attack, in catalogue order (none first, plugins last)."""
    return list(ATTACKS.values())


def get_attack(name: str) -> AttackInfo:
    """The entry named ``name``, spelt as registered or in any case, with or without ``-``/``_``
    (``"PGD"``, ``"i-fgsm"``, ``"cw_l2"``).

    Raises:
        InputError: no such attack (the message lists the registered ones).
    """
    if isinstance(name, str):
        if name in ATTACKS:
            return ATTACKS[name]
        key = ALIASES.get(_key(name), _key(name))
        for registered, info in list(ATTACKS.items()):
            if _key(registered) == key:
                return info
    raise InputError(f"unknown attack {name!r}; registered: {list(ATTACKS)}")
