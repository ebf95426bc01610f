"""Models: the PixelModel contract, the registry, safe checkpoints, the torchvision zoo."""

from neuronviz.models.pixel import ImagePolicy, ModelMeta, Normalize, PixelModel
from neuronviz.models.registry import (
    EMBEDDED,
    Architecture,
    ModelInfo,
    assets_dir,
    embedded_path,
    get_architecture,
    infer_architecture,
    list_architectures,
    list_models,
    load_model,
    model_card,
    resolve_device,
    wrap_model,
)
from neuronviz.models.torchvision_zoo import ZOO, download_weights, weights_cached

__all__ = [
    "EMBEDDED",
    "ZOO",
    "Architecture",
    "ImagePolicy",
    "ModelInfo",
    "ModelMeta",
    "Normalize",
    "PixelModel",
    "assets_dir",
    "download_weights",
    "embedded_path",
    "get_architecture",
    "infer_architecture",
    "list_architectures",
    "list_models",
    "load_model",
    "model_card",
    "resolve_device",
    "weights_cached",
    "wrap_model",
]
