"""Numerical parity of ``model.variant: official`` with the authors' code (CPU, fp32, same random weights).

The authors' CLIP4Clip is built and run by the reference harness (``../shared/reference/harness/run_official.py``,
unedited code of longtaojiang/SEDS @ 434e3f7 with the stubs its docstring lists: a generated CLIP ViT-B/32-shaped
state dict instead of ViT-B-32.pt, no CUDA, gloo). It writes its random state dict in the exact format of a
released checkpoint and records the inputs and every intermediate tensor of its ``eval_epoch`` and of a
train-mode forward with dropout off. Here that file goes through ``seds.convert.convert_official`` (the
converter + strict ``load_checkpoint``) and our model reproduces: pose / RGB / fused / text tokens, the I2T and
T2I matrices of the three streams (eval), the same in train mode (BatchNorm on batch statistics) with the
Pose-RGB matching scores, and every loss term. Tolerances (issue 27, :data:`TOLERANCES`): a few times each
quantity's measured noise floor; a single weight changed by 1e-3 in the pose encoder, CGAF or the text tower
makes them fail (the negative controls below).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seds.checkpoint import load_checkpoint
from seds.convert import convert_official
from seds.similarity import pose_rgb_scores

REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference"
HARNESS = REFERENCE / "harness" / "run_official.py"
# (key prefix, tolerance): max |difference|, loss terms (``loss:``) relative. Each a few times its noise floor —
# measured on a 2-core CPU, 2 threads (-s prints them): tokens pose / rgb / text ≤ 1.9e-6, fused ≤ 3.8e-6 (README,
# another run: all ≤ 5.3e-6); I2T / T2I / eval scores ≤ 4.8e-7 (README 5.5e-7); Pose-RGB matching ≤ 2.1e-6
# (README 2.9e-6); loss terms ≤ 1.2e-7 relative (README 3.8e-7).
TOLERANCES = (("loss:", 1e-6), ("I2T", 2e-6), ("T2I", 2e-6), ("eval_score", 2e-6), ("P2R", 8e-6), ("R2P", 8e-6),
              ("fused", 1.5e-5), ("", 6e-6))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    if not HARNESS.is_file():
        pytest.skip(f"the authors' code and harness are not present ({REFERENCE}: ../shared beside the repo)")
    out = tmp_path_factory.mktemp("official")
    env = dict(os.environ, SEDS_OFFICIAL_OUT=str(out), PYTHONPATH="")
    cmd = [sys.executable, str(HARNESS), "--fp32", "--no-backward", "--threads", str(torch.get_num_threads()),
           "--save-state-dict", str(out / "h2s_random_model.bin")]
    r = subprocess.run(cmd, cwd=HARNESS.parent, env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, f"reference harness failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    folder = convert_official(out / "h2s_random_model.bin", out / "converted", dataset="how2sign")  # + strict load
    (out / "h2s_random_model.bin").unlink()
    model, loss, cfg, info = load_checkpoint(folder)
    io = torch.load(out / "official_io_fp32.pt", map_location="cpu", weights_only=False)  # written just now
    return model, loss, cfg, info, io


def batch(b: dict) -> dict:
    """The authors' collated batch → the official variant's batch keys (seds.model.seds docstring)."""
    return {"left": b["left_pose"], "right": b["right_pose"], "body": b["body_pose"],
            "clip_starts": b["body_clips_start"], "clip_mask": b["body_mask"][:, 1:] == 0,
            "rgb": b["RGB_feature"][..., 0].transpose(1, 2)}


def tolerance(key: str) -> float:
    return next(tol for prefix, tol in TOLERANCES if key.startswith(prefix))


def over(diffs: dict) -> dict:
    """The differences above their tolerance: {key: (difference, tolerance)}."""
    return {k: (v, tolerance(k)) for k, v in diffs.items() if not v <= tolerance(k)}


def maxdiff(a, b) -> float:
    return float((a.detach().float() - b.detach().float()).abs().max())


def token_diffs(v, t, ref) -> dict:
    pairs = {"pose": (v["pose"], ref["visual_hidden_pose"]), "rgb": (v["rgb"], ref["visual_hidden_rgb"]),
             "fused": (v["fused"], ref["fusion_hidden"]), "text": (t.words, ref["text_hidden"])}
    return {k: maxdiff(a, b) for k, (a, b) in pairs.items()}


def test_converted_config(official):
    _, _, cfg, info, _ = official
    assert cfg.model.variant == "official" and cfg.data.dataset == "how2sign"
    assert cfg.model.text.model == "openai-clip" and "clip-bpe" in info["text_tokenizer"]


def eval_diffs(model, loss, io) -> dict:
    """Max abs differences of the eval forward (tokens, I2T/T2I, the eval score) against the authors'."""
    ref = io["eval"]
    model.eval()
    with torch.no_grad():
        v = model.encode_batch_video(batch(io["eval_batch"]))
        t = model.encode_text({"input_ids": ref["text_ids"].reshape(-1, 32)})
    assert torch.equal(v.mask, ref["video_mask"] == 0) and torch.equal(t.mask, ref["text_mask"] == 1)
    diffs = token_diffs(v, t, ref)
    scale = loss.scale()
    with torch.no_grad():
        for ours, theirs in (("fused", "fusion"), ("pose", "pose"), ("rgb", "rgb")):
            sc = model.scores(v, t, ours)
            diffs[f"I2T_{theirs}"] = maxdiff(scale * sc.v2t, ref[f"I2T_{theirs}"])
            diffs[f"T2I_{theirs}"] = maxdiff(scale * sc.t2v, ref[f"T2I_{theirs}"])
            diffs[f"eval_score_{theirs}"] = maxdiff(scale * sc.mean, torch.as_tensor(ref[f"sim_mix_{theirs}"]))
    return diffs


def train_diffs(model, loss, io) -> dict:
    """Max abs differences of a train-mode forward with dropout off (tokens, scores, Pose-RGB matching) and
    relative differences of every loss term (keys ``loss:<term>``) against the authors'."""
    ref, ref_loss, b = io["train_dropout_off"], io["train_losses_dropout_off"], io["train_batch"]
    assert torch.equal(b["pairs_text"], b["pairs_text_aug"])       # harness: no text augmentation
    assert ref_loss["loss_pose_kl"] == 0 and ref_loss["loss_rgb_kl"] == 0     # off in the H2S recipe
    running = [x.clone() for x in model.buffers()]               # BatchNorm statistics, restored after
    model.train()
    for m in model.modules():                                     # train mode, dropout off (as the harness)
        if isinstance(m, torch.nn.Dropout):
            m.eval()
    try:
        with torch.no_grad():
            v = model.encode_batch_video(batch(b))
            t = model.encode_text({"input_ids": b["pairs_text"].reshape(-1, 32)})
            terms = loss(v, t)
            scale = loss.scale()
            diffs = token_diffs(v, t, ref)
            for ours, theirs in (("fused", "fusion"), ("pose", "pose"), ("rgb", "rgb")):
                sc = model.scores(v, t, ours)
                diffs[f"I2T_{theirs}"] = maxdiff(scale * sc.v2t, ref[f"I2T_{theirs}"])
                diffs[f"T2I_{theirs}"] = maxdiff(scale * sc.t2v, ref[f"T2I_{theirs}"])
            p2r, r2p = pose_rgb_scores(v["pose"], v["rgb"], v.mask, softmax_over_padding=True)
            diffs["P2R"], diffs["R2P"] = maxdiff(scale * p2r, ref["P2R_sim"]), maxdiff(scale * r2p, ref["R2P_sim"])
    finally:
        model.eval()
        with torch.no_grad():
            for x, r in zip(model.buffers(), running):
                x.copy_(r)
    pairs = {"loss": ("loss", 1.0), "t-fused": ("sim_loss_fusion", 1.0), "t-pose": ("sim_loss_pose", 1.0),
             "t-rgb": ("sim_loss_rgb", 1.0), "p-r": ("sim_loss_r2p_x0.4", 0.4)}
    diffs.update({f"loss:{k}": abs(float(terms[k]) * w - ref_loss[n]) / abs(ref_loss[n]) for k, (n, w) in pairs.items()})
    return diffs


def test_eval_tokens_and_similarity_matrices_match(official):
    model, loss, _, _, io = official
    diffs = eval_diffs(model, loss, io)
    print("eval max abs diff:", diffs)
    assert not over(diffs), over(diffs)


def test_train_mode_tokens_scores_and_every_loss_term_match(official):
    model, loss, _, _, io = official
    diffs = train_diffs(model, loss, io)
    print("train max abs diff (loss: relative):", diffs)
    assert not over(diffs), over(diffs)


@pytest.mark.parametrize("name, fails", [
    ("pose_encoder.body.joint_blocks.1.pointwise.weight", ("train",)),   # eval tokens move 2.7e-6 only: under 6e-6
    ("fusion.mlp.fc1.weight", ("eval", "train")),                       # CGAF's fusion MLP (Eq. 3)
    ("text.backbone.resblocks.0.attn.in_proj_weight", ("eval", "train")),
])
def test_a_weight_changed_by_1e_3_fails_the_parity(official, name, fails):
    """Negative controls: one weight + 1e-3 (pose encoder, CGAF, text tower) must break the checks above.
    Measured (eval / train, max |Δ| over the tolerance's key): pose 2.7e-6 / 2.0e-3 (pose tokens), CGAF fused
    tokens 2.9e-5 / 2.9e-5, text tokens 5.0e-5 / 5.0e-5. (A query weight of the cross-gloss attention,
    fusion.p2r.0.attn.q.weight[0], moves the fused tokens by 6.3e-6 only — within the noise: not a control.)"""
    model, loss, _, _, io = official
    p = dict(model.named_parameters())[name]
    with torch.no_grad():
        p.view(-1)[0] += 1e-3
    try:
        found = {"eval": over(eval_diffs(model, loss, io)), "train": over(train_diffs(model, loss, io))}
    finally:
        with torch.no_grad():
            p.view(-1)[0] -= 1e-3
    print(name, "+1e-3 over tolerance:", found)
    for check in fails:
        assert found[check], (name, check)


def test_our_tokenizer_reproduces_the_authors_ids(official):
    pytest.importorskip("seds.clip_bpe", reason="the CLIP BPE tokenizer (seds/clip_bpe.py) is not merged yet")
    model, _, _, _, io = official
    b = io["eval_batch"]
    texts = ["Hi!", "Make it a little easier to walk.",      # the harness's sentences; the long one is sub-sampled
             "Allright, the tools we're going to use today, one of them is a spaded shovel and we're going to dig up "
             "the beds here, and then we will walk along the path to the other side of the garden."]
    want = b["pairs_text"].reshape(-1, 32)
    got = model.tokenize(texts)["input_ids"]
    for text, row in zip(texts, got):
        assert any(torch.equal(row, w) for w in want), text
