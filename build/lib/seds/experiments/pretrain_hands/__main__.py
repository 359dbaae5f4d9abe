"""``python -m seds.experiments.pretrain_hands extract|train|evaluate|signbert`` (see the package docstring)."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from seds.config import model_config
from seds.experiments.pretrain_hands import __doc__ as PACKAGE_DOC
from seds.experiments.pretrain_hands.data import (extract_pose_folder, real_split, sequences_from_rows,
                                                  sequences_from_store)
from seds.experiments.pretrain_hands.model import (MaskConfig, PretrainConfig, evaluate_reconstruction,
                                                   load_hand_mae, mean_hand, pretrain)
from seds.model.hand_init import WEIGHTS, PretrainError, load_signbert, save_hand_encoder


def _widths_of(preset: str) -> tuple[tuple[int, ...], int]:
    m = model_config(preset)
    return tuple(m.pose.widths), m.pose.temporal_kernel


def _table(ev: dict) -> str:
    names = [k for k in ev if isinstance(ev[k], dict)]
    lines = ["| predictor | all masked joints | frame-masked | joint-masked |", "|---|---:|---:|---:|"]
    for n in names:
        r = ev[n]
        lines.append(f"| {n} | {r['all']:.4f} | {r['frame-masked']:.4f} | {r['joint-masked']:.4f} |")
    return "\n".join(lines)


def real_data(real: str | Path, held_out: float, seed: int) -> tuple[list, list, dict]:
    """(pretraining sequences, held-out sequences, source summary) of an ``extract`` folder."""
    tr, ho = real_split(real, held_out, seed)
    train, held = sequences_from_rows(real, tr), sequences_from_rows(real, ho)
    return train, held, {"folder": str(real), "pretrain_clips": len(tr), "heldout_clips": len(ho),
                         "pretrain_hand_sequences": len(train), "heldout_hand_sequences": len(held),
                         "held_out_fraction": held_out, "split_seed": seed}


def write_report(path: str | Path, command: str, real: dict, ev: dict, mcfg: MaskConfig, window: int,
                 encoder: str) -> None:
    info_file = Path(real["folder"]) / "extract_info.json"         # how the real clips were extracted
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    how = (f"{str(info.get('pose', 'mediapipe')).replace('mediapipe', 'MediaPipe Holistic')} keypoints at "
           f"{info['fps']:g} fps, first {info.get('max_seconds', 6.0):g} s of each clip" if "fps" in info
           else "keypoints (extraction settings unknown: no extract_info.json)")
    md = ["# Masked hand-pose pretraining: reconstruction on held-out real clips", "",
          f"Command: `{command}`", "",
          f"Held-out: {real['heldout_clips']} How2Sign-mini clips ({real['heldout_hand_sequences']} hand "
          f"sequences; {ev['n_windows']} windows of {window} frames; {ev['n_masked_joints']} masked observed joints, "
          f"{ev['n_frame_masked']} in whole-frame masks, {ev['n_joint_masked']} single joints) from source videos "
          f"not used for pretraining; pretraining saw {real['pretrain_clips']} other real clips. {how}. "
          "Error = mean L2 distance of the masked joints in "
          "normalized hand coordinates (the hand's box half-side = 1, as the pose encoder sees them). Masking "
          f"(fixed seed): {asdict(mcfg)}. Mean hand = per-joint mean over the real pretraining clips.", "",
          f"Encoder: {encoder}", "", _table(ev), ""]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(md))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m seds.experiments.pretrain_hands", description=PACKAGE_DOC.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract", help="MediaPipe keypoints of a video folder (pose only)")
    e.add_argument("--videos", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--fps", type=float, default=12.0)
    e.add_argument("--max-seconds", type=float, default=6.0)
    e.add_argument("--limit", type=int, default=None)
    t = sub.add_parser("train", help="masked hand-pose pretraining + held-out evaluation")
    t.add_argument("--real", default=None, help="folder written by `extract` (real clips)")
    t.add_argument("--store", action="append", default=[], help="feature store(s) (train split is used)")
    t.add_argument("--preset", default="ablation", help="model preset whose pose widths to use")
    t.add_argument("--out", required=True)
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--window", type=int, default=48)
    t.add_argument("--results", default=None, help="also write the evaluation table here (markdown)")
    v = sub.add_parser("evaluate", help="held-out reconstruction error of a pretrained model vs trivial baselines")
    v.add_argument("--model", required=True, help="folder written by `train`")
    v.add_argument("--real", required=True)
    v.add_argument("--results", default=None)
    for q in (t, v):
        q.add_argument("--held-out", type=float, default=0.2, help="fraction of real source videos held out")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--threads", type=int, default=1)
    s = sub.add_parser("signbert", help="convert a local SignBERT checkpoint into a hand_stgcn.safetensors")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--preset", default="paper")
    s.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    command = "python -m seds.experiments.pretrain_hands " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                                                    else sys.argv[1:]))
    try:
        if args.cmd == "extract":
            extract_pose_folder(args.videos, args.out, args.fps, args.max_seconds, args.limit)
            return 0
        if args.cmd == "signbert":
            widths, tk = _widths_of(args.preset)
            enc, notes = load_signbert(args.checkpoint, widths, tk)
            save_hand_encoder(args.out, enc, {"source": f"SignBERT checkpoint {args.checkpoint}", "notes": notes})
            print(f"wrote {Path(args.out) / WEIGHTS}" + "".join(f"\nnote: {n}" for n in notes))
            return 0
        torch.set_num_threads(max(1, args.threads))
        mcfg = MaskConfig()
        if args.cmd == "evaluate":
            model, info = load_hand_mae(args.model)
            real_train, held, real = real_data(args.real, args.held_out, args.seed)
            window = info.get("config", {}).get("window", 48)
            ev = evaluate_reconstruction(model, held, mcfg, mean_hand(real_train), window=window)
            print(_table(ev))
            if args.results:
                c = info.get("config", {})
                write_report(args.results, command, real, ev, mcfg, window,
                             f"hand ST-GCN widths {info['widths']} from `{args.model}` ({c.get('steps')} steps × "
                             f"batch {c.get('batch_size')}; sources {json.dumps(info.get('sources', {}))})")
            return 0
        widths, tk = _widths_of(args.preset)
        train_seqs, held_seqs, real_train, sources = [], [], [], {}
        if args.real:
            real_train, held_seqs, sources["real"] = real_data(args.real, args.held_out, args.seed)
            train_seqs += real_train
        for st in args.store:
            seqs = sequences_from_store(st, "train")
            train_seqs += seqs
            sources[f"store:{st}"] = {"hand_sequences": len(seqs)}
        cfg = PretrainConfig(widths=widths, temporal_kernel=tk, window=args.window, batch_size=args.batch_size,
                             steps=args.steps, seed=args.seed)
        print(f"pretraining on {len(train_seqs)} hand sequences ({sources}); held out: {len(held_seqs)}", flush=True)
        model, history = pretrain(train_seqs, cfg, mcfg, held_seqs or None)
        info = {"config": asdict(cfg), "mask": asdict(mcfg), "sources": sources, "history": history,
                "command": command}
        if held_seqs:
            ev = evaluate_reconstruction(model, held_seqs, mcfg, mean_hand(real_train), window=cfg.window)
            info["heldout_eval"] = ev
            print(_table(ev))
        save_hand_encoder(args.out, model.encoder, info)
        torch.save({"decoder": model.decoder.state_dict(), "joint_embed": model.joint_embed.detach()},
                   Path(args.out) / "decoder.pt")
        if args.results and held_seqs:
            write_report(args.results, command, sources["real"], ev, mcfg, cfg.window,
                         f"hand ST-GCN widths {list(widths)}, {cfg.steps} steps × batch {cfg.batch_size}; "
                         f"sources {json.dumps(sources)}")
        return 0
    except PretrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
