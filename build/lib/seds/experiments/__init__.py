"""Experiments run with the SEDS library, kept apart from it (nothing in ``seds`` outside this package imports
it): ablation studies (:mod:`~seds.experiments.ablate`), baselines (:mod:`~seds.experiments.baselines`),
masked hand-pose pretraining (:mod:`~seds.experiments.pretrain_hands`) and the demo's assets
(:mod:`~seds.experiments.demo_assets`), sharing one run cache (:mod:`~seds.experiments.runs`) and one
report writer (:mod:`~seds.experiments.report`)."""
