"""neuronviz: what adversarial attacks do to a classifier's neurons, and what defences undo.

The library works on tensors and knows nothing of Streamlit (``import neuronviz`` never imports
it). Submodules: ``models``, ``datasets``, ``images``.
"""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
