"""Wall-clock budgets and cancel flags for long computations, per thread.

::

    from neuronviz.infra import budget

    with budget.limit(30):                # at most 30 s for everything inside
        run_attack(model, x, "cw", {"steps": 10_000})   # raises TimeLimitError when it runs out

    stop = threading.Event()
    with budget.limit(cancel=stop):       # the server's budget ($NEURONVIZ_TIME_BUDGET_S) and a flag another thread may set
        ...                               # raises CancelledError soon after stop.set()

A budget belongs to the thread that entered it (each Streamlit session runs in its own thread), so
one session's budget never stops another's work. Budgets nest: the tighter deadline wins, and
any enclosing cancel flag stops the work.

The check (:func:`check`) is cheap (a thread-local read and a clock read) and runs inside
:meth:`neuronviz.core.models.pixel.PixelModel.forward`, so every attack, defence and influence pass
stops at its next model evaluation after the deadline. :func:`neuronviz.methods.attacks.run_attack` and
:meth:`neuronviz.methods.defences.base.Defense.restore` run under :func:`default`, which names the work
and adds **no deadline**: the library is not the server. A library call (Python, the CLI) runs
until it is done unless its caller asks for a budget with :func:`limit`. The dashboard and the
shared server ask for theirs explicitly: every long computation of the app runs under
``limit(settings.time_budget_s(), cancel=...)`` (``app.runs.run_limited``), where
:func:`neuronviz.infra.settings.time_budget_s` is ``$NEURONVIZ_TIME_BUDGET_S``, else 120 s (60 s shared).
:func:`limit` with no seconds is that server budget.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from neuronviz.infra.errors import CancelledError, InputError, TimeLimitError

_local = threading.local()


@dataclass(frozen=True)
class _Frame:
    deadline: float  # time.monotonic() value; math.inf when there is none
    seconds: float  # the budget whose deadline this is (math.inf: none)
    started: float  # when that budget began (monotonic)
    cancels: tuple  # every enclosing cancel flag
    what: str  # the innermost description of the work


def _frames() -> list[_Frame]:
    frames = getattr(_local, "frames", None)
    if frames is None:
        frames = _local.frames = []
    return frames


def _seconds(seconds: float | None) -> float:
    if seconds is None:
        from neuronviz.infra.settings import time_budget_s

        return float(time_budget_s())
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise InputError(f"a time budget must be a number of seconds, got {seconds!r}")
    seconds = float(seconds)
    if math.isnan(seconds) or seconds <= 0:
        raise InputError(f"a time budget must be a positive number of seconds (math.inf: none), got {seconds!r}")
    return seconds


@contextmanager
def limit(
    seconds: float | None = None, cancel: threading.Event | None = None, what: str | None = None
) -> Iterator[None]:
    """Stop the work inside the block after ``seconds`` (None: :func:`neuronviz.infra.settings.time_budget_s`;
    ``math.inf``: no deadline) or once ``cancel`` is set, whichever comes first.

    Nested blocks: the tighter deadline wins; every enclosing cancel flag counts. ``what`` names
    the work in the error message (default: the innermost enclosing name, else "the computation").

    Raises (from inside the block, at the next model evaluation): :class:`TimeLimitError`,
    :class:`CancelledError`; :class:`InputError` for a budget that is not a positive number or a
    ``cancel`` without ``is_set()``.
    """
    own = _seconds(seconds)
    if cancel is not None and not callable(getattr(cancel, "is_set", None)):
        raise InputError(f"cancel must be a threading.Event (something with is_set()), got {type(cancel).__name__}")
    frames = _frames()
    parent = frames[-1] if frames else None
    now = time.monotonic()
    deadline = now + own
    frame = _Frame(
        deadline=deadline,
        seconds=own,
        started=now,
        cancels=(parent.cancels if parent else ()) + ((cancel,) if cancel is not None else ()),
        what=what or (parent.what if parent else "the computation"),
    )
    if parent is not None and parent.deadline <= deadline:  # the enclosing budget is tighter
        frame = _Frame(parent.deadline, parent.seconds, parent.started, frame.cancels, frame.what)
    frames.append(frame)
    try:
        yield
    finally:
        frames.pop()


@contextmanager
def default(what: str) -> Iterator[None]:
    """Name the work ``what`` for the messages of the budget already active in this thread (its
    deadline and cancel flags stand). With no active budget there is **no deadline**: a library
    call is bounded only by what its caller asks (:func:`limit`), never by the server's budget."""
    frames = _frames()
    if not frames:
        with limit(math.inf, what=what):
            yield
        return
    parent = frames[-1]
    frames.append(_Frame(parent.deadline, parent.seconds, parent.started, parent.cancels, what))
    try:
        yield
    finally:
        frames.pop()


def active() -> bool:
    """Whether a budget is active in this thread."""
    return bool(getattr(_local, "frames", None))


def remaining() -> float:
    """Seconds left of the tightest active budget in this thread (``math.inf`` when there is none)."""
    frames = getattr(_local, "frames", None)
    if not frames:
        return math.inf
    return frames[-1].deadline - time.monotonic()


def check() -> None:
    """Raise if this thread's work must stop: :class:`CancelledError` when a cancel flag is set,
    :class:`TimeLimitError` when the tightest deadline has passed. Free when no budget is active."""
    frames = getattr(_local, "frames", None)
    if not frames:
        return
    frame = frames[-1]
    for flag in frame.cancels:
        if flag.is_set():
            raise CancelledError(f"{frame.what} was cancelled (the cancel flag was set); nothing was kept from it")
    now = time.monotonic()
    if now > frame.deadline:
        raise TimeLimitError(
            f"{frame.what} ran out of time: it ran past its {frame.seconds:g} s time budget "
            f"({now - frame.started:.1f} s elapsed) and was stopped. Lower the number of images, steps, "
            f"restarts or queries, or raise the budget (environment variable NEURONVIZ_TIME_BUDGET_S, "
            f"or neuronviz.infra.budget.limit(seconds=...))."
        )
