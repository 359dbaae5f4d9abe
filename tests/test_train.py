"""python -m seds.train / seds.evaluate on a tiny synthetic store: learning, resume, failures."""
import json
import math
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from seds.config import load_config
from seds.train import TrainingError, epoch_batches, Dist, train, worker_context

REPO = Path(__file__).resolve().parents[1]
TINY_DATA = {"n_sentences": [48, 16, 16], "n_signers": [3, 1, 1], "vocab_size": 40, "min_words": 3,
             "max_words": 5}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is faster and identical across the in-process and
    subprocess runs that the resume tests compare bit for bit."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from seds.config import from_dict
    from seds.synthetic.signing import SyntheticConfig
    from seds.synthetic.store import write_synthetic_store
    root = tmp_path_factory.mktemp("synthetic") / "store"
    write_synthetic_store(root, from_dict(SyntheticConfig, TINY_DATA), workers=1)
    return root


def tiny_overrides(store, out, **train):
    t = {"epochs": 2, "batch_size": 16, "lr_pose": 2e-3, "lr_transformer": 2e-3, "warmup_epochs": 0,
         "log_every": 1, "eval_batch_size": 16, "out": str(out), "seed": 0}
    t.update(train)
    return (["model.preset=tiny", "model.max_clips=64", "data.dataset=synthetic", f"data.store={store}",
             "data.rgb_features=synthetic-proxy"] + [f"train.{k}={v}" for k, v in t.items()])


@pytest.fixture(scope="module")
def ref_run(store, tmp_path_factory):
    """An uninterrupted 2-epoch run: the reference for the resume tests and the evaluate CLI."""
    out = tmp_path_factory.mktemp("ref") / "run"
    train(load_config(None, tiny_overrides(store, out, epochs=2)), progress=False)
    return out


def weights(folder):
    return load_file(str(Path(folder) / "model.safetensors"))


@pytest.mark.slow
def test_training_reduces_the_loss_and_selects_on_val(store, tmp_path):
    cfg = load_config(None, tiny_overrides(store, tmp_path / "run", epochs=4))
    res = train(cfg, progress=False)
    losses = [r["loss"] for r in res["history"]]
    assert len(losses) == 4
    assert losses[-1] < losses[0] - 0.3, losses
    best = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert best["info"]["selected_on"] == "val"
    assert (tmp_path / "run" / "metrics.csv").exists() and (tmp_path / "run" / "curves.png").exists()
    rows = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    ep = [r for r in rows if r["kind"] == "epoch"][-1]
    assert {"t-fused", "t-pose", "t-rgb", "p-r", "val_fused_t2v_R@1", "lr_scratch"} <= set(ep)


def test_worker_context_forks_unless_jax_is_loaded(monkeypatch):
    monkeypatch.delitem(sys.modules, "jax", raising=False)
    assert worker_context() is None                      # the platform default: fork, dataset shared
    monkeypatch.setitem(sys.modules, "jax", types.ModuleType("jax"))
    assert worker_context() == "forkserver"


@pytest.mark.slow
@pytest.mark.parametrize("jax_loaded", [False, True])
def test_dataloader_workers_give_the_same_training(store, ref_run, tmp_path, monkeypatch, jax_loaded):
    """data.workers=2 reads and collates in worker processes: the same batches, so the same weights. With JAX
    loaded (its threads do not survive a fork) the workers come from a forkserver: this process never forks."""
    if jax_loaded:
        if "jax" not in sys.modules:
            monkeypatch.setitem(sys.modules, "jax", types.ModuleType("jax"))
        monkeypatch.setattr(os, "fork", lambda: pytest.fail("forked a process that has JAX loaded"))
    res = train(load_config(None, tiny_overrides(store, tmp_path / "w", epochs=2) + ["data.workers=2"]),
                progress=False)
    assert res["global_step"] > 0
    a, b = weights(ref_run / "last"), weights(tmp_path / "w" / "last")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_resume_after_interruption_is_bit_exact(store, ref_run, tmp_path):
    # interrupted in the middle of epoch 2 (3 steps per epoch), then resumed
    cut = load_config(None, tiny_overrides(store, tmp_path / "cut", epochs=2, max_steps=4))
    train(cut, progress=False)
    info = json.loads((tmp_path / "cut" / "last" / "config.json").read_text())["info"]
    assert info["global_step"] == 4 and info["epoch"] == 1 and info["step_in_epoch"] == 1
    again = load_config(None, tiny_overrides(store, tmp_path / "cut", epochs=2))
    train(again, resume=True, progress=False)
    a, b = weights(ref_run / "last"), weights(tmp_path / "cut" / "last")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.slow
def test_killed_process_resumes_to_the_same_weights(store, tmp_path):
    """A real SIGKILL mid-run (checkpoints every step are atomic), then --resume; compared with an
    uninterrupted run in a fresh process of the same kind."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = lambda out: [sys.executable, "-m", "seds.train", "--no-progress"] + \
        tiny_overrides(store, out, epochs=2, save_every_steps=1)
    r = subprocess.run(cmd(tmp_path / "ref"), cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    args = cmd(tmp_path / "k")
    p = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cfg_file = tmp_path / "k" / "last" / "config.json"
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        if cfg_file.exists():
            try:
                if json.loads(cfg_file.read_text())["info"]["global_step"] >= 2:
                    break
            except (json.JSONDecodeError, KeyError):
                pass
        time.sleep(0.05)
    killed = p.poll() is None
    if killed:
        p.send_signal(signal.SIGKILL)
    p.wait()
    r = subprocess.run(args + ["--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    if killed:
        assert "resumed from" in r.stdout
    a, b = weights(tmp_path / "ref" / "last"), weights(tmp_path / "k" / "last")
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.slow
def test_nan_loss_stops_with_step_and_term(store, tmp_path, monkeypatch):
    from seds import losses
    orig = losses.SEDSLoss.forward
    calls = {"n": 0}

    def poisoned(self, video, text):
        out = orig(self, video, text)
        calls["n"] += 1
        if calls["n"] == 2:
            out["p-r"] = out["p-r"] * float("nan")
        return out

    monkeypatch.setattr(losses.SEDSLoss, "forward", poisoned)
    cfg = load_config(None, tiny_overrides(store, tmp_path / "nan"))
    with pytest.raises(TrainingError, match=r"step 1 .*p-r"):
        train(cfg, progress=False)


@pytest.mark.slow
def test_clear_errors_for_missing_split_and_inconsistent_features(store, tmp_path):
    cfg = load_config(None, tiny_overrides(store, tmp_path / "x") + ["data.val_split=dev"])
    with pytest.raises(FileNotFoundError, match="manifest_dev.csv"):
        train(cfg, progress=False)
    cfg = load_config(None, tiny_overrides(store, tmp_path / "x") + ["model.rgb_dim=512"])
    with pytest.raises(TrainingError, match="rgb_dim=512"):
        train(cfg, progress=False)
    cfg = load_config(None, tiny_overrides(store, tmp_path / "x") + ["model.max_clips=8"])
    with pytest.raises(TrainingError, match="max_clips=8"):
        train(cfg, progress=False)
    r = subprocess.run([sys.executable, "-m", "seds.train", "train.batch_size=1"], cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "train.batch_size" in r.stderr


def test_epoch_batches_are_deterministic_bucketed_and_cover_everything():
    lengths = list(range(100, 0, -1))
    a = epoch_batches(100, 10, seed=1, epoch=3, d=Dist(), lengths=lengths)
    b = epoch_batches(100, 10, seed=1, epoch=3, d=Dist(), lengths=lengths)
    assert a == b and sorted(i for x in a for i in x) == list(range(100))
    assert a != epoch_batches(100, 10, seed=1, epoch=4, d=Dist(), lengths=lengths)
    # bucketing keeps lengths inside a batch close together
    spread = max(max(lengths[i] for i in x) - min(lengths[i] for i in x) for x in a)
    assert spread < 60
    # two ranks split each global batch
    r0 = epoch_batches(100, 10, 1, 3, Dist(0, 2), lengths)
    r1 = epoch_batches(100, 10, 1, 3, Dist(1, 2), lengths)
    assert [sorted(x + y) for x, y in zip(r0, r1)] == [sorted(x) for x in a]


@pytest.mark.slow
def test_evaluate_cli(ref_run, tmp_path, capsys):
    from seds.evaluate import main
    results = main(["--checkpoint", str(ref_run / "best"), "--split", "test", "--out", str(tmp_path / "e.json")])
    assert set(results) == {"fused", "pose", "rgb"}
    out = json.loads((tmp_path / "e.json").read_text())
    assert out["protocol"] == "sentence_ids" and out["ties"] == "expected"
    assert set(out["results"]) == {"sentence_ids", "distinct"}
    assert out["results"]["sentence_ids"] == json.loads(json.dumps(results))
    assert out["results"]["sentence_ids"]["fused"]["t2v"]["n_queries"] == out["n_sentence_ids"]
    assert out["results"]["distinct"]["fused"]["t2v"]["n_queries"] == out["n_distinct_sentences"]
    assert out["results"]["distinct"]["fused"]["v2t"]["n_queries"] == out["n_videos"] == 16
    printed = capsys.readouterr().out
    assert "protocol: sentence_ids" in printed and "protocol: distinct" in printed and "fractional ranks" in printed
    assert out["median"] == "protocol" and "torch.median" in out["median_note"]     # the authors' V2T MedR
    main(["--checkpoint", str(ref_run / "best"), "--split", "test", "--out", str(tmp_path / "m.json"),
          "--median", "midpoint"])
    mid = json.loads((tmp_path / "m.json").read_text())
    assert mid["median"] == "midpoint"
    assert mid["results"]["sentence_ids"]["fused"]["v2t"]["MedR"] >= out["results"]["sentence_ids"]["fused"]["v2t"]["MedR"]
    # the protocol's former name is still accepted, and means the same protocol
    main(["--checkpoint", str(ref_run / "best"), "--split", "test", "--out", str(tmp_path / "o.json"),
          "--protocol", "official"])
    assert json.loads((tmp_path / "o.json").read_text())["results"] == out["results"]


def zero_weights(model) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()


@pytest.mark.slow
def test_constant_model_scores_at_chance(ref_run, tmp_path):
    """Zero weights → every score equal → chance level (R@K = K/N, MedR = (N+1)/2), not 100 %."""
    from seds.checkpoint import load_checkpoint
    from seds.evaluate import evaluate_model
    from seds.variants import build_dataset
    model, _, cfg, _ = load_checkpoint(ref_run / "best", "cpu")
    zero_weights(model)
    ds = build_dataset(cfg, "test")
    n = len(set(ds.texts))
    for protocol in ("sentence_ids", "distinct"):
        res = evaluate_model(model, ds, cfg.model.tau, 16, protocol=protocol)
        for s in ("fused", "pose", "rgb"):
            for d in ("t2v", "v2t"):
                r = res[s][d]
                assert r["R@1"] == pytest.approx(100 / n) and r["R@5"] == pytest.approx(500 / n), (protocol, s, d)
                assert r["MedR"] == pytest.approx((n + 1) / 2), (protocol, s, d)


@pytest.mark.slow
def test_selection_never_prefers_a_constant_model(store, tmp_path, monkeypatch):
    """The last validation sees the model with zeroed weights (constant scores). With optimistic ties
    it would score R-sum 600 and replace the learned checkpoint; with honest ranks it scores chance
    and the best checkpoint stays a learned one."""
    import seds.train as train_mod
    real = train_mod.evaluate_model
    seen = []

    def evaluate_then_zero_last(model, ds, *a, **kw):
        if len(seen) == 3:
            zero_weights(model)
        res = real(model, ds, *a, **kw)
        seen.append(train_mod.rsum(res))
        return res

    monkeypatch.setattr(train_mod, "evaluate_model", evaluate_then_zero_last)
    train(load_config(None, tiny_overrides(store, tmp_path / "run", epochs=4)), progress=False)
    n = 16                                                     # val sentences (TINY_DATA)
    assert seen[3] == pytest.approx(2 * 100 * (1 + 5 + 10) / n)   # chance R-sum of the constant model
    best = json.loads((tmp_path / "run" / "best" / "config.json").read_text())["info"]
    assert best["epoch"] in (1, 2, 3) and best["val_rsum"] == pytest.approx(max(seen[:3]))
    assert max(seen[:3]) > seen[3] + 20, seen                   # the learned model is clearly above chance
    assert best["selection_ties"] == "expected" and best["selection_protocol"] == "sentence_ids"


@pytest.mark.slow
def test_torchrun_two_processes_gather_the_global_batch(store, tmp_path):
    """DDP on CPU (gloo): 2 ranks × 8 videos train on a global contrastive batch of 16."""
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun not found beside the interpreter")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    args = [str(torchrun), "--nproc_per_node=2", "--master_port=29617", "-m", "seds.train", "--no-progress"] + \
        tiny_overrides(store, tmp_path / "ddp", epochs=1)
    r = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(l) for l in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["kind"] == "step"]
    assert len(steps) == 3                       # 48 videos / global batch 16
    # the logged InfoNCE starts near log(16): the contrastive batch is global, not the 8 local videos
    assert abs(steps[0]["t-fused"] - math.log(16)) < 1.0 and steps[0]["t-fused"] > math.log(8) + 0.3


@pytest.mark.slow
def test_official_variant_trains_and_evaluates_on_the_authors_format(tmp_path):
    """The runners with model.variant official: a store imported from files in the authors' formats
    (synthetic), small token towers, one epoch, then python -m seds.evaluate on the result."""
    from seds.data.official import import_official
    from tests.official_synthetic import write_official_synthetic
    from seds.evaluate import main as evaluate_main
    raw, store = tmp_path / "raw", tmp_path / "store"
    for split in ("train", "test"):
        write_official_synthetic(raw, split=split)
        import_official(raw / "data_h2" / f"{split}.pkl", raw / "RTMpose" / "Pose_all_24rates",
                        raw / "I3D_features" / split, split, store)
    small = ["pose_transformer.width=64", "pose_transformer.layers=1", "pose_transformer.heads=2",
             "rgb_transformer.width=64", "rgb_transformer.layers=1", "rgb_transformer.heads=2"]
    cfg = load_config(REPO / "configs" / "how2sign.yaml",
                      [f"model.{o}" for o in small] + [f"data.store={store}", "data.val_split=test",
                                                        "train.epochs=1", "train.batch_size=2", "train.warmup_epochs=0",
                                                        f"train.out={tmp_path / 'run'}", "train.eval_batch_size=8"])
    assert cfg.model.variant == "official"
    out = train(cfg, progress=False)
    assert out["global_step"] == 2 and math.isfinite(out["best_val_rsum"])
    results = evaluate_main(["--checkpoint", str(tmp_path / "run" / "last"), "--split", "test",
                             "--store", str(store), "--device", "cpu"])
    assert set(results) == {"fused", "pose", "rgb"}
    assert 0 <= results["fused"]["t2v"]["R@1"] <= 100


@pytest.mark.slow
def test_unwritable_train_out_fails_before_data_preparation(store, tmp_path, monkeypatch):
    """Issue 15: train.out was checked only after data preparation (minutes), then a bare [Errno 2]."""
    import seds.train as T

    def no_data(*a, **k):
        raise AssertionError("data preparation ran before train.out was checked")
    monkeypatch.setattr(T, "prepare_data", no_data)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cfg = load_config(None, tiny_overrides(store, blocker / "run"))
    with pytest.raises(TrainingError, match=r"^train\.out='.*a-file/run': cannot write the output folder"):
        train(cfg, progress=False)


def test_early_stopping_counts_validations_without_gain():
    from seds.train import EarlyStopping
    es = EarlyStopping(patience=2, min_delta=0.5)
    assert es.update(10.0, 1) and es.best_epoch == 1
    assert not es.update(10.4, 2) and es.since_best == 1 and not es.stop     # gain ≤ min_delta: no gain
    assert es.update(11.0, 3) and es.since_best == 0 and es.best_epoch == 3
    assert not es.update(5.0, 4) and not es.stop
    assert not es.update(11.0, 5) and es.stop and es.best == 11.0 and es.best_epoch == 3
    # the first validation is always a best, even a score of 0; patience 0 never stops
    off = EarlyStopping(0)
    assert off.update(0.0, 1)
    for e in range(2, 50):
        off.update(0.0, e)
    assert not off.stop and off.best_epoch == 1
    # resume state round trip
    again = EarlyStopping(2, 0.5, **es.state())
    assert again.stop and again.best_epoch == 3
    with pytest.raises(ValueError):
        EarlyStopping(-1)


@pytest.mark.slow
def test_training_stops_early_and_keeps_the_best_checkpoint(store, tmp_path, monkeypatch):
    """Val R-sum peaks at epoch 2, patience 2: training ends after epoch 4, best/ is epoch 2, and the
    run reports both; a resume of the stopped run trains nothing more."""
    import seds.train as tr
    scores = iter([10.0, 30.0, 20.0, 25.0, 99.0, 99.0])

    def fake_eval(*a, **k):
        s = next(scores) / 6
        m = {f"R@{k}": s for k in (1, 5, 10)} | {"MedR": 1.0, "MeanR": 1.0, "n_queries": 16}
        return {"fused": {"t2v": dict(m), "v2t": dict(m)}}

    monkeypatch.setattr(tr, "evaluate_model", fake_eval)
    out = tmp_path / "run"
    cfg = load_config(None, tiny_overrides(store, out, epochs=6, patience=2, max_steps=0) + ["model.streams=[rgb]"])
    res = train(cfg, progress=False)
    assert [r["epoch"] for r in res["history"]] == [1, 2, 3, 4]
    assert res["stopped_early"] and res["best_epoch"] == 2 and res["best_val_rsum"] == pytest.approx(30.0)
    best = json.loads((out / "best" / "config.json").read_text())
    assert best["info"]["epoch"] == 2
    again = train(load_config(None, tiny_overrides(store, out, epochs=6, patience=2) + ["model.streams=[rgb]"]),
                  resume=True, progress=False)
    assert again["history"] == [] and again["stopped_early"] and again["best_epoch"] == 2
