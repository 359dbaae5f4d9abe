"""SEDS model: shapes, masks and padding, gradients, CLIP initialisation, text encoders, checkpoints."""
import json

import pytest
import torch

from seds.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from seds.config import Config, model_config
from seds.losses import SEDSLoss
from seds.model import SEDS
from seds.model.interaction_transformer import InteractionTransformer, load_clip_visual
from seds.config import TransformerConfig


def make_batch(B=3, F=40, T=8, K=49, seed=0, lengths=(40, 29, 20)):
    g = torch.Generator().manual_seed(seed)
    kp = torch.randn(B, F, K, 3, generator=g)
    kp[..., 2] = torch.rand(B, F, K, generator=g)
    frame_mask = torch.arange(F)[None] < torch.tensor(lengths)[:, None]
    n_clips = [min(T, L - 16 + 1) for L in lengths]
    clip_mask = torch.arange(T)[None] < torch.tensor(n_clips)[:, None]
    clip_starts = torch.zeros(B, T, dtype=torch.long)
    for b, (L, n) in enumerate(zip(lengths, n_clips)):
        clip_starts[b, :n] = torch.linspace(0, L - 16, n).round().long()
    rgb = torch.randn(B, T, 1024, generator=g)
    return dict(keypoints=kp, frame_mask=frame_mask, clip_starts=clip_starts, clip_mask=clip_mask, rgb=rgb,
                text=["the weather is nice today", "i like signs", "hello"])


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return SEDS(model_config("tiny"))


def test_shapes_and_masks(tiny):
    b = make_batch()
    v = tiny.encode_batch_video(b)
    t = tiny.encode_text(b["text"])
    for s in ("pose", "rgb", "fused"):
        assert v[s].shape == (3, 8, 64)
        assert v[s][~v.mask].abs().max() == 0
    assert t.words.shape[0] == 3 and t.words.shape[2] == 64
    assert t.mask.sum(1).tolist() == [5, 3, 1]
    assert v.pooled("fused").shape == (3, 64)


def _padded(b, extra_frames=12, extra_clips=3):
    B = b["keypoints"].shape[0]
    out = dict(b)
    out["keypoints"] = torch.cat([b["keypoints"], 50 * torch.randn(B, extra_frames, *b["keypoints"].shape[2:])], 1)
    out["frame_mask"] = torch.cat([b["frame_mask"], torch.zeros(B, extra_frames, dtype=torch.bool)], 1)
    out["clip_starts"] = torch.cat([b["clip_starts"], torch.zeros(B, extra_clips, dtype=torch.long)], 1)
    out["clip_mask"] = torch.cat([b["clip_mask"], torch.zeros(B, extra_clips, dtype=torch.bool)], 1)
    out["rgb"] = torch.cat([b["rgb"], 30 * torch.randn(B, extra_clips, 1024)], 1)
    # garbage inside already-padded frames too
    out["keypoints"][~out["frame_mask"]] = -77.0
    return out


def test_padding_does_not_change_any_feature_or_score(tiny):
    tiny.eval()
    b = make_batch()
    with torch.no_grad():
        v1 = tiny.encode_batch_video(b)
        v2 = tiny.encode_batch_video(_padded(b))
        t = tiny.encode_text(b["text"])
        for s in ("pose", "rgb", "fused"):
            torch.testing.assert_close(v2[s][:, :8][v1.mask], v1[s][v1.mask], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(tiny.scores(v2, t, s).mean, tiny.scores(v1, t, s).mean,
                                       rtol=1e-4, atol=1e-5)


def test_padding_invariance_holds_in_training_mode_too():
    """Masked batch norm: padded frames do not enter batch statistics."""
    torch.manual_seed(0)
    m = SEDS(model_config("tiny", ["fusion.dropout=0.0"])).train()
    b = make_batch()
    torch.manual_seed(1)
    v1 = m.encode_batch_video(b)
    torch.manual_seed(1)
    v2 = m.encode_batch_video(_padded(b))
    torch.testing.assert_close(v2["pose"][:, :8][v1.mask], v1["pose"][v1.mask], rtol=1e-4, atol=1e-5)


def test_gradients_reach_every_trainable_parameter():
    torch.manual_seed(0)
    m = SEDS(model_config("tiny")).train()
    crit = SEDSLoss()
    b = make_batch()
    terms = crit(m.encode_batch_video(b), m.encode_text(b["text"]))
    terms["loss"].backward()
    dead = [n for n, p in list(m.named_parameters()) + list(crit.named_parameters())
            if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert not dead, dead


def test_streams_and_same_window_assertion():
    m = SEDS(model_config("tiny", ["streams=[rgb]"]))
    b = make_batch()
    v = m.encode_video(None, None, b["clip_starts"], b["clip_mask"], b["rgb"])
    assert set(v.streams) == {"rgb", "fused"} and torch.equal(v["fused"], v["rgb"])
    full = SEDS(model_config("tiny"))
    with pytest.raises(ValueError, match="same windows"):
        full.encode_video(b["keypoints"], b["frame_mask"], b["clip_starts"], b["clip_mask"], b["rgb"][:, :5])
    bad = dict(b)
    bad["clip_starts"] = b["clip_starts"].clone()
    bad["clip_starts"][0, 0] = 39          # window 39..54 runs past 40 frames
    with pytest.raises(ValueError, match="window runs past"):
        full.encode_batch_video(bad)


def test_keypoint_part_ablation_changes_input_width():
    m = SEDS(model_config("tiny", ["pose.extra_parts=[face, mouth]"]))
    b = make_batch(K=87)
    assert m.encode_batch_video(b)["pose"].shape == (3, 8, 64)
    with pytest.raises(ValueError, match="expects keypoints"):
        SEDS(model_config("tiny")).encode_batch_video(b)


def _fake_clip_visual(width=64, layers=1, heads=2, out=32, extra=None):
    torch.manual_seed(3)
    ref = InteractionTransformer(TransformerConfig(width=width, layers=layers, heads=heads), 1024, out, 16)
    sd = {}
    for k, v in ref.state_dict().items():
        key = "visual." + k.replace("resblocks.", "transformer.resblocks.")
        sd[key] = torch.randn_like(v)
    sd["visual.conv1.weight"] = torch.randn(width, 3, 32, 32)          # image patch conv: not used
    sd["visual.positional_embedding"] = torch.randn(50, width)         # 7×7+1 table: not used
    sd["text_projection"] = torch.randn(8, 8)                          # non-visual keys are ignored
    if extra:
        sd.update(extra)
    return sd


def test_clip_visual_initialisation_asserts_every_key(tmp_path):
    from safetensors.torch import save_file
    sd = _fake_clip_visual()
    path = tmp_path / "clip.safetensors"
    save_file(sd, str(path))
    cfg = TransformerConfig(width=64, layers=1, heads=2, clip_init=str(path))
    t = InteractionTransformer(cfg, 1024, 32, 16)
    torch.testing.assert_close(t.resblocks[0].attn.in_proj_weight,
                               sd["visual.transformer.resblocks.0.attn.in_proj_weight"])
    torch.testing.assert_close(t.proj, sd["visual.proj"])
    # wrong shape / missing / unused keys: one error listing them
    bad = _fake_clip_visual()
    bad["visual.proj"] = torch.randn(64, 16)
    del bad["visual.ln_post.weight"]
    bad["visual.transformer.resblocks.1.ln_1.weight"] = torch.randn(64)
    with pytest.raises(ValueError) as e:
        load_clip_visual(InteractionTransformer(TransformerConfig(width=64, layers=1, heads=2), 1024, 32, 16), bad)
    msg = str(e.value)
    assert "shape: proj" in msg and "missing: ln_post.weight" in msg and "unused: resblocks.1.ln_1.weight" in msg
    with pytest.raises(ValueError, match="not a CLIP"):
        load_clip_visual(t, {"foo": torch.zeros(1)})


@pytest.mark.slow
def test_minilm_text_encoder_offline():
    m = SEDS(model_config("tiny", ["text.model=minilm"]))
    t = m.encode_text(["Hello there, how are you?", "signs"])
    assert t.words.shape[-1] == 64
    # word mask excludes [CLS]/[SEP]/padding: "signs" is one or two word pieces
    assert 1 <= int(t.mask[1].sum()) <= 2 and int(t.mask[0].sum()) >= 6
    with pytest.raises(ValueError, match="empty text"):
        m.encode_text(["ok", "  "])
    long = m.encode_text([" ".join(["word"] * 100)])
    assert int(long.mask.sum()) == 16        # tiny preset: max_words = 16


def test_checkpoint_roundtrip_and_wrong_checkpoint(tmp_path):
    torch.manual_seed(0)
    cfg = Config(model=model_config("tiny"))
    m = SEDS(cfg.model).eval()
    crit = SEDSLoss(cfg.loss)
    save_checkpoint(tmp_path / "ck", m, cfg, crit, info={"epoch": 3})
    m2, crit2, cfg2, info = load_checkpoint(tmp_path / "ck")
    assert info == {"epoch": 3} and cfg2 == cfg
    b = make_batch()
    with torch.no_grad():
        torch.testing.assert_close(m2.encode_batch_video(b)["fused"], m.encode_batch_video(b)["fused"])
    # a checkpoint whose config does not match its weights
    doc = json.loads((tmp_path / "ck" / "config.json").read_text())
    doc["config"]["model"]["dim"] = 32
    doc["config"]["model"]["fusion"]["heads"] = 2
    (tmp_path / "ck" / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(tmp_path / "ck")
    with pytest.raises(CheckpointError, match="not a SEDS checkpoint"):
        load_checkpoint(tmp_path)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        load_checkpoint(tmp_path / "junk")


def test_from_scratch_modules_train_at_the_fast_rate():
    """The paper's 1e-5 is a fine-tuning rate for CLIP/pretrained-initialised modules; a transformer or
    the hashed text encoder trained from scratch joins the lr_pose group (SEDS.param_groups)."""
    import copy
    cfg = model_config("tiny")
    assert cfg.text.model == "hash" and not cfg.rgb_transformer.clip_init
    m = SEDS(cfg)
    groups = m.param_groups(1e-3, 1e-5)
    assert [g["name"] for g in groups] == ["scratch"] and groups[0]["lr"] == 1e-3
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in m.parameters()}
    pre = copy.deepcopy(m)
    pre.cfg.rgb_transformer.clip_init = "clip.safetensors"      # as if initialised from CLIP
    g = {x["name"]: x for x in pre.param_groups(1e-3, 1e-5)}
    assert g["pretrained"]["lr"] == 1e-5
    assert {id(p) for p in g["pretrained"]["params"]} == {id(p) for p in pre.rgb_transformer.parameters()}
    assert {id(p) for p in g["scratch"]["params"]} >= {id(p) for p in pre.pose_transformer.parameters()}
