"""Fine-grained similarity and Pose-RGB matching against naive loops (SEDS Sec. 3.3, Eq. 5–6)."""
import math

import pytest
import torch

from seds.similarity import fine_grained_scores, pooled, pose_rgb_scores


def _norm(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def _softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    s = sum(e)
    return [x / s for x in e]


def naive_scores(video, vlen, text, tlen, tau):
    """M_t2k and M_k2t with explicit loops over pairs, clips and words."""
    bv, bt = len(video), len(text)
    t2v = [[0.0] * bt for _ in range(bv)]
    v2t = [[0.0] * bt for _ in range(bv)]
    for a in range(bv):
        clips = [_norm(video[a][i]) for i in range(vlen[a])]
        for b in range(bt):
            words = [_norm(text[b][j]) for j in range(tlen[b])]
            E = [[_dot(c, w) for w in words] for c in clips]
            per_clip = []
            for i in range(len(clips)):
                row = _softmax([E[i][j] / tau for j in range(len(words))])
                per_clip.append(sum(E[i][j] * row[j] for j in range(len(words))))
            v2t[a][b] = sum(per_clip) / len(per_clip)
            per_word = []
            for j in range(len(words)):
                col = _softmax([E[i][j] / tau for i in range(len(clips))])
                per_word.append(sum(E[i][j] * col[i] for i in range(len(clips))))
            t2v[a][b] = sum(per_word) / len(per_word)
    return torch.tensor(t2v, dtype=torch.float64), torch.tensor(v2t, dtype=torch.float64)


def naive_pose_rgb(pose, rgb, lens, tau):
    B = len(pose)
    p2r = [[0.0] * B for _ in range(B)]
    r2p = [[0.0] * B for _ in range(B)]
    for a in range(B):
        P = [_norm(pose[a][i]) for i in range(lens[a])]
        for b in range(B):
            R = [_norm(rgb[b][j]) for j in range(lens[b])]
            E = [[_dot(p, r) for r in R] for p in P]
            n = min(len(P), len(R))
            acc1 = acc2 = 0.0
            for i in range(n):
                w = _softmax([E[i][j] / tau for j in range(len(R))])
                acc1 += E[i][i] * w[i]
                w2 = _softmax([E[k][i] / tau for k in range(len(P))])
                acc2 += E[i][i] * w2[i]
            p2r[a][b] = acc1          # summed over clips, as the reference implementation
            r2p[a][b] = acc2
    return torch.tensor(p2r, dtype=torch.float64), torch.tensor(r2p, dtype=torch.float64)


def _random_batch(bv=3, bt=4, T=5, L=6, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(bv, T, D, generator=g, dtype=torch.float64)
    text = torch.randn(bt, L, D, generator=g, dtype=torch.float64)
    vlen = [T, 2, 1][:bv] + [T] * max(0, bv - 3)
    tlen = [L, 3, 1, 4][:bt] + [L] * max(0, bt - 4)
    vmask = torch.arange(T)[None] < torch.tensor(vlen)[:, None]
    tmask = torch.arange(L)[None] < torch.tensor(tlen)[:, None]
    return video, vmask, vlen, text, tmask, tlen


@pytest.mark.parametrize("tau", [0.07, 1.0])
def test_fine_grained_matches_naive_loops(tau):
    video, vmask, vlen, text, tmask, tlen = _random_batch()
    got = fine_grained_scores(video, vmask, text, tmask, tau=tau)
    ref_t2v, ref_v2t = naive_scores(video.tolist(), vlen, text.tolist(), tlen, tau)
    torch.testing.assert_close(got.t2v, ref_t2v.double(), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(got.v2t, ref_v2t.double(), rtol=1e-9, atol=1e-9)


def test_padding_never_changes_a_score():
    video, vmask, _, text, tmask, _ = _random_batch()
    base = fine_grained_scores(video, vmask, text, tmask)
    # append padding with garbage values: scores must be identical
    vpad = torch.cat([video, 100 * torch.randn(video.shape[0], 3, video.shape[2], dtype=video.dtype)], 1)
    vmpad = torch.cat([vmask, torch.zeros(vmask.shape[0], 3, dtype=torch.bool)], 1)
    tpad = torch.cat([text, -50 * torch.randn(text.shape[0], 2, text.shape[2], dtype=text.dtype)], 1)
    tmpad = torch.cat([tmask, torch.zeros(tmask.shape[0], 2, dtype=torch.bool)], 1)
    # and garbage in already-padded positions
    vpad[~vmpad] = 7.0
    padded = fine_grained_scores(vpad, vmpad, tpad, tmpad)
    torch.testing.assert_close(padded.t2v, base.t2v)
    torch.testing.assert_close(padded.v2t, base.v2t)


def test_chunked_equals_full():
    video, vmask, _, text, tmask, _ = _random_batch(bv=7, seed=3)
    vmask[5:, 3:] = False
    full = fine_grained_scores(video, vmask, text, tmask)
    chunked = fine_grained_scores(video, vmask, text, tmask, chunk_size=2)
    torch.testing.assert_close(chunked.t2v, full.t2v)
    torch.testing.assert_close(chunked.v2t, full.v2t)


def test_identical_sequences_score_highest():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 6, 16, generator=g)
    m = torch.ones(4, 6, dtype=torch.bool)
    s = fine_grained_scores(x, m, x, m).mean
    assert torch.equal(s.argmax(1), torch.arange(4))


def test_pose_rgb_matches_naive_loops():
    g = torch.Generator().manual_seed(2)
    B, T, D = 3, 5, 6
    pose = torch.randn(B, T, D, generator=g, dtype=torch.float64)
    rgb = torch.randn(B, T, D, generator=g, dtype=torch.float64)
    lens = [5, 3, 2]
    mask = torch.arange(T)[None] < torch.tensor(lens)[:, None]
    p2r, r2p = pose_rgb_scores(pose, rgb, mask, tau=0.07)
    ref_p2r, ref_r2p = naive_pose_rgb(pose.tolist(), rgb.tolist(), lens, 0.07)
    torch.testing.assert_close(p2r, ref_p2r.double(), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(r2p, ref_r2p.double(), rtol=1e-9, atol=1e-9)
    # padding invariance
    pose2 = torch.cat([pose, torch.randn(B, 2, D, dtype=pose.dtype)], 1)
    rgb2 = torch.cat([rgb, torch.randn(B, 2, D, dtype=rgb.dtype)], 1)
    mask2 = torch.cat([mask, torch.zeros(B, 2, dtype=torch.bool)], 1)
    q2r, r2q = pose_rgb_scores(pose2, rgb2, mask2, tau=0.07)
    torch.testing.assert_close(q2r, p2r)
    torch.testing.assert_close(r2q, r2p)


def test_pooled_ignores_padding_and_is_unit_norm():
    x = torch.randn(2, 4, 8)
    m = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    p = pooled(x, m)
    torch.testing.assert_close(p.norm(dim=-1), torch.ones(2))
    x2 = x.clone()
    x2[0, 2:] = 1e3
    torch.testing.assert_close(pooled(x2, m), p)


def test_dim_mismatch_is_clear():
    with pytest.raises(ValueError, match="feature sizes differ"):
        fine_grained_scores(torch.randn(1, 2, 4), torch.ones(1, 2, dtype=torch.bool),
                            torch.randn(1, 2, 5), torch.ones(1, 2, dtype=torch.bool))
