"""Data: typed per-video features, the feature store, manifests and dataset adapters, batching, and the authors'
file formats and train-time pipeline (``official*.py``). The synthetic signing benchmark is its own package,
:mod:`seds.synthetic`."""
