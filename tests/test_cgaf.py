"""CGAF (Eq. 2–3): sampling, interpolation, wrap-around and masking against naive references."""
import math

import pytest
import torch

from seds.config import FusionConfig
from seds.model.cgaf import CGAF, CrossGlossAttention, interpolate_at, reference_offsets
from seds.model.fusion import build_fusion
from seds.config import FUSION_KINDS


def test_reference_offsets_are_centred():
    assert reference_offsets(5).tolist() == [-2, -1, 0, 1, 2]
    assert reference_offsets(3).tolist() == [-1, 0, 1]
    assert reference_offsets(4).tolist() == [-1.5, -0.5, 0.5, 1.5]


def test_interpolation_at_fractional_positions_and_wrap():
    seq = torch.arange(5, dtype=torch.float32).view(1, 1, 5, 1) * 10     # values 0,10,20,30,40
    length = torch.tensor([4])                                          # clip 4 is padding
    pos = torch.tensor([[[[0.0, 0.25, 1.5, 3.0, 3.5, 3.75]]]])
    got = interpolate_at(seq, pos, length).flatten().tolist()
    # 3.5 lies between clip 3 (30) and clip 0 (0): wraps inside the valid length, never reads clip 4
    expected = [0.0, 2.5, 15.0, 30.0, 15.0, 7.5]
    assert got == pytest.approx(expected)


def naive_cross_gloss(attn: CrossGlossAttention, x, y, lengths):
    """Loops over batch, heads, queries and keys."""
    B, T, D = x.shape
    H, N, dh = attn.heads, attn.num_keys, attn.head_dim
    q = attn.q(x)
    k = attn.k(y)
    v = attn.v(y)
    off = attn.offsets(q)
    out = torch.zeros(B, T, D, dtype=x.dtype)
    for b in range(B):
        Lb = lengths[b]
        for h in range(H):
            for t in range(T):
                scores, vals = [], []
                for n in range(N):
                    p = (t + (n - (N - 1) / 2) + float(off[b, t, h * N + n])) % Lb
                    i0 = math.floor(p)
                    w = p - i0
                    i1 = (i0 + 1) % Lb
                    ks = (1 - w) * k[b, i0, h * dh:(h + 1) * dh] + w * k[b, i1, h * dh:(h + 1) * dh]
                    vs = (1 - w) * v[b, i0, h * dh:(h + 1) * dh] + w * v[b, i1, h * dh:(h + 1) * dh]
                    scores.append(float((q[b, t, h * dh:(h + 1) * dh] * ks).sum()) / math.sqrt(dh))
                    vals.append(vs)
                m = max(scores)
                e = [math.exp(s - m) for s in scores]
                z = sum(e)
                out[b, t, h * dh:(h + 1) * dh] = sum(ei / z * vi for ei, vi in zip(e, vals))
    return attn.out(out)


@pytest.mark.parametrize("zero_offsets", [True, False])
def test_cross_gloss_attention_matches_loops(zero_offsets):
    torch.manual_seed(0)
    attn = CrossGlossAttention(dim=8, heads=2, num_keys=3).double()
    if not zero_offsets:
        with torch.no_grad():
            attn.offsets.weight.normal_(0, 0.7)
            attn.offsets.bias.normal_(0, 1.5)
    B, T = 2, 6
    x, y = torch.randn(B, T, 8, dtype=torch.float64), torch.randn(B, T, 8, dtype=torch.float64)
    lengths = [6, 4]
    mask = torch.arange(T)[None] < torch.tensor(lengths)[:, None]
    got = attn(x, y, mask)
    ref = naive_cross_gloss(attn, x, y, lengths)
    valid = mask[:, :, None].expand_as(got)
    torch.testing.assert_close(got[valid], ref[valid], rtol=1e-9, atol=1e-9)


def test_zero_offsets_is_attention_over_the_fixed_local_window():
    torch.manual_seed(1)
    attn = CrossGlossAttention(dim=4, heads=1, num_keys=3).double()
    B, T = 1, 5
    x, y = torch.randn(B, T, 4, dtype=torch.float64), torch.randn(B, T, 4, dtype=torch.float64)
    mask = torch.ones(B, T, dtype=torch.bool)
    got = attn(x, y, mask)
    q, k, v = attn.q(x)[0], attn.k(y)[0], attn.v(y)[0]
    ref = []
    for t in range(T):
        idx = [(t - 1) % T, t, (t + 1) % T]
        s = torch.stack([q[t] @ k[i] for i in idx]) / 2.0
        w = torch.softmax(s, 0)
        ref.append(sum(w[j] * v[i] for j, i in enumerate(idx)))
    torch.testing.assert_close(got[0], attn.out(torch.stack(ref)))


@pytest.mark.parametrize("kind", FUSION_KINDS)
def test_padding_never_leaks_into_valid_clips(kind):
    torch.manual_seed(0)
    fusion = build_fusion(16, FusionConfig(kind=kind, heads=2, ff=32, dropout=0.0)).eval()
    B, T = 2, 5
    p, r = torch.randn(B, T, 16), torch.randn(B, T, 16)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    base = fusion(p, r, mask)
    # change padded content and add more padding: valid outputs must not move
    p2 = torch.cat([p, torch.randn(B, 3, 16)], 1)
    r2 = torch.cat([r, torch.randn(B, 3, 16)], 1)
    p2[1, 3:] = 99.0
    r2[1, 3:] = -99.0
    mask2 = torch.cat([mask, torch.zeros(B, 3, dtype=torch.bool)], 1)
    out = fusion(p2, r2, mask2)
    torch.testing.assert_close(out[:, :5][mask], base[mask], rtol=1e-5, atol=1e-5)
    assert out[~mask2].abs().max() == 0


def test_cgaf_gradients_reach_offsets_and_every_parameter():
    torch.manual_seed(0)
    cgaf = CGAF(16, FusionConfig(heads=2, ff=32, dropout=0.0))
    p, r = torch.randn(2, 6, 16), torch.randn(2, 6, 16)
    mask = torch.ones(2, 6, dtype=torch.bool)
    cgaf(p, r, mask).pow(2).sum().backward()
    for name, prm in cgaf.named_parameters():
        assert prm.grad is not None and prm.grad.abs().sum() > 0, name
