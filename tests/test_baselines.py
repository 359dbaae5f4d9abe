"""Baselines: NetVLAD, the max-margin ranking loss and the IoU similarity against loop references;
SR window labels and recognition; SA-CM / SA-SR / SA-COMB / CiCo end to end on a tiny synthetic store."""
import json
import math

import numpy as np
import pytest
import torch

from seds.experiments.baselines.cico import cico_config
from seds.experiments.baselines.common import BaselineError, SACMConfig, SASRConfig, SplitFeatures, break_ties
from seds.experiments.baselines.netvlad import NetVLAD
from seds.experiments.baselines.sa_cm import load_sa_cm, max_margin_ranking_loss, sa_cm_scores
from seds.experiments.baselines.sa_sr import SignRecognizer, iou_similarity, recognise, window_labels
from seds.config import load_config


# --- NetVLAD --------------------------------------------------------------------------------------

@torch.no_grad()
def netvlad_reference(layer: NetVLAD, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    w, b, c = layer.assign.weight, layer.assign.bias, layer.centroids
    k_all = w.shape[0]
    out = []
    for bi in range(x.shape[0]):
        blocks = []
        for k in range(layer.clusters):
            v = torch.zeros(x.shape[2], dtype=torch.float64)
            for i in range(x.shape[1]):
                if not mask[bi, i]:
                    continue
                logits = [float(w[j] @ x[bi, i] + b[j]) for j in range(k_all)]
                mx = max(logits)
                z = sum(math.exp(l - mx) for l in logits)
                a = math.exp(logits[k] - mx) / z
                v += a * (x[bi, i] - c[k]).double()
            n = float(v.norm())
            blocks.append(v / n if n > 1e-12 else v)
        flat = torch.cat(blocks)
        out.append(flat / max(float(flat.norm()), 1e-12))
    return torch.stack(out).float()


@pytest.mark.parametrize("ghosts", [0, 1])
def test_netvlad_matches_loop_reference(ghosts):
    torch.manual_seed(0)
    layer = NetVLAD(dim=6, clusters=4, ghost_clusters=ghosts)
    x = torch.randn(3, 7, 6)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 4:] = False
    mask[2, 1:] = False
    got = layer(x, mask)
    assert got.shape == (3, 4 * 6)
    torch.testing.assert_close(got, netvlad_reference(layer, x, mask), atol=1e-5, rtol=1e-4)


def test_netvlad_ignores_padding_and_rejects_bad_shapes():
    torch.manual_seed(1)
    layer = NetVLAD(dim=5, clusters=3)
    x = torch.randn(2, 4, 5)
    m = torch.ones(2, 4, dtype=torch.bool)
    padded = torch.cat([x, 100 * torch.randn(2, 3, 5)], 1)
    pm = torch.cat([m, torch.zeros(2, 3, dtype=torch.bool)], 1)
    torch.testing.assert_close(layer(x, m), layer(padded, pm))
    with pytest.raises(ValueError, match="descriptors"):
        layer(torch.randn(2, 4, 6))
    with pytest.raises(ValueError, match="mask"):
        layer(x, torch.ones(2, 5, dtype=torch.bool))


# --- ranking loss ---------------------------------------------------------------------------------

def margin_reference(sim: torch.Tensor, margin: float) -> float:
    b = sim.shape[0]
    total = 0.0
    for i in range(b):
        for j in range(b):
            if i == j:
                continue
            total += max(0.0, margin - float(sim[i, i]) + float(sim[i, j]))   # video i, wrong text j
            total += max(0.0, margin - float(sim[i, i]) + float(sim[j, i]))   # text i, wrong video j
    return total / (2 * b * (b - 1))


def test_max_margin_loss_matches_loops():
    torch.manual_seed(2)
    for b in (2, 5, 9):
        sim = torch.rand(b, b) * 2 - 1
        got = float(max_margin_ranking_loss(sim, 0.2))
        assert got == pytest.approx(margin_reference(sim, 0.2), rel=1e-5, abs=1e-7)
    # well separated positives: zero loss; gradient pushes the positives up when violated
    sim = torch.eye(4) - 0.5
    assert float(max_margin_ranking_loss(sim, 0.2)) == 0.0
    sim = torch.zeros(4, 4, requires_grad=True)
    max_margin_ranking_loss(sim, 0.2).backward()
    assert (sim.grad.diagonal() < 0).all() and (sim.grad[~torch.eye(4, dtype=torch.bool)] > 0).all()
    with pytest.raises(ValueError, match="square"):
        max_margin_ranking_loss(torch.zeros(3, 4))


# --- IoU similarity -------------------------------------------------------------------------------

def test_iou_similarity_matches_sets():
    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(12)]
    rec = [set(rng.choice(words, rng.integers(0, 5), replace=False)) for _ in range(9)]
    qry = [set(rng.choice(words, rng.integers(0, 6), replace=False)) for _ in range(7)] + [{"unseen"}, set()]
    rec[0] = set()
    got = iou_similarity(rec, qry)
    assert got.shape == (9, 9)
    for i, r in enumerate(rec):
        for j, q in enumerate(qry):
            u = len(r | q)
            assert float(got[i, j]) == pytest.approx(len(r & q) / u if u else 0.0)


def test_break_ties_orders_only_ties():
    s = torch.tensor([[0.5, 0.5, 0.2, 0.5], [0.0, 0.0, 0.0, 1.0]])
    t = break_ties(s, seed=0)
    # distinct values keep their order, tied values become distinct
    assert t[0, 2] < t[0, 0] and t[1, 0] < t[1, 3]
    assert len({float(v) for v in t[0, [0, 1, 3]]}) == 3
    torch.testing.assert_close(t, break_ties(s, seed=0))


# --- SA-SR labels and recognition ------------------------------------------------------------------

def _feats(starts, spans, ids, words, t_max=5):
    n = len(starts)
    clip_starts = torch.zeros(n, t_max, dtype=torch.long)
    mask = torch.zeros(n, t_max, dtype=torch.bool)
    for i, st in enumerate(starts):
        clip_starts[i, :len(st)] = torch.tensor(st)
        mask[i, :len(st)] = True
    meta = [{"word_ids": ",".join(map(str, w)), "word_spans": " ".join(f"{a}:{b}" for a, b in sp),
             "words": " ".join(ws)} for w, sp, ws in zip(ids, spans, words)]
    return SplitFeatures(torch.randn(n, t_max, 8), mask, clip_starts, [" ".join(w) for w in words],
                         [f"v{i}" for i in range(n)], meta)


def test_window_labels_match_loop():
    f = _feats([[0, 4, 10, 20], [0, 2]], [[(3, 12), (15, 30)], [(0, 9)]], [[7, 2], [5]],
               [["cat", "run"], ["sun"]])
    lab, names = window_labels(f, window=8)
    assert names == {7: "cat", 2: "run", 5: "sun"}
    for i, (starts, spans, ids) in enumerate([([0, 4, 10, 20], [(3, 12), (15, 30)], [7, 2]), ([0, 2], [(0, 9)], [5])]):
        for t in range(5):
            if t >= len(starts):
                assert lab[i, t] == -1
                continue
            c = starts[t] + 4
            want = next((w for (a, b), w in zip(spans, ids) if a <= c < b), -1)
            assert lab[i, t] == want
    f.meta[1] = {}
    with pytest.raises(BaselineError, match="sign-level labels"):
        window_labels(f)


class _FixedLogits(SignRecognizer):
    def __init__(self, logits):
        torch.nn.Module.__init__(self)
        self.logits = logits

    def forward(self, x):
        return self.logits[: x.shape[0]]


def test_recognise_thresholds_and_ignores_padding():
    f = _feats([[0, 1, 2], [0]], [[(0, 1)], [(0, 1)]], [[0], [1]], [["a"], ["b"]], t_max=3)
    big = 10.0
    logits = torch.zeros(2, 3, 4)            # vocab a, b, c + background
    logits[0, 0, 0] = big                     # "a" confident in a valid window
    logits[0, 1, 2] = 0.1                     # "c" weak: below 0.5
    logits[1, 2, 1] = big                     # "b" only in a padded window of video 1 → ignored
    rec = recognise(_FixedLogits(logits), f, ["a", "b", "c"], threshold=0.5)
    assert rec == [{"a"}, set()]


# --- end to end on a tiny store --------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory):
    from seds.synthetic.signing import SyntheticConfig
    from seds.synthetic.store import write_synthetic_store
    store = tmp_path_factory.mktemp("store")
    write_synthetic_store(store, SyntheticConfig(vocab_size=40, n_signers=(2, 1, 1), n_sentences=(24, 10, 10),
                                                 max_words=4, fps=12, height=64, width=64), workers=1)
    return load_config("configs/ablation_cpu.yaml", [f"data.store={store}", "model.preset=tiny",
                                                        "model.text.hash_buckets=1024", "train.epochs=1",
                                                        "train.batch_size=8"])


@pytest.mark.slow
def test_cli_all_baselines_end_to_end(tiny_cfg, tmp_path):
    from seds.experiments.baselines.__main__ import main
    store = tiny_cfg.data.store
    args = ["--name", "sa-comb", "--config", "configs/ablation_cpu.yaml", "--seeds", "1",
            "--results", str(tmp_path / "res"), "--runs", str(tmp_path / "runs"),
            f"data.store={store}", "cm.epochs=2", "cm.batch_size=8", "cm.text_model=hash", "cm.hash_width=16",
            "cm.hash_buckets=512", "cm.dim=32", "cm.hidden=32", "cm.video_heads=4", "sr.epochs=2", "sr.hidden=32"]
    assert main(args) == 0
    doc = json.loads((tmp_path / "res" / "baselines_sa-comb.json").read_text())
    (m,) = doc["methods"]
    for key in ("t2v_R@1", "t2v_R@10", "v2t_R@5"):
        assert 0.0 <= m["mean"][key] <= 100.0
    assert m["mean"]["t2v_MedR"] >= 1
    md = (tmp_path / "res" / "baselines_sa-comb.md").read_text()
    doc_sr = json.loads((tmp_path / "res" / "baselines_sa-comb.json").read_text())
    assert "until val stops improving" in md and doc_sr["sr"]["patience"] == 10
    assert "python -m seds.experiments.baselines --name sa-comb" in md and "proxy-RGB" in md
    # SA-CM's checkpoint round-trips: reloaded scores equal a fresh evaluation of the same split
    (cm_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("sa-cm-")]
    res = json.loads((cm_dir / "result.json").read_text())
    from seds.experiments.baselines.common import load_split, retrieval_from_scores
    cfg = load_config("configs/ablation_cpu.yaml", [f"data.store={store}"])
    model, text_inputs, _ = load_sa_cm(cm_dir / "best")
    test = load_split(cfg, "test")
    again = retrieval_from_scores(sa_cm_scores(model, test, text_inputs), test.texts)
    assert again["t2v"]["R@1"] == pytest.approx(res["test"]["t2v"]["R@1"])
    # cached: a second call trains nothing and gives the same table
    before = {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("result.json")}
    assert main(args) == 0
    assert {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("result.json")} == before


@pytest.mark.slow
def test_cli_cico_trains_the_rgb_stream(tiny_cfg, tmp_path):
    from seds.experiments.baselines.__main__ import main
    args = ["--name", "cico", "--config", "configs/ablation_cpu.yaml", "--seeds", "1", "--results", str(tmp_path),
            "--runs", str(tmp_path / "runs"), "--seds-runs", str(tmp_path / "seds"), f"data.store={tiny_cfg.data.store}",
            "model.preset=tiny", "model.max_clips=64", "model.text.hash_buckets=512", "train.epochs=1",
            "train.batch_size=8"]
    assert main(args) == 0
    (run,) = list((tmp_path / "seds").glob("*/result.json"))
    res = json.loads(run.read_text())
    assert res["config"]["model"]["streams"] == ["rgb"] and list(res["test"]) == ["rgb"]
    doc = json.loads((tmp_path / "baselines_cico.json").read_text())
    assert doc["methods"][0]["mean"]["t2v_R@1"] == pytest.approx(res["test"]["rgb"]["t2v"]["R@1"])


def test_bad_override_is_a_config_error(tiny_cfg, tmp_path, capsys):
    from seds.experiments.baselines.__main__ import main
    assert main(["--name", "sa-cm", "--config", "configs/ablation_cpu.yaml", "cm.clusterz=3"]) == 2
    assert "cm.clusterz" in capsys.readouterr().err


def test_cico_is_seds_rgb_only(tiny_cfg):
    c = cico_config(tiny_cfg)
    assert c.model.streams == ("rgb",)
    assert c.model.rgb_transformer == tiny_cfg.model.rgb_transformer and c.data == tiny_cfg.data
    from seds.model import SEDS
    m = SEDS(c.model)
    assert not hasattr(m, "pose_encoder") and not hasattr(m, "fusion")


def test_sacm_config_validation():
    from seds.config import ConfigError
    with pytest.raises(ConfigError, match="batch_size"):
        SACMConfig(batch_size=1)
    with pytest.raises(ConfigError, match="threshold"):
        SASRConfig(threshold=1.5)


def test_training_stops_when_val_stops_improving_and_keeps_the_best_epoch():
    """The baselines train to convergence: with patience P, training stops P epochs after the best val
    score, whose weights are the ones kept; without patience every epoch of the cap is trained."""
    from seds.experiments.baselines.common import train_select_best
    val_scores = [1.0, 5.0, 9.0, 4.0, 8.0, 3.0, 2.0, 99.0]      # best at epoch 3, a late spike at epoch 8

    def run(patience):
        model = torch.nn.Linear(1, 1, bias=False)
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        seen, weights = [], []

        def batch_losses(epoch):
            seen.append(epoch)
            yield model.weight.sum()      # each SGD step moves the weight by -1

        def validate():
            weights.append(float(model.weight.detach()))
            r = val_scores[len(seen) - 1]
            return {"t2v": {"R@1": r, "R@5": r, "R@10": r}, "v2t": {"R@1": r, "R@5": r, "R@10": r}}
        best_epoch, best, hist = train_select_best(model, opt, "x", len(val_scores), batch_losses, validate,
                                                   progress=False, patience=patience)
        return best_epoch, best, hist, float(model.weight.detach()), weights

    best_epoch, best, hist, w, weights = run(patience=3)
    assert best_epoch == 3 and best == pytest.approx(9.0) and len(hist) == 6      # epochs 4-6 bring no gain
    assert w == pytest.approx(weights[2])                                         # epoch 3's weights restored
    best_epoch, best, hist, w, weights = run(patience=0)
    assert best_epoch == 8 and len(hist) == 8 and w == pytest.approx(weights[7])
    with pytest.raises(Exception, match="patience"):
        SASRConfig(patience=-1)
