"""How much of a feature store's RGB variance lies within videos (the sign sequence) rather than between them
(who signs): ``python benchmarks/proxy_feature_stats.py <store> [--config configs/ablation_cpu.yaml]``.

Reads every third training video, prints per block of the 1024-d features (0–511, 512–767, 768–1023: the
histogram proxy's colour histogram, mean image and motion parts) the squared mean, the total variance and the
mean within-video variance, and the within/total ratio of all dimensions.
"""
from __future__ import annotations

import argparse

import numpy as np

from seds.config import load_config
from seds.variants import build_dataset


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("store")
    ap.add_argument("--config", default="configs/ablation_cpu.yaml")
    args = ap.parse_args(argv)
    cfg = load_config(args.config, [f"data.store={args.store}"])
    ds = build_dataset(cfg, cfg.data.train_split)
    videos = [np.asarray(ds[i]["rgb"]) for i in range(0, len(ds), 3)]
    a = np.concatenate(videos)
    print(f"{len(videos)} videos, {len(a)} windows, mean window norm {np.linalg.norm(a, axis=1).mean():.3f}")
    for name, sl in (("0-511", slice(0, 512)), ("512-767", slice(512, 768)), ("768-1023", slice(768, 1024))):
        x = a[:, sl]
        within = np.mean([v[:, sl].var(0).sum() for v in videos])
        print(f"dims {name}: mean² {(x.mean(0) ** 2).sum():.4f}  total var {x.var(0).sum():.4f}  "
              f"within-video var {within:.4f}")
    print(f"within-video / total variance: {np.mean([v.var(0).sum() for v in videos]) / a.var(0).sum():.3f}")


if __name__ == "__main__":
    main()
