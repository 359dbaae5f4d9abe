"""SEDS: Semantically Enhanced Dual-Stream Encoder for sign language retrieval (ACM MM 2024)."""
__version__ = "0.1.0"
