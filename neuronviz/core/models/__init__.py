"""Models: the PixelModel contract, the model sources and their one factory, safe checkpoints.

Importing this package registers the built-in sources, in the order the pickers list them and
:func:`source_for` asks them: embedded, zoo, checkpoint (``standard_sources``), timm
(``timm_source``), onnx (``onnx_source``), local (``local_source``). Each registers where it is
defined; a plugin adds its own with :func:`~neuronviz.core.models.registry.register_source`.
"""

# Registration order = import order: timm (which imports the standard sources first) before the
# ONNX and local sources (local_source imports onnx_source). The split keeps the sorter from
# reordering the two statements.
from neuronviz.core.models import timm_source  # noqa: F401  (registers embedded, zoo, checkpoint, timm)

# isort: split
from neuronviz.core.models import local_source, onnx_source  # noqa: F401  (register onnx, local)
from neuronviz.core.models.pixel import ImagePolicy, ModelMeta, Normalize, PixelModel
from neuronviz.core.models.registry import (
    ModelInfo,
    ModelSource,
    OptionField,
    create_model,
    get_source,
    list_sources,
    register_source,
    resolve_device,
    source_for,
)
from neuronviz.core.models.standard_sources import (
    EMBEDDED,
    Architecture,
    assets_dir,
    embedded_path,
    get_architecture,
    infer_architecture,
    list_architectures,
    list_models,
    load_model,
    model_card,
    register_architecture,
    wrap_model,
)
from neuronviz.core.models.timm_source import TimmSource
from neuronviz.core.models.torchvision_zoo import ZOO, download_weights, weights_cached

__all__ = [
    "EMBEDDED",
    "ZOO",
    "Architecture",
    "ImagePolicy",
    "ModelInfo",
    "ModelMeta",
    "ModelSource",
    "Normalize",
    "OptionField",
    "PixelModel",
    "TimmSource",
    "assets_dir",
    "create_model",
    "download_weights",
    "embedded_path",
    "get_architecture",
    "get_source",
    "infer_architecture",
    "list_architectures",
    "list_models",
    "list_sources",
    "load_model",
    "model_card",
    "register_architecture",
    "register_source",
    "resolve_device",
    "source_for",
    "weights_cached",
    "wrap_model",
]
