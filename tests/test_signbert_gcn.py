"""The official-variant pose encoder against the authors' code (SEDS Sec. 3.2; ../shared/reference/seds-official).

The reference is built at test time from their unedited modules: ``Sign_Bert`` (modeling_signbert.py) and
``CLIP4Clip.get_sign_output`` (modeling.py, compiled on its own so the CLIP/boto3 imports of that file are not
needed). Their ``ST_GCN_Model`` calls ``.cuda()`` on its graph buffers; that call is an identity while the
reference is built (the harness's stub S2)."""
from __future__ import annotations

import ast
import copy
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from seds.model.signbert_gcn import (BODY_GRAPH, BODY_PART_GRAPH, HAND_GRAPH, HAND_PART_GRAPH, SignBertGCNConfig,
                                     SignBertPoseEncoder, map_official_signbert, load_pretrain_signbert,
                                     official_signbert_key_map)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
OFFICIAL = SHARED / "reference" / "seds-official"
MANIFEST = SHARED / "reference" / "harness" / "state_dict_manifest.json"
TOL = 1e-5


def load_official(module, state_dict, prefix="signbert."):
    """The ``signbert.*`` subtree of a released SEDS checkpoint into ``module``: keys and shapes checked, strict."""
    module.load_state_dict(map_official_signbert(module, state_dict, prefix), strict=True)


def _need_reference():
    if not (OFFICIAL / "modules" / "modeling_signbert.py").is_file():
        pytest.skip(f"the authors' code is not at {OFFICIAL} (../shared/reference beside the repo)")
    if str(OFFICIAL) not in sys.path:
        sys.path.insert(0, str(OFFICIAL))


def _get_sign_output():
    """``CLIP4Clip.get_sign_output`` from their modeling.py, compiled alone (it only needs ``torch``)."""
    path = OFFICIAL / "modules" / "modeling.py"
    tree = ast.parse(path.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "CLIP4Clip")
    fn = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "get_sign_output")
    ns = {"torch": torch}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), str(path), "exec"), ns)
    return ns["get_sign_output"]


def _randomize_bn(module: nn.Module, gen: torch.Generator) -> None:
    """Non-trivial affine parameters and running statistics in every BatchNorm."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.weight.copy_(1 + 0.3 * torch.randn(c, generator=gen))
                m.bias.copy_(0.3 * torch.randn(c, generator=gen))
                m.running_mean.copy_(0.5 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(c, generator=gen))
                m.num_batches_tracked.fill_(7)


@pytest.fixture(scope="module")
def reference():
    """(authors' Sign_Bert with random weights, their get_sign_output)."""
    _need_reference()
    from modules.modeling_signbert import Sign_Bert
    opt = types.SimpleNamespace(hidden_dim=512, dropout=0.1, in_channels=2, strategy="spatial", temporal_pad=0,
                                local_rank=0)
    cuda = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    try:
        torch.manual_seed(0)
        ref = Sign_Bert(opt)
    finally:
        torch.Tensor.cuda = cuda
    _randomize_bn(ref, torch.Generator().manual_seed(1))
    return ref, _get_sign_output()


def _inputs(seed=2):
    """B=2, T=40; video 1 has 28 frames then zero padding; empty clip slots (-1) in both."""
    g = torch.Generator().manual_seed(seed)
    b, t = 2, 40
    left, right, body = (torch.randn(b, t, v, 2, generator=g) for v in (21, 21, 7))
    for x in (left, right, body):
        x[1, 28:] = 0
    starts = torch.tensor([[0, 8, 16, 24, -1], [0, 6, 12, -1, -1]])
    mask = torch.cat([torch.zeros(b, 1, dtype=torch.long), (starts == -1).long()], dim=1)   # slot 0 = [CLS]
    return left, right, body, starts, mask


def _run_reference(ref, get_sign_output, left, right, body, starts, mask):
    owner = types.SimpleNamespace(signbert=ref, task_config=types.SimpleNamespace(slide_windows=16))
    _, pose, _ = get_sign_output(owner, {"pose": right.clone()}, {"pose": left.clone()},
                                 {"pose": body.clone(), "clips_start": starts, "mask": mask, "rgb": None})
    return pose.squeeze(-1).permute(0, 2, 1)            # (B, 1536, n, 1) -> (B, n, 1536)


def _converted(ref) -> SignBertPoseEncoder:
    mine = SignBertPoseEncoder()
    load_official(mine, {"signbert." + k: v for k, v in ref.state_dict().items()})
    return mine


def test_graph_partitions_equal_the_authors():
    _need_reference()
    from modules.modeling_graph import Graph, Graph_pool
    for layout, graph, part_graph in (("stb", HAND_GRAPH, HAND_PART_GRAPH), ("body", BODY_GRAPH, BODY_PART_GRAPH)):
        theirs = Graph(layout, "spatial", pad=0)
        assert torch.equal(graph.partitions(), torch.tensor(theirs.A, dtype=torch.float32)), layout
        assert torch.equal(part_graph.partitions(), torch.tensor(Graph_pool(layout, "spatial", pad=0).A,
                                                                 dtype=torch.float32)), layout
        assert [list(p) for p in graph.parts] == [list(p) for p in theirs.part], layout
    # the dropped equal-distance edge: body part graph, left arm (0) - nose (2) is in no partition
    a = BODY_PART_GRAPH.partitions()
    assert a[:, 0, 2].abs().sum() == 0 and a[3, 0, 1] > 0


def test_key_map_covers_the_manifest():
    if not MANIFEST.is_file():
        pytest.skip(f"{MANIFEST} is not present (../shared beside the repo)")
    import json
    entries = {e["key"]: e["shape"] for e in json.loads(MANIFEST.read_text())["keys"] if e["key"].startswith("signbert.")}
    key_map = official_signbert_key_map()
    assert set(key_map) == set(entries) and len(entries) == 261
    own = SignBertPoseEncoder().state_dict()
    assert sorted(key_map.values()) == sorted(own)
    for k, dst in key_map.items():
        assert list(own[dst].shape) == entries[k], k
    assert all(own[k].dtype == torch.float32 for k in own if not k.endswith("num_batches_tracked"))


def test_eval_parity_with_the_authors(reference):
    ref, get_sign_output = reference
    ref.eval()
    mine = _converted(ref).eval()
    left, right, body, starts, mask = _inputs()
    with torch.no_grad():
        expected = _run_reference(ref, get_sign_output, left, right, body, starts, mask)
        frames_ref = ref.gcn_emb({"left": left.clone(), "right": right.clone(), "body": body.clone()})["feat"]
        frames = mine.frame_features(left, right, body)
        got = mine(left, right, body, starts)
    assert got.shape == (2, 5, 1536)
    d_frames = (frames - frames_ref).abs().max().item()
    d_out = (got - expected).abs().max().item()
    print(f"eval max|diff|: frames {d_frames:.3g}, clips {d_out:.3g} (|out| max {expected.abs().max():.3g})")
    assert d_frames <= TOL and d_out <= TOL
    # an empty slot is f(0): not zero, identical for every empty slot
    assert got[0, 4].abs().max() > 0 and torch.allclose(got[0, 4], got[1, 3]) and torch.allclose(got[1, 3], got[1, 4])


@pytest.mark.slow   # ~10 s on 2 shared cores: two 50 M-parameter backward passes
def test_train_parity_dropout_off_and_gradients(reference):
    ref, get_sign_output = reference
    ref = copy.deepcopy(ref).train()
    mine = _converted(ref).train()
    for m in list(ref.modules()) + list(mine.modules()):
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    left, right, body, starts, mask = _inputs(seed=3)
    expected = _run_reference(ref, get_sign_output, left, right, body, starts, mask)
    got = mine(left, right, body, starts)
    d_out = (got - expected).abs().max().item()
    # the same batch statistics were used and the running statistics moved the same way
    key_map = official_signbert_key_map(prefix="")
    ref_sd, own_sd = ref.state_dict(), mine.state_dict()
    d_stats = max((ref_sd[k].double() - own_sd[v].double()).abs().max().item() for k, v in key_map.items())
    # gradients of one loss reach every parameter and agree with the authors'
    w = torch.randn(got.shape, generator=torch.Generator().manual_seed(4))
    (got * w).sum().backward()
    (expected * w).sum().backward()
    ref_params, own_params = dict(ref.named_parameters()), dict(mine.named_parameters())
    for name, p in own_params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    # gradients: per parameter relative to its largest entry; the biases right before a train-mode batch
    # norm have a true gradient of 0 (theirs and ours are rounding noise, ~1e-5), so they are compared
    # relative to the model's largest gradient instead
    top = max(p.grad.abs().max().item() for p in ref_params.values())
    d_grad = d_grad_all = 0.0
    for k, v in key_map.items():
        if k in ref_params:
            g_ref, diff = ref_params[k].grad, (own_params[v].grad - ref_params[k].grad).abs().max().item()
            d_grad_all = max(d_grad_all, diff / top)
            if g_ref.abs().max() > 1e-3 * top:
                d_grad = max(d_grad, diff / g_ref.abs().max().item())
    print(f"train max|diff|: clips {d_out:.3g}, state after update {d_stats:.3g}, grad (relative) {d_grad:.3g}, "
          f"grad (relative to the largest) {d_grad_all:.3g}")
    assert d_out <= TOL and d_stats <= TOL and d_grad <= 1e-4 and d_grad_all <= 1e-5


# --- loading errors and the pretrain_signbert.pth layout (tiny sizes, no reference code needed) -----------

TINY = SignBertGCNConfig(joint_widths=(4, 4, 8), part_width=8)


def _official_layout(module: SignBertPoseEncoder, prefix="signbert.") -> dict[str, torch.Tensor]:
    """A state dict in the authors' key layout made from ``module``."""
    own = module.state_dict()
    return {k: own[v].clone() for k, v in official_signbert_key_map(module.cfg, prefix).items()}


def test_load_round_trip_and_foreign_keys_untouched():
    torch.manual_seed(5)
    src = SignBertPoseEncoder(TINY)
    _randomize_bn(src, torch.Generator().manual_seed(6))
    sd = _official_layout(src)
    sd["clip.logit_scale"] = torch.tensor(1.0)            # another model part: not looked at
    dst = SignBertPoseEncoder(TINY)
    load_official(dst, sd)
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k


@pytest.mark.parametrize("case", ["missing", "extra", "renamed", "shape"])
def test_bad_keys_are_named(case):
    module = SignBertPoseEncoder(TINY)
    sd = _official_layout(module)
    key = "signbert.embed.st_gcn_hand.st_gcn_networks.2.residual.1.running_var"
    if case == "missing":
        del sd[key]
    elif case == "extra":
        key = "signbert.embed.st_gcn_hand.pe.pe"
        sd[key] = torch.zeros(3)
    elif case == "renamed":
        sd[key.replace("residual", "resid")] = sd.pop(key)
        key = key.replace("residual", "resid")
    else:
        sd[key] = torch.zeros(9)
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_official(module, sd)


def test_pretrain_signbert_layout(tmp_path):
    torch.manual_seed(7)
    src = SignBertPoseEncoder(TINY)
    _randomize_bn(src, torch.Generator().manual_seed(8))
    gcn = _official_layout(src, prefix="")
    extra = {"blocks.0.attn.proj_q.weight": torch.zeros(2, 2), "norm.gamma": torch.ones(2)}
    # nested under GCN_Transform, read from a file with weights_only=True
    path = tmp_path / "pretrain_signbert.pth"
    torch.save({"state_dict": {"GCN_Transform": {**gcn, **extra}}, "epoch": 3}, path)
    dst = SignBertPoseEncoder(TINY)
    report = load_pretrain_signbert(dst, path)
    assert report == {"loaded": ["hand", "body", "clip_block"], "left_at_init": [],
                      "ignored": sorted(extra)}
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k
    # flat ['state_dict'], hand only: body and clip block stay at their init and are reported
    hand_only = {k: v for k, v in gcn.items() if k.startswith("embed.st_gcn_hand.")}
    dst = SignBertPoseEncoder(TINY)
    body_before = dst.body.state_dict()
    report = load_pretrain_signbert(dst, {"state_dict": hand_only})
    assert report["loaded"] == ["hand"] and report["left_at_init"] == ["body", "clip_block"]
    assert all(torch.equal(v, dst.body.state_dict()[k]) for k, v in body_before.items())
    assert torch.equal(dst.hand.A_pool, src.hand.A_pool)
    # a partial sub-network is refused, naming the key
    partial = dict(gcn)
    del partial["GCN_Conv.conv1x1.weight"]
    with pytest.raises(ValueError, match=r"GCN_Conv\.conv1x1\.weight"):
        load_pretrain_signbert(SignBertPoseEncoder(TINY), {"state_dict": partial})
    with pytest.raises(ValueError, match="no hand network"):
        load_pretrain_signbert(SignBertPoseEncoder(TINY), {"state_dict": {"GCN_Conv.bn.weight": torch.ones(24)}})


@pytest.mark.slow   # writes and reads a ~60 MB file, builds two 50 M-parameter encoders
def test_pretrain_signbert_loads_as_the_authors_init_sign_model(reference, tmp_path):
    """The same file through their ``init_sign_model`` (non-strict) and our loader gives the same weights."""
    ref, _ = reference
    from modules.modeling_signbert import init_sign_model
    gcn = {k: v for k, v in ref.state_dict().items() if k.startswith("embed.")}     # no GCN_Conv in the file
    extra = {"blocks.0.proj.weight": torch.zeros(2, 2)}
    path = tmp_path / "pretrain_signbert.pth"
    torch.save({"state_dict": {"GCN_Transform": {**gcn, **extra}}}, path)
    args = types.SimpleNamespace(init_sign_model=str(path), hidden_dim=512, dropout=0.1, in_channels=2,
                                 strategy="spatial", temporal_pad=0, local_rank=0)
    cuda = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    try:
        theirs = init_sign_model(args).state_dict()
    finally:
        torch.Tensor.cuda = cuda
    mine = SignBertPoseEncoder()
    report = load_pretrain_signbert(mine, path)
    assert report == {"loaded": ["hand", "body"], "left_at_init": ["clip_block"], "ignored": sorted(extra)}
    own = mine.state_dict()
    for k, v in official_signbert_key_map(prefix="").items():
        if k.startswith("embed."):
            assert torch.equal(theirs[k], own[v]), k


def test_bad_clip_starts_are_refused():
    enc = SignBertPoseEncoder(TINY).eval()
    x = [torch.zeros(1, 20, v, 2) for v in (21, 21, 7)]
    assert enc(*x, torch.tensor([[0, 4, -1]])).shape == (1, 3, 24)
    with pytest.raises(ValueError, match="clip starts"):
        enc(*x, torch.tensor([[5]]))                      # 5 + 16 > 20
    with pytest.raises(ValueError, match="clip starts"):
        enc(*x, torch.tensor([[-2]]))
    with pytest.raises(ValueError, match="joints"):
        enc(torch.zeros(1, 20, 20, 2), *x[1:], torch.tensor([[0]]))
