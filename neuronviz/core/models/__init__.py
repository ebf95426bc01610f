"""Models: the PixelModel contract, the model sources and their one factory, safe checkpoints.

Importing this package registers the built-in sources (embedded, zoo, checkpoint: in
``registry``; timm: in ``timm_source``); a plugin adds its own with
:func:`~neuronviz.core.models.registry.register_source`.
"""

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

# The ONNX and local-model sources register on import, after the registry above exists.
from neuronviz.core.models import local_source, onnx_source  # noqa: E402, F401
