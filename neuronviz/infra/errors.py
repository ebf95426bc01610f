"""Precise exceptions raised by neuronviz.

The library never prints: it raises one of these with a message a user can act on. They all
derive from :class:`NeuronvizError` so the app can catch "any neuronviz problem" in one place,
and from the matching built-in (``ValueError``, ``FileNotFoundError``...) so plain Python code
can catch them the usual way.
"""

from __future__ import annotations


class NeuronvizError(Exception):
    """Base class of every error neuronviz raises on purpose.

    ``ui_hint``, when set, is one sentence saying what to do *in the dashboard* (e.g. "Pick the
    architecture in the sidebar's Architecture box."); the message itself stays true for the
    Python API as well.
    """

    def __init__(self, *args: object, ui_hint: str | None = None) -> None:
        super().__init__(*args)
        self.ui_hint = ui_hint


class InputError(NeuronvizError, ValueError):
    """A tensor, parameter or argument breaks a documented contract (shape, range, type)."""


class ImageError(NeuronvizError, ValueError):
    """An image could not be read or is refused (not an image, truncated, too large, empty)."""


class ModelNotFoundError(NeuronvizError, KeyError):
    """No registered model or architecture has that name."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


class CheckpointError(NeuronvizError, ValueError):
    """A checkpoint is refused: unsafe content, wrong architecture, missing or unexpected keys."""


class WeightsNotAvailableError(NeuronvizError, FileNotFoundError):
    """Pretrained weights are not in the local cache and downloading was not requested."""


class DeviceError(NeuronvizError, RuntimeError):
    """The requested device does not exist here (e.g. CUDA on a machine without a GPU)."""


class DownloadError(NeuronvizError, OSError):
    """Fetching pretrained weights failed (no network, server error, or a hash mismatch)."""


class SharedServerError(NeuronvizError, PermissionError):
    """Refused on a shared server (``NEURONVIZ_SHARED_SERVER=1``): weight downloads, local paths."""


class TimeLimitError(NeuronvizError, TimeoutError):
    """A computation ran past its wall-clock budget (:func:`neuronviz.infra.budget.limit`) and was stopped."""


class CancelledError(NeuronvizError, RuntimeError):
    """A computation was stopped because its cancel flag (:func:`neuronviz.infra.budget.limit`) was set."""


class PluginError(NeuronvizError, ImportError):
    """A plugin module named in NEURONVIZ_PLUGINS (or an entry point) failed to import."""


class DataError(NeuronvizError, ValueError):
    """A labelled data set is refused: unreadable or unsafe (an image folder, a zip of class
    folders, MNIST/CIFAR-10 files), over a cap, or with classes the model does not have."""


class ClassMismatchError(DataError):
    """A data set's class names do not match the model's. ``unmatched`` lists the data's names
    that no model class has; ``model_classes`` the model's names."""

    def __init__(self, *args: object, unmatched: tuple[str, ...] = (), model_classes: tuple[str, ...] = (), ui_hint: str | None = None) -> None:
        super().__init__(*args, ui_hint=ui_hint)
        self.unmatched = unmatched
        self.model_classes = model_classes
