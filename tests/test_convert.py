"""seds.convert: the authors' checkpoint layout → our checkpoint, refusing anything that does not fit.

A small official-variant model is written out in the authors' key layout (the inverse of the converter's table,
1×1 Conv2d shapes, the fixed PE table and the four unused keys included); the full-size layout made by the
authors' code itself is converted in tests/test_official_parity.py.
"""
import pytest
import torch

from seds.checkpoint import load_checkpoint, write_checkpoint
from seds.config import Config, LossConfig, model_config
from seds.convert import (PE_KEY, UNUSED_OFFICIAL_KEYS, ConvertError, convert_official_state, convert_signbert,
                          main, official_key_map)
from seds.model import SEDS, create_model
from seds.model.cgaf import sinusoidal_positions
from seds.model.signbert_gcn import SignBertPoseEncoder, official_signbert_key_map

TINY = ["pose_transformer.width=64", "pose_transformer.layers=1", "pose_transformer.heads=2",
        "rgb_transformer.width=64", "rgb_transformer.layers=1", "rgb_transformer.heads=2",
        "fusion.heads=2", "fusion.ff=64", "dim=64", "max_clips=8"]


def tiny_cfg(*extra) -> Config:
    return Config(model=model_config("official", TINY + list(extra)), loss=LossConfig(alpha=1.0))


def official_layout(model: SEDS, logit_scale: float = 2.6592) -> dict[str, torch.Tensor]:
    """Our weights under the authors' key names and shapes (as their torch.save(model.state_dict()) writes)."""
    ours = {f"model.{k}": v for k, v in model.state_dict().items()}
    ours["loss.logit_scale"] = torch.tensor(logit_scale)
    sd = {}
    for theirs, mine in official_key_map(model).items():
        v = ours[mine].clone()
        sd[theirs] = v[..., None] if mine.endswith("_transformer.conv1.weight") else v
    sd[PE_KEY] = sinusoidal_positions(5000, model.cfg.dim)[None]
    for k in UNUSED_OFFICIAL_KEYS:
        sd[k] = torch.zeros(3)
    return sd


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = tiny_cfg()
    model = SEDS(cfg.model).eval()
    with torch.no_grad():            # non-trivial values everywhere (LN weights, biases, BN statistics)
        for p in model.state_dict().values():
            if p.is_floating_point() and p.dim() <= 1 and p.numel() > 1:
                p.add_(torch.rand_like(p) * 0.1)
    return cfg, model, official_layout(model)


def official_batch(b=2, t=8, frames=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    starts = torch.full((b, t), -1)
    for i, n in enumerate([t, 3][:b]):
        starts[i, :n] = torch.arange(n)
    mask = starts >= 0
    return {"left": torch.rand(b, frames, 21, 2, generator=g) * 256, "right": torch.rand(b, frames, 21, 2, generator=g) * 256,
            "body": torch.rand(b, frames, 7, 2, generator=g) * 256, "clip_starts": starts, "clip_mask": mask,
            "rgb": torch.randn(b, t, 1024, generator=g) * mask[..., None]}


def text_ids():
    ids = torch.zeros(2, 32, dtype=torch.long)
    ids[0, :5] = torch.tensor([49406, 320, 1125, 539, 49407])
    ids[1, :3] = torch.tensor([49406, 1884, 49407])
    return ids


@pytest.mark.slow
def test_official_layout_converts_loads_strictly_and_gives_the_same_outputs(tiny, tmp_path):
    cfg, model, sd = tiny
    tensors = convert_official_state(sd, cfg)
    assert len(sd) - len(UNUSED_OFFICIAL_KEYS) - 1 == len(tensors)        # every key used, pe recomputed
    write_checkpoint(tmp_path / "ck", tensors, cfg)
    loaded, loss, cfg2, _ = load_checkpoint(tmp_path / "ck")            # strict: every key and shape
    assert cfg2.model.variant == "official"
    assert float(loss.logit_scale.detach()) == pytest.approx(2.6592)
    batch, ids = official_batch(), text_ids()
    with torch.no_grad():
        a, b = model.encode_batch_video(batch), loaded.encode_batch_video(batch)
        ta, tb = model.encode_text({"input_ids": ids}), loaded.encode_text({"input_ids": ids})
    for s in ("pose", "rgb", "fused"):
        assert torch.equal(a[s], b[s]), s
    assert torch.equal(ta.words, tb.words) and torch.equal(ta.mask, tb.mask)
    assert a["fused"].shape == (2, 9, 64) and a.mask[:, 0].all()       # [CLS] at index 0


def test_fp16_tensors_become_exact_float32(tiny):
    cfg, _, sd = tiny
    half = {k: (v.half() if k.startswith(("clip.", "clip_rgb.")) and v.is_floating_point() else v)
            for k, v in sd.items()}
    out = convert_official_state(half, cfg)
    key = "clip.transformer.resblocks.0.attn.in_proj_weight"
    got = out["model.text.backbone.resblocks.0.attn.in_proj_weight"]
    assert got.dtype == torch.float32 and torch.equal(got, half[key].float())


@pytest.mark.parametrize("case", ["missing", "unexpected", "shape", "conv-shape"])
def test_bad_keys_and_shapes_are_refused_by_name(tiny, case):
    cfg, _, sd = tiny
    sd = dict(sd)
    if case == "missing":
        key = "fusion.P2R_layers.1.src_src_att.sample_offsets.weight"
        del sd[key]
    elif case == "unexpected":
        key = "fusion.P2R_layers.2.layer_norm.weight"
        sd[key] = torch.ones(64)
    elif case == "shape":
        key = "signbert.embed.st_gcn_hand.st_gcn_networks.0.gcn.conv.weight"
        sd[key] = torch.zeros(3, 3)
    else:
        key = "clip_rgb.visual.conv1.weight"
        sd[key] = sd[key][..., 0]          # a Conv1d-shaped weight is not the authors' layout
    with pytest.raises(ConvertError) as e:
        convert_official_state(sd, cfg)
    assert f"{'shape' if 'shape' in case else case}: {key}" in str(e.value)


def test_unused_keys_are_optional_but_the_pe_table_is_checked(tiny):
    cfg, _, sd = tiny
    sd = {k: v for k, v in sd.items() if k not in UNUSED_OFFICIAL_KEYS}
    convert_official_state(sd, cfg)
    sd[PE_KEY] = sd[PE_KEY] + 1e-3
    with pytest.raises(ConvertError, match="fusion.pe.pe"):
        convert_official_state(sd, cfg)


def test_cli_refuses_a_foreign_file_listing_the_keys(tmp_path, capsys):
    p = tmp_path / "x.bin"
    torch.save({"encoder.weight": torch.zeros(2)}, p)
    assert main(["official", str(p), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "unexpected: encoder.weight" in err and "missing: clip.logit_scale" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_signbert_pretraining_file_initialises_the_official_pose_encoder(tmp_path):
    torch.manual_seed(1)
    src = SignBertPoseEncoder()
    own = src.state_dict()
    theirs = {k: own[v].clone() + (0.5 if own[v].is_floating_point() else 0)
              for k, v in official_signbert_key_map(prefix="").items()}
    theirs["blocks.0.attn.qkv.weight"] = torch.zeros(2, 2)         # SignBERT's transformer: not used
    p = tmp_path / "pretrain_signbert.pth"
    torch.save({"state_dict": {"GCN_Transform": theirs}}, p)
    doc = convert_signbert(p, tmp_path / "init")
    assert doc["ignored"] == ["blocks.0.attn.qkv.weight"]
    model = create_model(tiny_cfg(f"pose.hand_init={tmp_path / 'init'}").model, with_text=False)
    got = model.pose_encoder.state_dict()
    for k, v in official_signbert_key_map(prefix="").items():
        assert torch.equal(got[v], theirs[k].to(got[v].dtype)), k


@pytest.mark.slow
def test_official_parameter_count_equals_the_authors_checkpoint_minus_its_unused_keys():
    from seds.param_count import OFFICIAL_MANIFEST, OFFICIAL_MANIFEST_TOTAL, OFFICIAL_UNUSED, parameter_table
    rows = {name: n for name, n, _ in parameter_table("official")}
    assert rows["total"] == OFFICIAL_MANIFEST_TOTAL - OFFICIAL_UNUSED == 303_794_929
    for name in ("pose_encoder", "pose_transformer", "rgb_transformer", "fusion", "text"):
        assert rows[name] == OFFICIAL_MANIFEST[name], name


def test_paper_variant_signbert_converter_points_the_released_layout_to_seds_convert(tmp_path):
    from seds.model.hand_init import PretrainError, load_signbert
    p = tmp_path / "pretrain_signbert.pth"
    torch.save({"state_dict": {"GCN_Transform": {"embed.st_gcn_hand.A": torch.zeros(4, 21, 21)}}}, p)
    with pytest.raises(PretrainError, match="python -m seds.convert signbert"):
        load_signbert(p, (8, 8))


def test_official_batch_layout_is_checked(tiny):
    _, model, _ = tiny
    good = official_batch()
    for change, msg in ((lambda b: b.pop("body"), "missing key"),
                        (lambda b: b.__setitem__("clip_mask", ~b["clip_mask"]), "clip_mask must be True exactly"),
                        (lambda b: b.update(clip_starts=b["clip_starts"][:, :6], clip_mask=b["clip_mask"][:, :6],
                                            rgb=b["rgb"][:, :6]), "exactly max_clips=8")):
        b = dict(good)
        change(b)
        with pytest.raises(ValueError, match=msg):
            model.encode_batch_video(b)
    with pytest.raises(ValueError, match="authors' batch layout"):
        model.encode_video(None, None, good["clip_starts"], good["clip_mask"], good["rgb"])
