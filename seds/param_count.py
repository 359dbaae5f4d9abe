"""Parameter counts per module, compared with SEDS supp. Tab. 2.

    python -m seds.param_count                 # paper-size model
    python -m seds.param_count small           # any preset in configs/model/, plus key=value overrides
    python -m seds.param_count official        # the authors' released architecture, next to their checkpoint

The text encoder is counted separately (it is not in Tab. 2).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable

from seds.config import ConfigError, model_config
from seds.model import SEDS

# supp. Tab. 2 (millions of parameters)
PAPER_TABLE2 = {"pose_encoder": 9.66, "pose_transformer": 57.7, "rgb_transformer": 57.7, "fusion": 17.4}

# Parameters of the authors' released How2Sign checkpoint (../shared/reference/harness/state_dict_manifest.json:
# 303,811,315 in all), grouped by the module of ours that receives them. Not counted in ours: 16,386 parameters
# their model holds but never uses (clip.visual / clip_rgb.visual.conv2_trans 2 × 8,192, two unused logit scales).
OFFICIAL_MANIFEST = {"pose_encoder": 49_997_424, "pose_transformer": 86_681_088, "rgb_transformer": 86_287_872,
                     "fusion": 17_400_448, "text": 63_428_096, "logit_scale": 1}
OFFICIAL_MANIFEST_TOTAL = 303_811_315
OFFICIAL_UNUSED = 16_386


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


PAPER_REF = "paper supp. Tab. 2 (M)"


def official_note(total: int) -> str:
    return (f"\nOurs: {total:,} parameters. The authors' checkpoint (harness/state_dict_manifest.json): "
            f"{OFFICIAL_MANIFEST_TOTAL:,}, of which {OFFICIAL_UNUSED:,} are never used by their model "
            "(conv2_trans of both token towers, 2 × 8,192; logit_scale_first/sec_softmax, 2) and are dropped by "
            f"python -m seds.convert: {OFFICIAL_MANIFEST_TOTAL:,} − {OFFICIAL_UNUSED:,} = "
            f"{OFFICIAL_MANIFEST_TOTAL - OFFICIAL_UNUSED:,} "
            f"({'equal' if total == OFFICIAL_MANIFEST_TOTAL - OFFICIAL_UNUSED else 'DIFFERENT'}).")


@dataclass(frozen=True)
class Reference:
    """What a variant's counts are compared with: per module (M), extra rows (name, count, M), the total (M)."""
    label: str
    modules: dict
    extra_rows: tuple = ()
    total: float | None = None
    note: Callable[[int], str] | None = None


REFERENCES = {   # per model variant
    "paper": Reference(PAPER_REF, PAPER_TABLE2),
    # the learnable logit scale lives in the loss module here, in clip. there
    "official": Reference("authors' checkpoint (M)", {k: v / 1e6 for k, v in OFFICIAL_MANIFEST.items()},
                          (("logit_scale (loss module)", 1, OFFICIAL_MANIFEST["logit_scale"] / 1e6),),
                          (OFFICIAL_MANIFEST_TOTAL - OFFICIAL_UNUSED) / 1e6, official_note),
}


def parameter_table(preset: str = "paper", overrides=None) -> list[tuple[str, int, float | None]]:
    cfg = model_config(preset, overrides)
    model = SEDS(cfg, with_text=True)
    ref = REFERENCES[cfg.variant]
    rows = []
    for name in ("pose_encoder", "pose_transformer", "rgb_transformer", "fusion", "text"):
        if hasattr(model, name) and getattr(model, name) is not None:
            rows.append((name, count(getattr(model, name)), ref.modules.get(name)))
    total = count(model)
    for row in ref.extra_rows:
        rows.append(row)
        total += row[1]
    rows.append(("total", total, ref.total))
    return rows


def format_table(rows, preset: str, reference: str = PAPER_REF) -> str:
    exact = reference != PAPER_REF        # a checkpoint's exact counts: show every parameter
    lines = [f"Parameters of the '{preset}' model (M = 10^6)", "",
             f"| module | params (M) | {reference} | ratio |", "|---|---:|---:|---:|"]
    for name, n, ref in rows:
        m = n / 1e6
        if not ref:
            lines.append(f"| {name} | {m:.2f} | – | – |")
        elif exact:
            lines.append(f"| {name} | {m:.6f} | {ref:.6f} | {m / ref:.4f} |")
        else:
            lines.append(f"| {name} | {m:.2f} | {ref} | {m / ref:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m seds.param_count",
        description="Parameter counts of a model preset, module by module, against the paper's supp. Tab. 2 "
                    "(paper) or the authors' released checkpoint (official).")
    ap.add_argument("preset", nargs="?", default="paper", help="configs/model/<preset>.yaml (default: paper)")
    ap.add_argument("overrides", nargs="*", metavar="key=value",
                    help="config overrides, e.g. pose_transformer.layers=8")
    args = ap.parse_args(argv)
    preset, argv = args.preset, args.overrides
    if "=" in preset:                       # only overrides given: they apply to the default preset
        preset, argv = "paper", [preset, *argv]
    try:
        variant = model_config(preset, argv).variant
    except ConfigError as e:
        ap.error(str(e))
    rows = parameter_table(preset, argv)
    ref = REFERENCES[variant]
    print(format_table(rows, preset, ref.label))
    if ref.note:
        print(ref.note(rows[-1][1]))
    if preset == "paper":
        print("\nNote: the interaction transformers follow the paper text (12 layers × 768, CLIP ViT-B/32); "
              "that is 85 M each. Tab. 2's 57.7 M matches 8 such layers "
              "(`python -m seds.param_count paper pose_transformer.layers=8 rgb_transformer.layers=8`).")


if __name__ == "__main__":
    main()
