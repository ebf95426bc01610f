"""Seeded attacks beside other threads: torch's, NumPy's and ``random``'s process-wide generators lent
to one request only while its attack draws.

Hand-written because torch has no per-thread generator and torchattacks takes no ``generator=``
argument: the request's own generator state is swapped into the global generators while the
attack's code runs and swapped out while the model evaluates (:class:`RequestRandomness`).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

#: One snapshot of the generators: torch CPU, torch CUDA (or None), NumPy, ``random``.
State = tuple[torch.Tensor, torch.Tensor | None, Any, Any]

#: torch's, NumPy's and ``random``'s default generators are one per process, shared by every
#: thread (every dashboard session). A seeded request that draws random numbers swaps its own
#: generator state into them while it draws, holding this lock, and swaps it out again before
#: the lock is released (:class:`RequestRandomness`). It is held only while the attack's own
#: code runs between model evaluations, never during a model evaluation, and never for attacks
#: that draw nothing. Always taken after a model's lock, never before one.
RNG_LOCK = threading.RLock()


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Seed torch (CPU and CUDA), NumPy and ``random`` inside the block; restore them after.

    For code that draws from the global generators throughout a block: holds :data:`RNG_LOCK`
    for the whole block, so concurrent seeded blocks run one after the other (a process-wide
    generator cannot be shared otherwise). :func:`run_attack` does not use it: it holds the lock
    only while an attack draws (see :class:`RequestRandomness`)."""
    if seed is None:
        yield
        return
    with RNG_LOCK:
        with _seeded(seed):
            yield


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    np_state, py_state = np.random.get_state(), random.getstate()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


class RequestRandomness:
    """One seeded request's own state of torch's (CPU and the model's CUDA device), NumPy's and
    ``random``'s generators, lent to the process-wide generators only while the request draws.

    torchattacks draws from the global generators (``torch.rand``, ``uniform_``, ``np.random``),
    which torch has one of per process. Instead of holding a global lock for a whole attack, the
    request's state is swapped in (under :data:`RNG_LOCK`) when the attack's own code runs and
    swapped out while the model evaluates (:meth:`before_forward` and :meth:`after_forward`,
    called by the trace recorder around every forward pass), so other requests' attacks, and every attack that draws nothing, run
    meanwhile. The sequence of numbers the attack draws is exactly the sequence of a
    single-threaded run seeded with ``seed`` (the model draws none: it is in eval mode).

    ``mode="start"`` (the attack draws only before its first gradient pass, e.g. PGD's random
    start): the state is given back for good at the first forward pass whose input requires a
    gradient, and the rest of the attack holds no lock. ``mode="steps"``: borrowed again after
    every forward pass. The lock is not held during forward passes; it is held during the rest of
    the attack's step (its backward pass and update), which is why attacks that draw nothing take
    no lock at all.
    """

    def __init__(self, seed: int, device: torch.device, mode: str) -> None:
        self.mode = mode
        self.cuda = device.type == "cuda" and torch.cuda.is_available()
        self.cuda_index: int = (device.index if device.index is not None else torch.cuda.current_device()) if self.cuda else 0
        self.finished = False
        self.inside = False
        self._saved: State | None = None
        with RNG_LOCK:
            outer = self._get()
            torch.random.default_generator.manual_seed(seed)
            if self.cuda:
                with torch.cuda.device(self.cuda_index):
                    torch.cuda.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
            self.state = self._get()
            self._set(outer)

    def _get(self) -> State:
        cuda = torch.cuda.get_rng_state(self.cuda_index) if self.cuda else None
        return torch.get_rng_state(), cuda, np.random.get_state(), random.getstate()

    def _set(self, state: State | None) -> None:
        assert state is not None, "the generators are given back only after they were lent"
        cpu, cuda, np_state, py_state = state
        torch.set_rng_state(cpu)
        if self.cuda and cuda is not None:
            torch.cuda.set_rng_state(cuda, self.cuda_index)
        np.random.set_state(np_state)
        random.setstate(py_state)

    def _enter(self) -> None:
        RNG_LOCK.acquire()
        self._saved = self._get()
        self._set(self.state)
        self.inside = True

    def _leave(self) -> None:
        self.state = self._get()
        self._set(self._saved)
        self.inside = False
        RNG_LOCK.release()

    @contextmanager
    def active(self) -> Iterator[None]:
        """The whole attack runs inside; the generators are the request's whenever its code runs."""
        self._enter()
        try:
            yield
        finally:
            if self.inside:
                self._leave()

    def before_forward(self, x: torch.Tensor) -> bool:
        """Called by the recorder before a forward pass: give the generators back (for good at the
        first gradient pass of a ``"start"`` attack). Returns whether to borrow them again after."""
        if not self.inside:
            return False
        if self.mode == "start" and x.requires_grad:
            self.finished = True
            self._leave()
            return False
        self._leave()
        return True

    def after_forward(self) -> None:
        self._enter()

