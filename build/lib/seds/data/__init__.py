"""Data: typed per-video features, the feature store, dataset adapters, batching, synthetic data."""
