"""Data: images (reading, checking), datasets (MNIST and friends), labelled evaluation sets."""
