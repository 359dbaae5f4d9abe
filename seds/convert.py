"""Convert the authors' released SEDS weights into this project's checkpoints (``model.variant: official``).

    python -m seds.convert official h2s_best_model.bin --out checkpoints/seds-official-h2s [--dataset how2sign]
    python -m seds.convert signbert pretrain_signbert.pth --out checkpoints/signbert-init

``official``: a released checkpoint (``h2s_best_model.bin`` / PHOENIX / CSL-Daily) is a flat torch state dict
(``torch.save(model.state_dict())``, 804 keys, ``harness/state_dict_manifest.json``). It is read with
``torch.load(weights_only=True)`` (no pickled code runs); :func:`official_key_map` maps every key explicitly to
a key of :class:`seds.model.SEDS` (official variant) or of its loss module (``clip.logit_scale``). Every shape is
checked; missing and unexpected keys are refused, all listed. Four keys the authors' model never uses
(:data:`UNUSED_OFFICIAL_KEYS`) are dropped by name, and ``fusion.pe.pe`` (the fixed sinusoidal table) is
checked against the table this project computes and dropped.

**dtype policy**: the released files hold the CLIP Linear / conv / attention weights, ``proj`` and
``text_projection`` in float16 and everything else in float32. The converted checkpoint stores **every floating
tensor as float32** — fp16 → fp32 is exact, so nothing is lost and the fp32 parity tests apply unchanged. To serve
with the authors' mixed precision, call :meth:`seds.model.SEDS.half_clip_towers` after loading: it casts exactly
those tensors back to float16 (bit-identical to the file's values).

``signbert``: the released ``pretrain_signbert.pth`` (``{'state_dict': {'GCN_Transform': {...}}}`` or
``{'state_dict': {...}}``, keys ``embed.st_gcn_hand.*`` …) is validated by loading it into the official pose
encoder (:func:`seds.model.signbert_gcn.load_pretrain_signbert`: every key and shape checked) and written as
``signbert_init.safetensors`` + ``signbert_init.json``; train the official variant from it with
``model.pose.hand_init=<out folder>`` (loaded by :func:`seds.model.factory.create_model`).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch

from seds.atomic import atomic_save_file, atomic_write_bytes
from seds.checkpoint import load_checkpoint, write_checkpoint
from seds.config import CONFIG_DIR, Config, load_config
from seds.model import SEDS
from seds.model.cgaf import sinusoidal_positions
from seds.model.hand_init import SIGNBERT_INIT
from seds.model.signbert_gcn import SignBertPoseEncoder, load_pretrain_signbert, official_signbert_key_map
from seds.weights import read_state_dict
from seds.progname import prog

#: in every released checkpoint, never read by the authors' forward pass (conv2_trans only runs for > 64
#: clips, which their dataloader never produces; the two extra logit scales are unused)
UNUSED_OFFICIAL_KEYS = ("clip.visual.conv2_trans.weight", "clip_rgb.visual.conv2_trans.weight",
                        "clip.logit_scale_first_softmax", "clip.logit_scale_sec_softmax")
PE_KEY = "fusion.pe.pe"            # fixed sinusoidal table (persistent buffer), recomputed here
DATASETS = ("how2sign", "phoenix2014t", "csl_daily")
TEXT_TOKENIZER = "clip-bpe: OpenAI CLIP bpe_simple_vocab_16e6 (seds.clip_bpe), SOT … EOT, 0-padded to 32"


class ConvertError(ValueError):
    """The file does not have the layout of the authors' checkpoint (the message names the keys)."""


def _block_keys(src: str, dst: str) -> dict[str, str]:
    names = ("attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias",
             "ln_1.weight", "ln_1.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias",
             "ln_2.weight", "ln_2.bias")
    return {f"{src}.{n}": f"{dst}.{n}" for n in names}


def _pairs(src: str, dst: str, names=("weight", "bias")) -> dict[str, str]:
    return {f"{src}.{n}": f"{dst}.{n}" for n in names}


def official_key_map(model: SEDS) -> dict[str, str]:
    """Authors' key → our checkpoint key (``model.<name>`` or ``loss.logit_scale``), for every key they use."""
    cfg = model.cfg
    m = {"clip.logit_scale": "loss.logit_scale"}
    text = "model.text.backbone"
    m.update({"clip.token_embedding.weight": f"{text}.token_embedding.weight",
              "clip.positional_embedding": f"{text}.positional_embedding",
              "clip.text_projection": f"{text}.text_projection", **_pairs("clip.ln_final", f"{text}.ln_final")})
    for i in range(len(model.text.backbone.resblocks)):
        m.update(_block_keys(f"clip.transformer.resblocks.{i}", f"{text}.resblocks.{i}"))
    for src, dst in (("clip.visual", "model.pose_transformer"), ("clip_rgb.visual", "model.rgb_transformer")):
        for n in ("class_embedding", "positional_embedding", "proj", "conv1.weight"):
            m[f"{src}.{n}"] = f"{dst}.{n}"
        m.update(_pairs(f"{src}.ln_pre", f"{dst}.ln_pre"))
        m.update(_pairs(f"{src}.ln_post", f"{dst}.ln_post"))
        layers = cfg.pose_transformer.layers if dst.endswith("pose_transformer") else cfg.rgb_transformer.layers
        for i in range(layers):
            m.update(_block_keys(f"{src}.transformer.resblocks.{i}", f"{dst}.resblocks.{i}"))
    att = {"k_layer": "k", "v_layer": "v", "q_layer": "q", "sample_offsets": "offsets", "output_layer": "out"}
    for src, dst in (("P2R", "p2r"), ("R2P", "r2p")):
        for i in range(cfg.fusion.layers):
            s, d = f"fusion.{src}_layers.{i}", f"model.fusion.{dst}.{i}"
            m.update(_pairs(f"{s}.layer_norm", f"{d}.norm"))
            for a, b in att.items():
                m.update(_pairs(f"{s}.src_src_att.{a}", f"{d}.attn.{b}"))
            m.update(_pairs(f"{s}.feed_forward.layer_norm", f"{d}.ff.norm"))
            m.update(_pairs(f"{s}.feed_forward.pwff_layer.0", f"{d}.ff.net.0"))
            m.update(_pairs(f"{s}.feed_forward.pwff_layer.3", f"{d}.ff.net.3"))
        m.update(_pairs(f"fusion.{src}_layer_norm", f"model.fusion.norm_{dst[0]}"))
    for src, dst in (("c_fc", "fc1"), ("c_proj", "fc2"), ("c_proj1", "fc3")):
        m.update(_pairs(f"fusion.mlp_fusion.mlp.{src}", f"model.fusion.mlp.{dst}"))
    m.update(_pairs("fusion.mlp_fusion.ln", "model.fusion.mlp.norm"))
    m.update({k: f"model.pose_encoder.{v}" for k, v in official_signbert_key_map(prefix="signbert.").items()})
    return m


def official_config(dataset: str = "how2sign") -> Config:
    if dataset not in DATASETS:
        raise ConvertError(f"dataset {dataset!r} is not one of {', '.join(DATASETS)}")
    # the authors' checkpoints load into the official variant: the dataset's settings, that variant's model
    return load_config(CONFIG_DIR / f"{dataset}.yaml", ["model.variant=official"])


def _expected(model: SEDS) -> dict[str, torch.Tensor]:
    out = {f"model.{k}": v for k, v in model.state_dict().items()}
    out["loss.logit_scale"] = torch.empty((), device=next(iter(out.values())).device)
    return out


def _their_shape(ours: str, shape: tuple) -> tuple:
    """The authors' token towers use a 1×1 Conv2d where ours is a Conv1d: one trailing 1 more."""
    return shape + (1,) if ours.endswith("_transformer.conv1.weight") else shape


def convert_official_state(state: dict, cfg: Config) -> dict[str, torch.Tensor]:
    """The authors' state dict → our checkpoint tensors (``model.*`` / ``loss.*``), all checks applied."""
    if not isinstance(state, dict) or not state or not all(isinstance(k, str) for k in state):
        raise ConvertError(f"expected a state dict (name → tensor), got {type(state).__name__}")
    if all(k.startswith("module.") for k in state):          # a DDP-wrapped save
        state = {k[len("module."):]: v for k, v in state.items()}
    with torch.device("meta"):
        model = SEDS(cfg.model)
    kmap = official_key_map(model)
    expected = _expected(model)
    if set(kmap.values()) != set(expected):   # guards the table against a change of the model
        raise ConvertError(f"key table out of date: {sorted(set(kmap.values()) ^ set(expected))[:8]}")
    known = set(kmap) | set(UNUSED_OFFICIAL_KEYS) | {PE_KEY}
    missing = sorted(k for k in list(kmap) + [PE_KEY] if k not in state)
    unexpected = sorted(k for k in state if k not in known)
    bad = [k for k, v in state.items() if k in known and not torch.is_tensor(v)]
    shapes = []
    for src, dst in kmap.items():
        if src in state and torch.is_tensor(state[src]):
            want = _their_shape(dst, tuple(expected[dst].shape))
            if tuple(state[src].shape) != want:
                shapes.append(f"{src}: checkpoint {tuple(state[src].shape)}, expected {want} (→ {dst})")
    if missing or unexpected or shapes or bad:
        lines = ["not a checkpoint of the authors' SEDS model (How2Sign / PHOENIX / CSL-Daily layout):"]
        lines += [f"  missing: {k}" for k in missing] + [f"  unexpected: {k}" for k in unexpected]
        lines += [f"  shape: {s}" for s in shapes] + [f"  not a tensor: {k}" for k in bad]
        raise ConvertError("\n".join(lines))
    pe = state[PE_KEY]
    t = cfg.model.max_clips + 1
    ref = sinusoidal_positions(t, cfg.model.dim)
    if pe.dim() != 3 or pe.shape[0] != 1 or pe.shape[1] < t or pe.shape[2] != cfg.model.dim \
            or not torch.allclose(pe[0, :t].float(), ref, atol=1e-5):
        raise ConvertError(f"{PE_KEY}: not the sinusoidal table this model computes (first {t} rows)")
    out = {}
    for src, dst in kmap.items():
        v = state[src].detach().to("cpu")
        v = v.float() if v.is_floating_point() else v            # dtype policy: floating → float32 (exact)
        out[dst] = v.reshape(expected[dst].shape).contiguous()
    return out


def read_torch_state(path: str | Path) -> dict:
    """A released checkpoint as loaded (``weights_only=True``; its keys are checked by the converters)."""
    return read_state_dict(path, error=ConvertError, missing_error=FileNotFoundError, unwrap=(), require_tensors=False)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def convert_official(src: str | Path, out: str | Path, dataset: str = "how2sign", verify: bool = True) -> Path:
    """Read a released checkpoint, write ``out/model.safetensors`` + ``out/config.json``; with ``verify`` load
    it back strictly through :func:`seds.checkpoint.load_checkpoint`."""
    src = Path(src)
    cfg = official_config(dataset)
    tensors = convert_official_state(read_torch_state(src), cfg)
    info = {"converted_from": "authors' SEDS checkpoint (longtaojiang/SEDS @ 434e3f7 layout)",
            "source_file": src.name, "source_sha256": _sha256(src), "variant": cfg.model.variant,
            "dataset": dataset, "text_tokenizer": TEXT_TOKENIZER, "dtype_policy": "float32 (fp16 → fp32 exact)",
            "dropped_unused_keys": list(UNUSED_OFFICIAL_KEYS) + [PE_KEY + " (recomputed, checked)"]}
    folder = write_checkpoint(out, tensors, cfg, info)
    if verify:
        load_checkpoint(folder)
    return folder


def convert_signbert(src: str | Path, out: str | Path) -> dict:
    """The released ``pretrain_signbert.pth`` → ``out/signbert_init.safetensors`` (authors' key names, float32,
    only the ``embed.*`` / ``GCN_Conv.*`` sub-networks) + ``signbert_init.json`` (what was found)."""
    src = Path(src)
    obj = read_torch_state(src)
    enc = SignBertPoseEncoder()
    report = load_pretrain_signbert(enc, obj)             # every key and shape checked
    sd = obj["state_dict"] if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict) else obj
    if "GCN_Transform" in sd:
        sd = sd["GCN_Transform"]
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    keep = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in sd.items()
            if k.startswith(("embed.", "GCN_Conv.")) and torch.is_tensor(v)}
    out = Path(out)
    atomic_save_file(keep, out / SIGNBERT_INIT, {"format": "seds-signbert-init/1"})
    doc = {"format": "seds-signbert-init/1", "source_file": src.name, "source_sha256": _sha256(src),
           "keys": len(keep), **report}
    atomic_write_bytes(out / "signbert_init.json", json.dumps(doc, indent=2).encode())
    return doc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog=prog("seds.convert", "seds-convert"), description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("official", help="a released SEDS checkpoint (e.g. h2s_best_model.bin) → checkpoint folder")
    o.add_argument("checkpoint")
    o.add_argument("--out", required=True)
    o.add_argument("--dataset", default="how2sign", choices=DATASETS)
    o.add_argument("--no-verify", action="store_true", help="skip loading the result back")
    s = sub.add_parser("signbert", help="the released pretrain_signbert.pth → official pose encoder init")
    s.add_argument("checkpoint")
    s.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "official":
            folder = convert_official(args.checkpoint, args.out, args.dataset, verify=not args.no_verify)
            print(f"wrote {folder} (variant official, dataset {args.dataset}); evaluate with "
                  f"python -m seds.evaluate --checkpoint {folder} --split test")
        else:
            doc = convert_signbert(args.checkpoint, args.out)
            print(f"wrote {Path(args.out) / SIGNBERT_INIT}: {doc['keys']} keys, loaded {doc.get('loaded')}, "
                  f"left at init {doc.get('left_at_init')}; use model.pose.hand_init={args.out}")
    except (ConvertError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
