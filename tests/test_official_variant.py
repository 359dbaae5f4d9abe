"""The ``official`` variant's switches, one by one, against the authors' modules at small sizes (fast).

The whole model is compared in tests/test_official_parity.py (slow); here each piece that ``VariantOptions``
changes is checked on its own: grid-sample sampling, the [CLS]-keeping token tower, the CLIP text tower, CGAF
(roles, offsets, wrap, no mask, eps, output), the similarities with padding in the softmax, the dual-mix losses.
The authors' modules are imported from ../shared/reference/seds-official (read-only; skipped if absent).
"""
from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from seds.config import VARIANT_OPTIONS, FusionConfig, LossConfig, TransformerConfig
from seds.losses import SEDSLoss
from seds.model.cgaf import CGAF, grid_sample_at, reference_offsets
from seds.model.clip_text import ClipTextTower, eot_mask
from seds.model.interaction_transformer import InteractionTransformer
from seds.model.seds import TextEmbedding, VideoEmbedding
from seds.similarity import fine_grained_scores, pose_rgb_scores

OFFICIAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "seds-official"
OPTS = VARIANT_OPTIONS["official"]


@pytest.fixture
def reference(monkeypatch):
    if not (OFFICIAL / "modules" / "module_clip.py").is_file():
        pytest.skip(f"the authors' code is not at {OFFICIAL} (../shared/reference beside the repo)")
    monkeypatch.syspath_prepend(str(OFFICIAL))
    # their modules/file_utils.py imports remote-download helpers at import time (never called here)
    for name in ("boto3", "botocore", "botocore.exceptions", "requests"):
        try:
            __import__(name)
        except ImportError:
            mod = types.ModuleType(name)
            mod.ClientError = type("ClientError", (Exception,), {})
            monkeypatch.setitem(sys.modules, name, mod)
    return OFFICIAL


def _randomize(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():       # every parameter non-trivial; LayerNorm-like weights around 1
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if name.endswith("weight") and p.dim() == 1 else 0.0))


def _mask65(n_valid, t):
    """The authors' video_mask: (B, t+1) long, 0 = valid, [CLS] at 0 always valid."""
    m = torch.ones(len(n_valid), t + 1, dtype=torch.long)
    m[:, 0] = 0
    for b, n in enumerate(n_valid):
        m[b, 1:1 + n] = 0
    return m


def test_grid_sample_equivalent():
    g = torch.Generator().manual_seed(0)
    b, h, t, d, q, n = 2, 3, 9, 4, 9, 5
    seq = torch.randn(b, h, t, d, generator=g, dtype=torch.float64)
    pos = torch.rand(b, h, q, n, generator=g, dtype=torch.float64) * 12 - 1.5     # also outside [0, t)
    grid = torch.stack([pos / (t - 1) * 2 - 1, torch.ones_like(pos)], -1).reshape(b * h, q, n, 2)
    ref = F.grid_sample(seq.reshape(b * h, 1, t, d).permute(0, 3, 1, 2), grid, mode="bilinear",
                        padding_mode="zeros", align_corners=False)                   # (BH, d, q, n)
    ref = ref.reshape(b, h, d, q, n).permute(0, 1, 3, 4, 2)
    assert torch.allclose(grid_sample_at(seq, pos), ref, atol=1e-12)


def test_floor_reference_offsets():
    assert reference_offsets(5, floor=True).tolist() == [-3, -2, -1, 0, 1]
    assert reference_offsets(3, floor=True).tolist() == [-2, -1, 0]


def test_token_tower_keeps_cls_and_matches_feature_transformer(reference):
    from modules.module_clip import FeatureTransformer, LayerNorm
    torch.manual_seed(0)
    t, c, w = 8, 12, 32
    theirs = FeatureTransformer(224, 32, w, 2, 2, 16, feature_len=t, input_size=c).eval()
    _randomize(theirs, 1)
    ours = InteractionTransformer(TransformerConfig(width=w, layers=2, heads=2), c, 16, t, keep_cls=True).eval()
    sd = {k.replace("transformer.resblocks.", "resblocks."): v for k, v in theirs.state_dict().items()
          if not k.startswith("conv2_trans")}
    sd["conv1.weight"] = sd["conv1.weight"][..., 0]
    ours.load_state_dict(sd, strict=True)
    x = torch.randn(3, t, c)
    mask = _mask65([8, 3, 1], t)
    with torch.no_grad():
        want = theirs.ln_post(theirs(x.transpose(1, 2)[..., None], video_mask=mask)) @ theirs.proj
        got = ours(x, mask[:, 1:] == 0)
    assert isinstance(theirs.ln_pre, LayerNorm)
    assert got.shape == (3, t + 1, 16)
    assert torch.allclose(got, want, atol=1e-5)         # padded tokens included, not zeroed


def test_clip_text_tower_matches_encode_text(reference):
    from modules.module_clip import CLIP
    torch.manual_seed(0)
    theirs = CLIP(16, 224, 1, 64, 32, 77, 500, 32, 2, 2, feature_len=8, input_size=12).eval()
    _randomize(theirs, 2)
    ours = ClipTextTower(out_dim=16, width=32, layers=2, heads=2, vocab_size=500).eval()
    sd = {k.replace("transformer.resblocks.", "resblocks."): v for k, v in theirs.state_dict().items()
          if k.startswith(("transformer.", "token_embedding", "positional_embedding", "ln_final", "text_projection"))}
    ours.load_state_dict(sd, strict=True)
    ids = torch.zeros(3, 32, dtype=torch.long)
    for b, n in enumerate([5, 31, 2]):
        ids[b, :n] = torch.randint(1, 498, (n,))
        ids[b, 0], ids[b, n] = 498, 499                   # SOT … EOT (the largest id)
    with torch.no_grad():
        mask_t, want = theirs.encode_text(ids, return_hidden=True)
        got, mask = ours(ids)
    assert torch.equal(mask, mask_t == 1) and torch.equal(mask, eot_mask(ids))
    assert torch.allclose(got, want, atol=1e-5)         # every position, padding included


def test_cgaf_matches_gloss_fusion_transformer(reference):
    from modules.module_fusionencoder import Gloss_Fusion_Transformer
    torch.manual_seed(0)
    d, t = 16, 10
    theirs = Gloss_Fusion_Transformer(hidden_size=d, ff_size=32, num_heads=2, dropout=0.0).eval()
    _randomize(theirs, 3)
    ours = CGAF(d, FusionConfig(heads=2, ff=32, dropout=0.0), OPTS).eval()
    att = {"k_layer": "k", "v_layer": "v", "q_layer": "q", "sample_offsets": "offsets", "output_layer": "out"}
    sd = {}
    for k, v in theirs.state_dict().items():
        k2 = (k.replace("P2R_layers", "p2r").replace("R2P_layers", "r2p").replace("P2R_layer_norm", "norm_p")
              .replace("R2P_layer_norm", "norm_r").replace("feed_forward.layer_norm", "ff.norm")
              .replace("feed_forward.pwff_layer", "ff.net").replace("layer_norm", "norm")
              .replace("mlp_fusion.mlp.c_fc", "mlp.fc1").replace("mlp_fusion.mlp.c_proj1", "mlp.fc3")
              .replace("mlp_fusion.mlp.c_proj", "mlp.fc2").replace("mlp_fusion.ln", "mlp.norm"))
        for a, b in att.items():
            k2 = k2.replace(f"src_src_att.{a}", f"attn.{b}")
        if k2 != "pe.pe":
            sd[k2] = v
    ours.load_state_dict(sd, strict=True)
    pose, rgb = torch.randn(3, t + 1, d) * 2, torch.randn(3, t + 1, d) * 2
    mask = _mask65([10, 4, 2], t)
    with torch.no_grad():
        want = theirs(pose, rgb, mask)
        got = ours(pose, rgb, mask == 0)
    assert torch.allclose(got, want, atol=1e-5)
    paper = CGAF(d, FusionConfig(heads=2, ff=32, dropout=0.0)).eval()
    paper.load_state_dict({k: v for k, v in sd.items() if not k.startswith("mlp.norm")}, strict=True)
    with torch.no_grad():                                 # the switches matter: the paper variant differs
        assert (paper(pose, rgb, mask == 0) - want).abs().max() > 1e-2


def _naive_official_scores(v, vm, t, tm, tau=0.07):
    """ARCHITECTURE.md: I2T = mean over valid clips of Σ_j s·softmax_j(s/τ) over ALL j; T2I likewise."""
    v, t = F.normalize(v, dim=-1), F.normalize(t, dim=-1)
    i2t = torch.zeros(len(v), len(t), dtype=v.dtype)
    t2i = torch.zeros_like(i2t)
    for a in range(len(v)):
        for b in range(len(t)):
            s = v[a] @ t[b].T
            i2t[a, b] = (s * torch.softmax(s / tau, 1)).sum(1)[vm[a]].mean()
            t2i[a, b] = (s * torch.softmax(s / tau, 0)).sum(0)[tm[b]].mean()
    return i2t, t2i


def test_similarities_and_losses_with_padding_in_the_softmax():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(3, 9, 8, generator=g, dtype=torch.float64)
    r = torch.randn(3, 9, 8, generator=g, dtype=torch.float64)
    t = torch.randn(3, 6, 8, generator=g, dtype=torch.float64)
    vm = torch.tensor([[1] * 9, [1] * 4 + [0] * 5, [1] * 2 + [0] * 7]).bool()
    tm = torch.tensor([[1] * 6, [1] * 3 + [0] * 3, [1] * 2 + [0] * 4]).bool()
    sc = fine_grained_scores(v, vm, t, tm, softmax_over_padding=True)
    i2t, t2i = _naive_official_scores(v, vm, t, tm)
    assert torch.allclose(sc.v2t, i2t) and torch.allclose(sc.t2v, t2i)
    assert not torch.allclose(fine_grained_scores(v, vm, t, tm).v2t, i2t)
    # Pose-RGB matching: sums over the positions valid in the querying video, softmax over all positions
    p2r, r2p = pose_rgb_scores(v, r, vm, softmax_over_padding=True)
    pn, rn = F.normalize(v, dim=-1), F.normalize(r, dim=-1)
    for a in range(3):
        for b in range(3):
            s = pn[a] @ rn[b].T
            want_p2r = (torch.diagonal(s) * torch.diagonal(torch.softmax(s / 0.07, 1)))[vm[a]].sum()
            want_r2p = (torch.diagonal(s) * torch.diagonal(torch.softmax(s / 0.07, 0)))[vm[b]].sum()
            assert torch.isclose(p2r[a, b], want_p2r) and torch.isclose(r2p[a, b], want_r2p)
    # loss: L_S = ((dm CE(I2T) + (1-dm) CE(I2Tᵀ)) + (dm CE(T2Iᵀ) + (1-dm) CE(T2I))) / 2; total with weights 1, 0.4
    crit = SEDSLoss(LossConfig(alpha=1.0, beta=0.4), opts=OPTS)
    with torch.no_grad():
        crit.logit_scale.fill_(2.5)
    terms = crit(VideoEmbedding({"pose": v, "rgb": r, "fused": v + r}, vm), TextEmbedding(t, tm))
    scale = torch.tensor(2.5, dtype=torch.float64).exp()
    ce = lambda m: F.cross_entropy(m, torch.arange(3))                       # noqa: E731
    mix = lambda m: 0.5 * ce(m) + 0.5 * ce(m.T)                                # noqa: E731
    total = 0
    for s, f in (("fused", v + r), ("pose", v), ("rgb", r)):
        a, b = _naive_official_scores(f, vm, t, tm)
        want = (mix(scale * a) + mix(scale * b.T)) / 2
        assert torch.isclose(terms[f"t-{s}"].double(), want, rtol=1e-6), s
        total = total + want
    match = (mix(scale * p2r) + mix(scale * r2p.T)) / 2
    assert torch.isclose(terms["p-r"].double(), match, rtol=1e-6)
    assert torch.isclose(terms["loss"].double(), total + 0.4 * match, rtol=1e-6)
