"""The dashboard's analysis runs: the session's attack choice and methods, and the cached analysis.

The story itself (:class:`AttackChoice`, :class:`Analysis`, :func:`compute_analysis`,
:func:`content_key`, :func:`digest`) lives in :mod:`neuronviz.workflows.analysis`, so a notebook and the CLI
get the same numbers without Streamlit; it is re-exported here for the pages.

- :class:`AttackChoice` is what the sidebar's attack form submitted (attack, parameter
  overrides, target, seed); :func:`attack_choice` returns the session's current one.
- :func:`analysis_methods` / :func:`method_controls`: the restorations compared and the influence
  method (every registered one), one choice per session shared by every page.
- :func:`full_analysis` is one image's whole story under one attack choice: the attack, the
  restorations, and the neuron influence of every probe layer for the clean, adversarial and
  restored images, all toward the benign (clean) prediction, in one forward and one backward pass.

The jobs around it have modules of their own: the result cache (:mod:`app.result_cache`), background
runs with Cancel and the time budget (:mod:`app.background`), errors to messages (:mod:`app.messages`).
Their functions are re-exported here for the pages that still call them as ``runs.memo`` etc.
"""

from __future__ import annotations

import streamlit as st
import torch

from app.background import POLL_SECONDS, run_limited  # noqa: F401 - re-exported for the pages
from app.messages import attempt, error_message, show_error  # noqa: F401 - re-exported for the pages
from app.result_cache import SESSION_BYTES, SESSION_ENTRIES, clear_caches, memo  # noqa: F401 - re-exported for the pages
from neuronviz.core.models import PixelModel
from neuronviz.methods.defences import get_defence, list_defences
from neuronviz.methods.influence import get_influence_method, list_influence_methods
from neuronviz.workflows.analysis import (  # noqa: F401 - the story lives in the library; pages reach it through here
    CONDITION_LABELS,
    CONDITIONS,
    CONTROL,
    DEFAULT_ATTACK,
    DEFAULT_INFLUENCE_METHOD,
    DEFAULT_OVERRIDES,
    DEFAULT_SAMPLE_ID,
    RESTORATIONS,
    Analysis,
    AttackChoice,
    compute_analysis,
    content_key,
    default_choice,
    digest,
)

_CHOICE = "analysis.attack_choice"  # session_state key prefix (one choice per input channel count)


# -- the attack choice -----------------------------------------------------------------------------


def attack_choice(model: PixelModel) -> AttackChoice:
    """The session's submitted attack choice for models with this many input channels."""
    return st.session_state.get(f"{_CHOICE}.{model.channels}", default_choice())


def set_attack_choice(model: PixelModel, choice: AttackChoice) -> None:
    st.session_state[f"{_CHOICE}.{model.channels}"] = choice


# -- the analysis of one image ---------------------------------------------------------------------


#: session_state keys of the analysis' methods (shared by every page that shows the analysis): the
#: restorations compared besides NIP (guided) and PSSR (which the pages always show), the influence method
EXTRA_DEFENCES_KEY = "analysis.extra_defences"
INFLUENCE_METHOD_KEY = "analysis.influence_method"


def extra_choices() -> list[str]:
    """Every registered defence that restores (all but "none") besides :data:`RESTORATIONS`."""
    return [d.name for d in list_defences(include_none=False) if d.name not in RESTORATIONS]


def default_extras() -> tuple[str, ...]:
    """The further restorations an analysis starts with: every defence a plugin registered (its
    class defined outside ``neuronviz``), so a plugin defence is compared without a click."""
    return tuple(name for name in extra_choices() if not type(get_defence(name)).__module__.startswith("neuronviz."))


#: session_state: the Methods box's values, kept while pages without the box run (Streamlit forgets a
#: widget's value after a run that does not draw it, so the second run of another page would lose them).
_KEPT_METHODS_KEY = "analysis.kept_methods"


def _keep_methods() -> None:
    kept = st.session_state.setdefault(_KEPT_METHODS_KEY, {})
    for key in (EXTRA_DEFENCES_KEY, INFLUENCE_METHOD_KEY):
        if key in st.session_state:
            kept[key] = st.session_state[key]
        elif key in kept:
            st.session_state[key] = kept[key]


def analysis_methods() -> tuple[tuple[str, ...], str]:
    """The session's restorations (:data:`RESTORATIONS` and the chosen extras) and influence method
    (registered names; a name no longer registered, e.g. an unloaded plugin's, is dropped)."""
    known = extra_choices()
    _keep_methods()
    chosen = st.session_state.get(EXTRA_DEFENCES_KEY)
    extras = tuple(n for n in (default_extras() if chosen is None else chosen) if n in known)
    defences = (*RESTORATIONS, *extras)
    method = st.session_state.get(INFLUENCE_METHOD_KEY) or DEFAULT_INFLUENCE_METHOD
    if method not in [m.name for m in list_influence_methods()]:
        method = DEFAULT_INFLUENCE_METHOD
    return defences, method


def method_controls() -> None:
    """The analysis' restorations (every registered defence) and influence method (every registered
    one); every page that shows the analysis uses the session's choice."""
    defences, method = analysis_methods()
    st.session_state[EXTRA_DEFENCES_KEY] = [n for n in defences if n not in RESTORATIONS]
    st.session_state[INFLUENCE_METHOD_KEY] = method
    with st.expander(f"Methods: {get_influence_method(method).label}; restorations {', '.join(get_defence(n).short for n in defences)}"):
        columns = st.columns(2)
        columns[0].multiselect(
            f"Also compare (besides {', '.join(get_defence(n).short for n in RESTORATIONS)})",
            extra_choices(),
            format_func=lambda name: get_defence(name).short,
            key=EXTRA_DEFENCES_KEY,
            help="Every other registered defence (plugins too). Each is run on the adversarial image and its "
            "neuron ranking compared with the clean image's.",
        )
        columns[1].selectbox(
            "Influence method",
            [m.name for m in list_influence_methods()],
            format_func=lambda name: get_influence_method(name).label,
            key=INFLUENCE_METHOD_KEY,
            help="How a neuron's influence on the benign class's logit is measured (every registered method).",
        )
        entry = get_influence_method(method)
        st.caption(f"{entry.label}: {entry.description} Unit: {entry.unit}. {entry.paper}.")


def full_analysis(
    model: PixelModel,
    image: torch.Tensor,
    choice: AttackChoice,
    defences: tuple[str, ...] | None = None,
    influence_method: str | None = None,
) -> Analysis:
    """:func:`compute_analysis`, cached by the model's weights, the image's bytes, the choice and the
    methods (default: the session's, :func:`analysis_methods`)."""
    session_defences, session_method = analysis_methods()
    return memo(
        compute_analysis,
        model,
        image,
        choice,
        defences=session_defences if defences is None else tuple(defences),
        influence_method=influence_method or session_method,
    )

