"""The SEDS network: pose encoder, interaction transformers, text encoder, CGAF and fusion variants."""
from seds.model.factory import create_model
from seds.model.seds import SEDS, TextEmbedding, VideoEmbedding

__all__ = ["SEDS", "VideoEmbedding", "TextEmbedding", "create_model"]
