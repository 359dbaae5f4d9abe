"""The two model variants as objects: everything that differs between the ``paper`` variant (the paper's text)
and the ``official`` variant (the authors' released code and weights) above the model, in one object per
variant (:class:`seds.variants.base.Variant`), chosen once from the config by :func:`variant_of`.

Inside the model the differences are the named switches of :class:`seds.config.VariantOptions` (read by the
module they concern); here live the data side (dataset, item builder, collate, feature checks), the serving
side (features → batch, padding, precision) and the live-query side (extractor, window times) of each variant.
A third variant is a new :class:`VariantOptions` entry and one new file here, registered in :data:`VARIANTS`.
"""
from __future__ import annotations

from pathlib import Path

from seds.variants.base import Variant
from seds.variants.official import OfficialVariant
from seds.variants.paper import PaperVariant

VARIANTS: dict[str, Variant] = {"paper": PaperVariant(), "official": OfficialVariant()}


def variant_of(cfg) -> Variant:
    """The :class:`Variant` of a :class:`~seds.config.Config`, a :class:`~seds.config.ModelConfig` or a model
    (anything with ``cfg``)."""
    model_cfg = getattr(cfg, "model", cfg)                 # Config → ModelConfig
    model_cfg = getattr(model_cfg, "cfg", model_cfg)       # SEDS → ModelConfig
    return VARIANTS[model_cfg.variant]


def build_dataset(cfg, split: str, store: str | None = None, manifest: str | None = None,
                  missing: str | None = None):
    """The dataset of one split for a Config (shared by train, evaluate, index and the experiments): the
    variant's dataset over the feature store (batch it with ``variant_of(cfg).collate``)."""
    root = Path(store or cfg.data.store)
    if not root.is_dir():
        raise FileNotFoundError(f"feature store {root} not found (data.store); run python -m seds.extract")
    man = Path(manifest or cfg.data.manifest or root / f"manifest_{split}.csv")
    if not man.exists():
        raise FileNotFoundError(f"manifest {man} not found for split {split!r}")
    return variant_of(cfg).dataset(cfg, root, man, split, missing or cfg.data.missing)


__all__ = ["VARIANTS", "Variant", "build_dataset", "variant_of"]
