"""Core: the PixelModel contract and model sources (``models``), the activation probe, layer listing."""
