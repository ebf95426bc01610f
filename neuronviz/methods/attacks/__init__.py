"""The attack catalogue over torchattacks 3.5.1: a registry of entries, one generic runner, reports.

Every attack is torchattacks' own implementation: this package describes them (one registry
entry each, :mod:`neuronviz.methods.attacks.catalogue`), validates what a request asks for, runs the
attack under the model's lock with a seed (:mod:`neuronviz.methods.attacks.runner`,
:mod:`neuronviz.methods.attacks.randomness`), and reports what happened
(:mod:`neuronviz.methods.attacks.report`). Nothing here re-implements an attack.

A new attack is one file that calls :func:`register_attack` (docs/architecture.md, "A new
attack"); the dashboard and the CLI list it from :func:`list_attacks`.
"""

from neuronviz.infra.limits import MAX_BATCH, MAX_WORK
from neuronviz.infra.schema import Param, format_eps, over_255, parse_eps
from neuronviz.methods.attacks import catalogue  # noqa: F401  (registers the built-in attacks, in catalogue order)
from neuronviz.methods.attacks.randomness import RNG_LOCK, RequestRandomness, seeded
from neuronviz.methods.attacks.registry import (
    ATTACKS,
    AttackInfo,
    MeanOfChannels,
    OnGrayAsRGB,
    get_attack,
    list_attacks,
    register_attack,
    unregister_attack,
)
from neuronviz.methods.attacks.report import AttackedImages, AttackReport, AttackTrace
from neuronviz.methods.attacks.runner import (
    MAX_TRACE,
    TraceRecorder,
    estimate_range,
    estimate_work,
    resolve_params,
    resolve_target,
    run_attack,
    seconds_per_evaluation,
)

__all__ = [
    "ATTACKS",
    "MAX_BATCH",
    "MAX_TRACE",
    "MAX_WORK",
    "RNG_LOCK",
    "AttackInfo",
    "AttackReport",
    "AttackTrace",
    "AttackedImages",
    "MeanOfChannels",
    "OnGrayAsRGB",
    "Param",
    "RequestRandomness",
    "TraceRecorder",
    "estimate_range",
    "estimate_work",
    "format_eps",
    "get_attack",
    "list_attacks",
    "over_255",
    "parse_eps",
    "register_attack",
    "resolve_params",
    "resolve_target",
    "run_attack",
    "seconds_per_evaluation",
    "seeded",
    "unregister_attack",
]
