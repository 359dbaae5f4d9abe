"""Per-video feature extraction: RGB (I3D) and pose backends that fill ``seds.data.features.VideoFeatures``."""
