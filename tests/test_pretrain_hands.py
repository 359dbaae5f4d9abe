"""Hand-pose pretraining: trivial baselines against loops, masking statistics, learning, loading into
SEDS (own format and SignBERT key mapping), real How2Sign clips through MediaPipe."""
import numpy as np
import pytest
import torch

from seds.config import model_config
from seds.synthetic.signing import SyntheticConfig, SyntheticSignData
from seds.keypoints import KeypointLayout
from seds.model import SEDS, create_model
from seds.experiments.pretrain_hands import (HandMAE, MaskConfig, PretrainConfig, PretrainError, evaluate_reconstruction,
                                 hand_sequences, hand_stgcn, interpolate_baseline, last_copy_baseline,
                                 load_pretrained_hands, load_signbert, mask_hands, mean_hand, pretrain,
                                 save_hand_encoder)


def _per_joint_loop(x, obs, pick):
    """Naive reference: out[a, t, j] = pick(x[a, :, j], t, observed frames ≤ t, observed frames ≥ t), 0 where
    ``pick`` gives None."""
    out = np.zeros_like(x)
    n, f, v = obs.shape
    for a in range(n):
        for j in range(v):
            seen = [t for t in range(f) if obs[a, t, j]]
            for t in range(f):
                val = pick(x[a, :, j], t, [s for s in seen if s <= t], [s for s in seen if s >= t])
                if val is not None:
                    out[a, t, j] = val
    return out


def _interp_pick(xs, t, before, after):
    if before and after:
        p, q = before[-1], after[0]
        w = 0.0 if q == p else (t - p) / (q - p)
        return xs[p] + w * (xs[q] - xs[p])
    if before or after:
        return xs[(before or after)[-1 if before else 0]]
    return None


def _last_pick(xs, t, before, after):
    if before:
        return xs[before[-1]]
    if after:
        return xs[after[0]]
    return None


def _interp_loop(x, obs):
    return _per_joint_loop(x, obs, _interp_pick)


def _last_loop(x, obs):
    return _per_joint_loop(x, obs, _last_pick)


def test_trivial_baselines_match_loops():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 11, 4, 2)).astype(np.float32)
    obs = rng.random((3, 11, 4)) < 0.5
    obs[0, :, 0] = False            # a joint never observed
    obs[1, :, 1] = True
    np.testing.assert_allclose(interpolate_baseline(x, obs), _interp_loop(x, obs), atol=1e-6)
    np.testing.assert_allclose(last_copy_baseline(x, obs), _last_loop(x, obs), atol=1e-6)


def test_joint_features_pool_to_the_stgcn_output():
    from seds.experiments.pretrain_hands import joint_features
    enc = hand_stgcn((8, 8, 16, 16))
    x = torch.randn(3, 20, 21, 3)
    mask = torch.ones(3, 20, dtype=torch.bool)
    mask[1, 12:] = False
    for train in (True, False):
        enc.train(train)
        torch.testing.assert_close(joint_features(enc, x, mask).mean(2), enc(x, mask))


def test_mask_statistics_and_padding():
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(400, 60, 21, 3)
    valid = torch.ones(400, 60, dtype=torch.bool)
    valid[:, 50:] = False
    cfg = MaskConfig(frame_rate=0.25, run_length=3.0, joint_rate=0.15)
    m = mask_hands(x, valid, cfg, gen)
    assert not m[:, 50:].any()
    whole = m[:, :50].all(-1)
    assert 0.18 < whole.float().mean() < 0.30            # ≈ frame_rate (runs may overlap)
    partial = m[:, :50][~whole]
    assert 0.13 < partial.float().mean() < 0.17            # joint_rate inside the other frames
    # whole-frame masks come in runs: a masked frame's neighbour is masked much more often than chance
    both = (whole[:, 1:] & whole[:, :-1]).float().sum() / whole[:, :-1].float().sum()
    assert both > 0.5
    again = mask_hands(x, valid, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(m, again)                              # the generator alone decides the mask
    with pytest.raises(PretrainError):
        MaskConfig(frame_rate=1.2)


@pytest.fixture(scope="module")
def synthetic_hands():
    data = SyntheticSignData(SyntheticConfig(vocab_size=40, n_signers=(3, 1, 1), n_sentences=(40, 12, 0),
                                             max_words=5, fps=12))
    tr = [s for spec in data.sentences("train") for s in hand_sequences(data.keypoints(spec))]
    va = [s for spec in data.sentences("val") for s in hand_sequences(data.keypoints(spec))]
    return tr, va


def test_hand_sequences_are_what_the_pose_encoder_sees(synthetic_hands):
    data = SyntheticSignData(SyntheticConfig(vocab_size=40, n_signers=(3, 1, 1), n_sentences=(4, 1, 0), fps=12))
    kp = data.keypoints(data.sentences("train")[0])
    seqs = hand_sequences(kp)
    from seds.keypoints import normalize_parts
    norm = normalize_parts(kp[:, :49], KeypointLayout())
    assert len(seqs) == 2 and seqs[0].shape == (len(kp), 21, 3)
    np.testing.assert_array_equal(seqs[0], norm[:, 7:28])      # left hand (mirrored by normalize_parts)
    np.testing.assert_array_equal(seqs[1], norm[:, 28:49])
    assert hand_sequences(kp[:3]) == []
    with pytest.raises(PretrainError):
        hand_sequences(kp[:, :20])


@pytest.mark.slow
def test_pretraining_beats_trivial_baselines_on_held_out(synthetic_hands):
    tr, va = synthetic_hands
    torch.manual_seed(0)
    cfg = PretrainConfig(widths=(8, 8, 16, 16), decoder_hidden=64, window=32, batch_size=32, steps=250,
                         lr=3e-3, eval_every=250)
    model, hist = pretrain(tr, cfg, MaskConfig(), progress=False)
    ev = evaluate_reconstruction(model, va, MaskConfig(), mean_hand(tr), window=32)
    ours = ev["hand ST-GCN (masked pretraining)"]["all"]
    assert ev["n_masked_joints"] > 1000
    assert ours < ev["mean hand"]["all"]
    assert ours < ev["last-frame copy"]["all"]
    untrained = evaluate_reconstruction(HandMAE((8, 8, 16, 16), hidden=64), va, MaskConfig(), window=32)
    assert ours < 0.7 * untrained["hand ST-GCN (masked pretraining)"]["all"]


def test_save_and_load_into_seds(tmp_path):
    mcfg = model_config("tiny")
    enc = hand_stgcn(mcfg.pose.widths, mcfg.pose.temporal_kernel)
    with torch.no_grad():
        for p in enc.parameters():
            p.normal_()
    save_hand_encoder(tmp_path / "h", enc, {"source": "test"})
    model = create_model(model_config("tiny", [f"pose.hand_init={tmp_path / 'h'}"]))
    for k, v in enc.state_dict().items():
        torch.testing.assert_close(model.pose_encoder.hand.state_dict()[k], v)
    # load_pretrained_hands into an existing model, too
    other = SEDS(model_config("tiny"))
    load_pretrained_hands(other, tmp_path / "h" / "hand_stgcn.safetensors")
    torch.testing.assert_close(other.pose_encoder.hand.layers[0].gcn.weight, enc.layers[0].gcn.weight)
    # other widths → a clear error naming the shape mismatch
    with pytest.raises(PretrainError, match="shape"):
        create_model(model_config("tiny", [f"pose.hand_init={tmp_path / 'h'}", "pose.widths=[8,8,16,32]"]))
    with pytest.raises(PretrainError, match="not found"):
        load_pretrained_hands(other, tmp_path / "nope")
    with pytest.raises(PretrainError, match="no hand ST-GCN"):
        load_pretrained_hands(SEDS(model_config("tiny", ["streams=[rgb]"])), tmp_path / "h")


def _signbert_like_state(enc, partitions: int, prefix: str = "module."):
    """A SignBERT/ST-GCN style state dict (reference key names) holding ``enc``'s weights; with K
    partitions the gcn weight is split into K random parts that sum to ours."""
    s = {}
    for k in ("weight", "bias", "running_mean", "running_var"):
        s[f"{prefix}data_bn.{k}"] = getattr(enc.data_bn, k).detach().clone()
    for i, layer in enumerate(enc.layers):
        b = f"{prefix}st_gcn_networks.{i}."
        w, bias = layer.gcn.weight.detach(), layer.gcn.bias.detach()
        if partitions > 1:
            parts = [torch.randn_like(w) for _ in range(partitions - 1)]
            parts.append(w - sum(parts))
            bparts = [torch.randn_like(bias) for _ in range(partitions - 1)]
            bparts.append(bias - sum(bparts))
            w, bias = torch.cat(parts, 0), torch.cat(bparts, 0)
        s[b + "gcn.conv.weight"], s[b + "gcn.conv.bias"] = w.clone(), bias.clone()
        for src, bn in (("tcn.0", layer.bn1), ("tcn.3", layer.bn2)):
            for k in ("weight", "bias", "running_mean", "running_var"):
                s[f"{b}{src}.{k}"] = getattr(bn, k).detach().clone()
        s[b + "tcn.2.weight"], s[b + "tcn.2.bias"] = layer.tcn.weight.detach().clone(), layer.tcn.bias.detach().clone()
        if layer.residual is not None:
            s[b + "residual.0.weight"] = layer.residual.weight.detach().clone()
            s[b + "residual.0.bias"] = layer.residual.bias.detach().clone()
            for k in ("weight", "bias", "running_mean", "running_var"):
                s[f"{b}residual.1.{k}"] = getattr(layer.bn_res, k).detach().clone()
    s[prefix + "fc.weight"] = torch.randn(10, 4)       # unrelated head: ignored
    return s


@pytest.mark.parametrize("partitions", [1, 3])
def test_signbert_checkpoint_mapping(tmp_path, partitions):
    widths = (8, 8, 16, 16)
    ref = hand_stgcn(widths)
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_()
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2)
    path = tmp_path / "signbert.pth"
    torch.save({"state_dict": _signbert_like_state(ref, partitions)}, path)
    enc, notes = load_signbert(path, widths)
    assert (len(notes) == len(widths)) == (partitions > 1)
    x = torch.randn(2, 20, 21, 3)
    valid = torch.ones(2, 20, dtype=torch.bool)
    ref.eval(), enc.eval()
    torch.testing.assert_close(enc(x, valid), ref(x, valid), atol=1e-4, rtol=1e-4)
    # the converted file loads into SEDS through hand_init
    from seds.experiments.pretrain_hands.__main__ import main
    assert main(["signbert", "--checkpoint", str(path), "--preset", "tiny", "--out", str(tmp_path / "conv")]) == 0
    model = create_model(model_config("tiny", [f"pose.hand_init={tmp_path / 'conv'}"]))
    torch.testing.assert_close(model.pose_encoder.hand.layers[3].tcn.weight, ref.layers[3].tcn.weight)


class _Pickled:
    """An arbitrary object: torch.load(weights_only=True) must refuse to unpickle it."""


def test_signbert_errors(tmp_path):
    widths = (8, 8, 16, 16)
    ref = hand_stgcn(widths)
    state = _signbert_like_state(ref, 1)
    del state["module.st_gcn_networks.2.tcn.2.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(PretrainError, match="missing: layers.2.tcn.weight"):
        load_signbert(tmp_path / "broken.pth", widths)
    with pytest.raises(PretrainError, match="shape"):
        torch.save(_signbert_like_state(ref, 1), tmp_path / "ok.pth")
        load_signbert(tmp_path / "ok.pth", (8, 8, 16, 32))
    torch.save({"unrelated.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(PretrainError, match="no SignBERT ST-GCN blocks"):
        load_signbert(tmp_path / "other.pth", widths)

    torch.save({"x": _Pickled()}, tmp_path / "pickle.pth")
    with pytest.raises(PretrainError, match="weights_only"):
        load_signbert(tmp_path / "pickle.pth", widths)


@pytest.mark.slow
def test_real_clip_hands(shared_data, tmp_path):
    """A real How2Sign clip through MediaPipe gives hand sequences with both hands mostly present."""
    from seds.experiments.pretrain_hands import extract_pose_folder, real_split, sequences_from_rows
    import csv
    src = shared_data / "how2sign-mini"
    # a two-clip folder view: manifest with the first two rows, files resolved against the real folder
    allrows = list(csv.DictReader(open(src / "manifest.csv")))
    rows = [allrows[0], next(r for r in allrows if r["video_id"] != allrows[0]["video_id"])]
    sub = tmp_path / "videos"
    sub.mkdir()
    with open(sub / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            r = dict(r, file=str(src / r["file"]))
            w.writerow(r)
    index = extract_pose_folder(sub, tmp_path / "pose", fps=12, max_seconds=1.5, progress=False)
    assert len(index) == 2
    kp = np.load(tmp_path / "pose" / index[0]["file"])
    assert kp.shape[1:] == (87, 3) and 12 <= len(kp) <= 19
    seqs = sequences_from_rows(tmp_path / "pose", index)
    assert seqs and all(s.shape[1:] == (21, 3) for s in seqs)
    present = np.mean([(s[..., 2] > 0).any(1).mean() for s in seqs])
    assert present > 0.6
    # every coordinate of a present hand lies in the normalized box [-1, 1]
    for s in seqs:
        on = s[..., 2] > 0
        assert np.abs(s[..., :2][on]).max() <= 1.0 + 1e-5
    tr, ho = real_split(tmp_path / "pose", held_out=0.5)
    assert len(tr) == len(ho) == 1 and tr[0]["group"] != ho[0]["group"]
    # the CLI: pretrain a few steps on one clip, evaluate on the other, load into SEDS
    from seds.experiments.pretrain_hands.__main__ import main
    out = tmp_path / "hands"
    assert main(["train", "--real", str(tmp_path / "pose"), "--held-out", "0.5", "--preset", "tiny", "--steps", "3",
                 "--batch-size", "4", "--window", "16", "--out", str(out)]) == 0
    report = tmp_path / "report.md"
    assert main(["evaluate", "--model", str(out), "--real", str(tmp_path / "pose"), "--held-out", "0.5",
                 "--results", str(report)]) == 0
    text = report.read_text()
    assert "interpolation" in text and "last-frame copy" in text and "python -m seds.experiments.pretrain_hands evaluate" in text
    assert "MediaPipe Holistic keypoints at 12 fps, first 1.5 s of each clip" in text     # how they were extracted
    create_model(model_config("tiny", [f"pose.hand_init={out}"]))
