"""Training scripts for the embedded models (``python -m neuronviz train <name>``)."""
