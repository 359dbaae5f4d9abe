"""Retrieval over encoded galleries: :mod:`~seds.retrieval.gallery_index` (the two-stage search index),
:mod:`~seds.retrieval.gallery` (a gallery folder: video + sentence indexes, thumbnails, feature cache),
:mod:`~seds.retrieval.engine` (a checkpoint + a gallery answering video and sentence queries). The
command line is ``python -m seds.index``."""
