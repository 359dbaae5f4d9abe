"""K training steps of the authors' ``train_epoch`` and of ours from the same weights and batches, on CPU with
two gloo processes each (as their DDP runs): ``python -m torch.distributed.run --nproc_per_node 2
tests/official_training_driver.py {theirs|ours} OUT [--steps K] [--float64] [--controls key=value ...]
[key=value ...]``. Run by ``tests/test_official_training_parity.py``; not a test module itself. ``--float64``: both
codes in float64 (stub S9, :func:`float64_everywhere`); ``--controls``: our side once per changed hyper-parameter
(negative controls), in the same processes.

``theirs``: the authors' code (``../shared/reference/seds-official``, unedited) imported the way the reference
harness does (``harness/run_official.py``: its stubs S2–S7 — ``.cuda()`` a no-op while building, gloo, no
``set_device``, the rlimit clamp, a ``textaugment`` stub, absent optional imports — plus one more, S8: their
``prep_optimizer`` wraps the model in ``DistributedDataParallel(device_ids=[rank])``, which CPU modules refuse,
so ``device_ids``/``output_device`` are dropped). CLIP weights come from the harness's own generator
(``make_clip_vit_b32_state_dict``, read from its source), cut to **one** block per tower to keep the run short
(``--visual_num_hidden_layers 1``; text blocks 1–11 removed), the first 1024 rows of the token embedding (ids
drawn below 1024) and 8 clip slots instead of 64 (``--feature_len 8``:
their per-clip temporal block runs on every slot, which dominates a CPU step). ``model.float()`` and every ``nn.Dropout`` at
p = 0 (dropout masks cannot be shared). Their ``prep_optimizer`` (BertAdam, groups, ``warmup_cosine``) and
``train_epoch`` run unchanged over K pre-collated batches per rank; hooks record the loss of every step and the
learning rate each group's parameters get.

``ours``: the same initial weights through ``seds.convert.official_key_map``, our model with one block per
tower, ``seds.optim.build_optimizer`` / ``apply_gradients`` from ``configs/how2sign.yaml`` (overridable by
``key=value``, e.g. ``train.eps=1e-8`` for a negative control) and the step of ``seds.train``: encode, gather
across ranks, loss (augmented text on the text-to-video side), backward, gradient all-reduce / world.
"""
from __future__ import annotations

import argparse
import ast
import json
import math
import os
import sys
import types
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference"
OFFICIAL = REFERENCE / "seds-official"
HARNESS = REFERENCE / "harness" / "run_official.py"
B, SLOTS, WORDS = 2, 8, 32           # videos per rank, clip slots (--feature_len; theirs is 64), tokens
VOCAB = 1024                         # token-embedding rows kept (CLIP's 49408 cut: start/end of text = the two last ids)
T_MAX = SLOTS + 15


def load_function(path: Path, name: str, namespace: dict):
    """One top-level function of a source file, compiled into ``namespace`` (their code is read, not copied)."""
    tree = ast.parse(path.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    exec(compile(ast.Module([node], []), str(path), "exec"), namespace)
    return namespace[name]


def make_batches(steps: int, world: int, seed: int = 0) -> list[list[dict]]:
    """``[step][rank]`` → a batch in the authors' collated layout (random but valid: pixel keypoints, clip
    windows, masks, BPE ids ending in EOT; some rows' augmented text differs from the text)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        ranks = []
        for _ in range(world):
            frames = torch.randint(16, T_MAX + 1, (B,), generator=g)
            t = int(frames.max())
            pose = {k: torch.rand(B, t, v, 2, generator=g) * 255 for k, v in (("right", 21), ("left", 21), ("body", 7))}
            starts = torch.full((B, SLOTS), -1, dtype=torch.long)
            mask = torch.ones(B, SLOTS + 1, dtype=torch.long)
            rgb = torch.zeros(B, 1024, SLOTS, 1)
            for b in range(B):
                f = int(frames[b])
                for k in pose:
                    pose[k][b, f:] = 0
                n = f - 15
                starts[b, :n] = torch.arange(n)
                mask[b, :n + 1] = 0
                rgb[b, :, :n, 0] = torch.randn(1024, n, generator=g)
            ids = torch.zeros(B, 1, WORDS, dtype=torch.long)
            tmask = torch.zeros(B, 1, WORDS, dtype=torch.long)
            for b in range(B):
                n = int(torch.randint(5, WORDS - 1, (1,), generator=g))
                ids[b, 0, 0] = VOCAB - 2
                ids[b, 0, 1:n - 1] = torch.randint(1, VOCAB - 2, (n - 2,), generator=g)
                ids[b, 0, n - 1] = VOCAB - 1             # the largest id: both codes find the end by argmax
                tmask[b, 0, :n] = 1
            aug = ids.clone()
            aug[0, 0, [1, 2]] = aug[0, 0, [2, 1]]            # row 0: two words swapped (random_swap)
            ranks.append({"right_pose": pose["right"], "right_clips_start": starts.clone(),
                          "left_pose": pose["left"], "left_clips_start": starts.clone(),
                          "body_pose": pose["body"], "body_mask": mask, "body_clips_start": starts,
                          "RGB_feature": rgb, "pairs_text": ids, "pairs_mask": tmask,
                          "pairs_segment": torch.zeros_like(ids), "pairs_text_aug": aug, "pairs_mask_aug": tmask.clone()})
        out.append(ranks)
    return out


def no_dropout(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0


DTYPE = torch.float32       # set by --float64 (both sides)


def to_dtype(x):
    return x.to(DTYPE) if torch.is_tensor(x) and x.is_floating_point() else x


def float64_everywhere() -> None:
    """S9 (both sides, ``--float64``), applied after the model is built and before it is cast with
    ``.double()``: every float becomes float64. Both codes cast to float32 on purpose in a few places (their
    fp16-safe ``LayerNorm`` does ``x.type(torch.float32)``, their towers' outputs ``.float()``; ours mirror
    them); here ``Tensor.float()`` and ``Tensor.type(float32 / float16)`` return float64, and new tensors default
    to float64. Constant tables built at construction (positional encodings, graph adjacencies) keep their
    float32-computed values, the same on both sides."""
    global DTYPE
    if DTYPE == torch.float64:      # already (a second run in the same process)
        return
    DTYPE = torch.float64
    torch.set_default_dtype(torch.float64)
    torch.Tensor.float = lambda self, memory_format=torch.preserve_format: self.to(torch.float64)
    torch.Tensor.half = torch.Tensor.float
    to_type = torch.Tensor.type
    narrow = (torch.float32, torch.float16, "torch.FloatTensor", "torch.HalfTensor")

    def type_(self, dtype=None, non_blocking=False, **kw):
        if dtype is None:
            return to_type(self)
        return to_type(self, torch.float64 if dtype in narrow else dtype, non_blocking, **kw)
    torch.Tensor.type = type_


# --- the authors' side ---------------------------------------------------------------------------------

def stub_environment() -> None:
    """The harness's stubs S3–S7 (see its docstring) before their main module is imported."""
    for name in ("boto3", "botocore", "botocore.exceptions", "requests", "nltk", "nltk.data"):
        try:
            __import__(name)
        except ImportError:
            mod = types.ModuleType(name)
            mod.ClientError = type("ClientError", (Exception,), {})
            mod.path = []
            mod.data = mod
            mod.exceptions = mod
            sys.modules[name] = mod
    ta = types.ModuleType("textaugment")
    ta.EDA = type("EDA", (), {})
    sys.modules["textaugment"] = ta
    import resource
    orig = resource.setrlimit

    def setrlimit(which, limits):
        soft, hard = limits
        if hard not in (-1, resource.RLIM_INFINITY) and soft > hard:
            soft = hard
        return orig(which, (soft, hard))
    resource.setrlimit = setrlimit
    ipg = torch.distributed.init_process_group
    torch.distributed.init_process_group = lambda *a, **k: ipg(*a[1:], **{**k, "backend": "gloo"})
    torch.cuda.set_device = lambda *a, **k: None
    ddp = torch.nn.parallel.DistributedDataParallel

    class CpuDDP(ddp):      # S8: CPU modules take no device_ids
        def __init__(self, module, device_ids=None, output_device=None, **kw):
            super().__init__(module, **kw)
    torch.nn.parallel.DistributedDataParallel = CpuDDP


def run_theirs(out: Path, steps: int, t_total: int, float64: bool) -> None:
    stub_environment()
    sys.path.insert(0, str(OFFICIAL))
    os.chdir(OFFICIAL)
    sys.argv = ["main_task_retrieval.py", "--do_train"]
    import main_task_retrieval as mtr         # their module calls init_process_group (2 ranks, gloo) at import
    from modules.module_clip import CLIP
    from modules.optimization import SCHEDULES

    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    ns = {"torch": torch, "math": math}
    make_sd = load_function(HARNESS, "make_clip_vit_b32_state_dict", ns)
    sd = make_sd()
    for k in [k for k in sd if k.startswith("transformer.resblocks.") and k.split(".")[2] != "0"]:
        del sd[k]
    sd["token_embedding.weight"] = sd["token_embedding.weight"][:VOCAB]      # their CLIP takes its sizes from sd
    CLIP.get_config = staticmethod(lambda pretrained_clip_name="ViT-B/32": {k: v.clone() for k, v in sd.items()})

    script = (OFFICIAL / "scripts" / "train_h2s.sh").read_text().replace("\\\n", " ")
    import shlex
    toks = shlex.split(script.split("main_task_retrieval.py", 1)[1])
    drop = {"--init_sign_model", "--data_path", "--features_path", "--features_RGB_path", "--output_dir"}
    keep, i = [], 0
    while i < len(toks):
        if toks[i] in drop:
            i += 2
            continue
        keep.append(toks[i])
        i += 1
    sys.argv = ["main_task_retrieval.py", *keep, "--output_dir", str(out / f"their_run_{rank}"),
                "--visual_num_hidden_layers", "1", "--feature_len", str(SLOTS)]
    args = mtr.get_args()
    args.init_model = args.init_sign_model = None
    args.freeze_exfusion = False
    args.n_gpu = 1
    args.local_rank = rank
    args = mtr.set_seed_logger(args)
    cuda = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self          # S2, while building only
    try:
        model = mtr.init_model(args, torch.device("cpu"))
    finally:
        torch.Tensor.cuda = cuda
    model = model.float()
    no_dropout(model)
    if float64:
        float64_everywhere()
        model = model.double()
    if rank == 0:
        torch.save({k: v.clone() for k, v in model.state_dict().items()}, out / "initial_state.pt")
    batches = [{k: to_dtype(v) for k, v in s[rank].items()} for s in make_batches(steps, world)]

    optimizer, scheduler, ddp_model = mtr.prep_optimizer(args, model, t_total, torch.device("cpu"), 1, rank,
                                                         coef_lr=args.coef_lr)
    losses, lrs = [], []
    dtypes = set()

    def record(m, inp, outp):       # returns None: the output is left as it is
        losses.append(float(outp[0].detach()))
        dtypes.add(str(outp[0].dtype))
    model.register_forward_hook(record)
    step = optimizer.step

    def recording_step(*a, **k):
        row = []
        for g in optimizer.param_groups:
            p = next((p for p in g["params"] if p.grad is not None), None)
            s = optimizer.state[p]["step"] if p is not None and optimizer.state[p] else 0
            row.append(g["lr"] * SCHEDULES[g["schedule"]](s / g["t_total"], g["warmup"]))
        lrs.append(row)
        return step(*a, **k)
    optimizer.step = recording_step
    mtr.logger = mtr.get_logger()
    mtr.train_epoch(0, args, ddp_model, batches, torch.device("cpu"), 1, optimizer, scheduler, 0, local_rank=rank)
    if rank == 0:
        torch.save({k: v.clone() for k, v in model.state_dict().items()}, out / "their_final.pt")
        (out / "theirs.json").write_text(json.dumps({"loss": losses, "lr": lrs, "loss_dtypes": sorted(dtypes)}))


# --- our side --------------------------------------------------------------------------------------------

def our_batch(b: dict) -> dict:
    return {"left": to_dtype(b["left_pose"]), "right": to_dtype(b["right_pose"]), "body": to_dtype(b["body_pose"]),
            "clip_starts": b["body_clips_start"], "clip_mask": b["body_mask"][:, 1:] == 0,
            "rgb": to_dtype(b["RGB_feature"][..., 0].transpose(1, 2))}


def build_ours(overrides: list[str]):
    """Our official model with one block per tower, the loss module, the config and the key map."""
    from seds.config import load_config
    from seds.convert import official_key_map
    from seds.losses import SEDSLoss
    from seds.model import create_model
    cfg = load_config(REPO / "configs" / "how2sign.yaml", ["model.pose_transformer.layers=1",
                                                           "model.rgb_transformer.layers=1", f"model.max_clips={SLOTS}", *overrides])
    model = create_model(cfg.model, hand_init=None)
    model.text.backbone.resblocks = model.text.backbone.resblocks[:1]
    model.text.backbone.token_embedding = torch.nn.Embedding(VOCAB, model.text.backbone.token_embedding.embedding_dim)
    crit = SEDSLoss(cfg.loss, tau=cfg.model.tau, opts=cfg.model.options)
    return model, crit, cfg, official_key_map(model)


def load_theirs_into(model, crit, kmap: dict, state: dict) -> None:
    ours = {"model": {}, "loss": {}}
    for theirs, mine in kmap.items():
        part, name = mine.split(".", 1)
        target = (model if part == "model" else crit).state_dict()[name]
        ours[part][name] = state[theirs].float().reshape(target.shape)
    model.load_state_dict(ours["model"], strict=False)      # fusion.pe.pe: our own table (checked by the converter)
    crit.load_state_dict(ours["loss"])


def run_ours(out: Path, steps: int, t_total: int, overrides: list[str], float64: bool, name: str = "ours") -> None:
    """Our side in the running process group; writes ``<name>.json`` (and ``our_final.pt`` for ``ours``)."""
    import torch.distributed as dist
    from seds.optim import apply_gradients, build_optimizer
    from seds.train import Dist, gather_embeddings, gather_text

    d = Dist(dist.get_rank(), dist.get_world_size())
    model, crit, cfg, kmap = build_ours(overrides)
    load_theirs_into(model, crit, kmap, torch.load(out / "initial_state.pt", weights_only=True))
    no_dropout(model)
    if float64:
        float64_everywhere()
        model, crit = model.double(), crit.double()
    cfg.train.epochs = 1
    opt, sched = build_optimizer(cfg.train, cfg.loss, model, crit, t_total)
    params = list(model.parameters()) + list(crit.parameters())
    model.train()
    losses, lrs, dtypes = [], [], set()
    for s in make_batches(steps, d.world):
        b = s[d.rank]
        v = model.encode_batch_video(our_batch(b))
        t = model.encode_text({"input_ids": b["pairs_text"][:, 0]})
        t_aug = gather_text(model.encode_text({"input_ids": b["pairs_text_aug"][:, 0]}), d)
        v, t = gather_embeddings(v, t, d)
        terms = crit(v, t, t_aug)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        for p in model.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= d.world
        lrs.append([g["lr"] for g in opt.param_groups])
        losses.append(float(terms["loss"].detach()))
        dtypes.add(str(terms["loss"].dtype))
        apply_gradients(cfg.train, cfg.loss, opt, sched, params, shards=d.world, logit_scale=crit.logit_scale)
    if d.main:
        inv = {v: k for k, v in kmap.items()}
        if name == "ours":
            final = {inv[f"model.{k}"]: v.detach().clone() for k, v in model.state_dict().items()
                     if f"model.{k}" in inv}
            final[inv["loss.logit_scale"]] = crit.logit_scale.detach().clone()
            torch.save(final, out / "our_final.pt")
        groups = [{"name": g["name"], "names": [inv[n] for n in g["names"]]} for g in opt.param_groups]
        (out / f"{name}.json").write_text(json.dumps({"loss": losses, "lr": lrs, "groups": groups,
                                                      "loss_dtypes": sorted(dtypes), "overrides": overrides}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("side", choices=("theirs", "ours"))
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--t-total", type=int, default=25)
    ap.add_argument("--float64", action="store_true", help="both sides in float64 (S9, float64_everywhere)")
    ap.add_argument("--controls", nargs="+", default=[],
                    help="ours: one run per key=value (negative controls), written to control_<i>.json")
    ap.add_argument("overrides", nargs="*")
    # PARITY_THREADS=2: the same run with another float summation order (measures the chaos floor, see the test)
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("PARITY_THREADS", "1")))
    np.random.seed(0)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.side == "theirs":
        run_theirs(a.out.resolve(), a.steps, a.t_total, a.float64)
    else:
        sys.path.insert(0, str(REPO))
        torch.distributed.init_process_group("gloo")
        if a.controls:
            for i, c in enumerate(a.controls):
                run_ours(a.out.resolve(), a.steps, a.t_total, [*a.overrides, c], a.float64, f"control_{i}")
        else:
            run_ours(a.out.resolve(), a.steps, a.t_total, a.overrides, a.float64)
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
