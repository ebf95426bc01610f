"""Content digests: stable keys for caches and model identity."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import torch


def tensor_digest(tensor: torch.Tensor, hasher: hashlib._Hash | None = None) -> str:
    """SHA-1 of a tensor's dtype, shape and every byte of its values (not a sample)."""
    h = hasher or hashlib.sha1()
    t = tensor.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    h.update(str(t.dtype).encode())
    h.update(str(tuple(t.shape)).encode())
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: hash the raw 16-bit words
        t = t.view(torch.int16)
    h.update(t.numpy().tobytes())
    return h.hexdigest()


def state_digest(state: Mapping[str, torch.Tensor], extra: Iterable[str] = ()) -> str:
    """SHA-256 over a state dict in key order, plus extra strings (architecture, mean, std...)."""
    h = hashlib.sha256()
    for item in extra:
        h.update(item.encode())
        h.update(b"\0")
    for key in sorted(state):
        h.update(key.encode())
        tensor_digest(state[key], h)
    return h.hexdigest()
