"""InfoNCE, Eq. 4 and Eq. 7 against explicit reference computations."""
import math

import pytest
import torch

from seds.config import LossConfig
from seds.losses import SEDSLoss, info_nce, pose_rgb_loss, text_video_loss
from seds.model.seds import TextEmbedding, VideoEmbedding
from seds.similarity import fine_grained_scores, pose_rgb_scores


def naive_info_nce(logits):
    rows = logits.tolist()
    total = 0.0
    for i, row in enumerate(rows):
        m = max(row)
        lse = m + math.log(sum(math.exp(x - m) for x in row))
        total += lse - row[i]
    return total / len(rows)


def test_info_nce_matches_loop():
    x = torch.randn(6, 6, dtype=torch.float64)
    assert float(info_nce(x)) == pytest.approx(naive_info_nce(x), rel=1e-6)


def test_info_nce_needs_square():
    with pytest.raises(ValueError, match="square"):
        info_nce(torch.randn(3, 4))


def test_text_video_loss_directions():
    g = torch.Generator().manual_seed(0)
    t2v, v2t = torch.randn(5, 5, generator=g), torch.randn(5, 5, generator=g)
    scale = torch.tensor(10.0)
    l, l_t2k, l_k2t = text_video_loss(t2v, v2t, scale)
    # text→video: rows are texts, i.e. the transpose of the (video, text) matrix
    assert float(l_t2k) == pytest.approx(naive_info_nce(10 * t2v.t()), rel=1e-5)
    assert float(l_k2t) == pytest.approx(naive_info_nce(10 * v2t), rel=1e-5)
    assert float(l) == pytest.approx(0.5 * (float(l_t2k) + float(l_k2t)), rel=1e-6)


def _embeddings(B=4, T=6, L=5, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 4:] = False
    wm = torch.ones(B, L, dtype=torch.bool)
    wm[2, 2:] = False
    streams = {k: torch.randn(B, T, D, generator=g) for k in ("pose", "rgb", "fused")}
    return VideoEmbedding(streams, mask), TextEmbedding(torch.randn(B, L, D, generator=g), wm)


def test_total_loss_is_eq7():
    video, text = _embeddings()
    cfg = LossConfig(alpha=0.8, beta=0.4)
    crit = SEDSLoss(cfg)
    terms = crit(video, text)
    scale = crit.scale()
    ref = {}
    for s in ("fused", "pose", "rgb"):
        sc = fine_grained_scores(video[s], video.mask, text.words, text.mask)
        ref[s] = 0.5 * (naive_info_nce(scale * sc.t2v.t()) + naive_info_nce(scale * sc.v2t))
    p2r, r2p = pose_rgb_scores(video["pose"], video["rgb"], video.mask)
    ref_pr = 0.5 * (naive_info_nce(scale * p2r) + naive_info_nce(scale * r2p.t()))
    expected = ref["fused"] + 0.8 * (ref["pose"] + ref["rgb"]) + 0.4 * ref_pr
    assert float(terms["p-r"]) == pytest.approx(ref_pr, rel=1e-5)
    assert float(terms["tva"]) == pytest.approx(ref["fused"] + 0.8 * (ref["pose"] + ref["rgb"]), rel=1e-5)
    assert float(terms["loss"]) == pytest.approx(expected, rel=1e-5)
    assert float(pose_rgb_loss(p2r, r2p, scale)) == pytest.approx(ref_pr, rel=1e-5)


def test_beta_zero_drops_matching_and_single_stream():
    video, text = _embeddings()
    terms = SEDSLoss(LossConfig(beta=0.0))(video, text)
    assert "p-r" not in terms
    single = VideoEmbedding({"pose": video["pose"], "fused": video["pose"]}, video.mask)
    t = SEDSLoss()(single, text)
    assert float(t["loss"]) == pytest.approx(float(t["t-pose"]))


def test_temperature_is_learnable_and_clamped():
    video, text = _embeddings()
    crit = SEDSLoss(LossConfig(init_temperature=0.07, max_logit_scale=100))
    crit(video, text)["loss"].backward()
    assert crit.logit_scale.grad is not None and crit.logit_scale.grad.abs() > 0
    with torch.no_grad():
        crit.logit_scale.fill_(10.0)
    assert float(crit.scale()) == pytest.approx(100.0)
