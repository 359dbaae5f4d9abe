"""Parameter counts per module, compared with SEDS supp. Tab. 2.

    python -m seds.params                 # paper-size model
    python -m seds.params small           # any preset in configs/model/, plus key=value overrides

The text encoder is counted separately (it is not in Tab. 2).
"""
from __future__ import annotations

import sys

from seds.config import model_config
from seds.model import SEDS

# supp. Tab. 2 (millions of parameters)
PAPER_TABLE2 = {"pose_encoder": 9.66, "pose_transformer": 57.7, "rgb_transformer": 57.7, "fusion": 17.4}


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_table(preset: str = "paper", overrides=None) -> list[tuple[str, int, float | None]]:
    cfg = model_config(preset, overrides)
    model = SEDS(cfg, with_text=True)
    rows = []
    for name in ("pose_encoder", "pose_transformer", "rgb_transformer", "fusion", "text"):
        if hasattr(model, name) and getattr(model, name) is not None:
            rows.append((name, count(getattr(model, name)), PAPER_TABLE2.get(name)))
    rows.append(("total", count(model), None))
    return rows


def format_table(rows, preset: str) -> str:
    lines = [f"Parameters of the '{preset}' model (M = 10^6)", "",
             "| module | params (M) | paper supp. Tab. 2 (M) | ratio |", "|---|---:|---:|---:|"]
    for name, n, ref in rows:
        m = n / 1e6
        lines.append(f"| {name} | {m:.2f} | {ref if ref is not None else '–'} | "
                     f"{(m / ref):.2f} |" if ref else f"| {name} | {m:.2f} | – | – |")
    return "\n".join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    preset = argv.pop(0) if argv and "=" not in argv[0] else "paper"
    rows = parameter_table(preset, argv)
    print(format_table(rows, preset))
    if preset == "paper":
        print("\nNote: the interaction transformers follow the paper text (12 layers × 768, CLIP ViT-B/32); "
              "that is 85 M each. Tab. 2's 57.7 M matches 8 such layers "
              "(`python -m seds.params paper pose_transformer.layers=8 rgb_transformer.layers=8`).")


if __name__ == "__main__":
    main()
