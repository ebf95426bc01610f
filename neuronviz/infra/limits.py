"""The stated caps on one library request (the dashboard and the CLI go through them too).

One request is one call of :func:`neuronviz.methods.attacks.run_attack`, :func:`neuronviz.methods.defences.restore`
(:meth:`~neuronviz.methods.defences.base.Defense.restore`) or :func:`neuronviz.methods.influence.neuron_influence`.
Work beyond a cap is split into several requests by the caller (``neuronviz.workflows.batch`` does it in
blocks of 16 images).
"""

from __future__ import annotations

import torch

from neuronviz.infra.errors import InputError

#: The most images one request may attack, restore or compute influence for at once.
MAX_BATCH = 1024
#: The most model evaluations (image × forward-or-backward pass, estimated from the parameters)
#: one attack request may ask for. PGD-20 on 256 images is 10,240; AutoAttack "standard" on 64
#: digits is about 1,000,000 at worst. Larger requests are refused with the estimate and this cap.
MAX_WORK = 2_000_000


def check_batch(x, what: str, model=None) -> None:
    """Refuse a batch of more than :data:`MAX_BATCH` images (the first dimension) for ``what``
    (e.g. ``"run_attack"``) with an :class:`InputError` naming the size, the cap and the remedy.
    With ``model``, also refuse a model that is not a PixelModel
    (:func:`neuronviz.core.models.pixel.require_pixel_model`)."""
    if model is not None:
        from neuronviz.core.models.pixel import require_pixel_model

        require_pixel_model(model, what)
    if isinstance(x, torch.Tensor) and x.dim() >= 1 and x.shape[0] > MAX_BATCH:
        raise InputError(
            f"{what}: {x.shape[0]} images in one request; the cap is {MAX_BATCH} (neuronviz.infra.limits.MAX_BATCH). "
            "Split the batch into smaller requests."
        )
