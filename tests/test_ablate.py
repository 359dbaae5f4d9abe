"""The ablation runner end to end on a tiny synthetic store: tables, JSON, plots, the run cache, the
derived hand-only store, aggregation against numpy."""
import json

import numpy as np
import pytest

from seds.experiments import ablate
from seds.experiments import runs as run_cache
from seds.config import load_config


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from seds.synthetic.signing import SyntheticConfig
    from seds.synthetic.store import write_synthetic_store
    root = tmp_path_factory.mktemp("abl")
    store = root / "store"
    write_synthetic_store(store, SyntheticConfig(vocab_size=30, n_signers=(2, 1, 1), n_sentences=(16, 8, 8),
                                                 max_words=4, fps=12, height=48, width=48), workers=1)
    overrides = [f"data.store={store}", "model.preset=tiny", "model.text.hash_buckets=512",
                 "model.text.hash_width=32", "model.text.hash_layers=1", "model.max_clips=64", "train.epochs=1",
                 "train.batch_size=8",
                 "train.eval_batch_size=8"]
    return root, store, overrides


def _cli(root, overrides, *args):
    return ablate.main(["--config", "configs/ablation_cpu.yaml", "--results", str(root / "res"),
                        "--runs", str(root / "runs"), *args, *overrides])


@pytest.mark.slow
def test_alignment_study_end_to_end_and_cache(tiny):
    root, store, overrides = tiny
    assert _cli(root, overrides, "--study", "alignment", "--seeds", "2") == 0
    doc = json.loads((root / "res" / "alignment.json").read_text())
    assert [v["variant"] for v in doc["variants"]] == ["w/o L_p-r (β=0)", "w/ L_p-r (β=0.4)"]
    for v in doc["variants"]:
        assert len(v["per_seed"]) == 2 and v["stream"] == "fused"
        r1 = [s["test"]["t2v"]["R@1"] for s in v["per_seed"]]
        assert v["mean"]["t2v_R@1"] == pytest.approx(np.mean(r1))
        assert v["std"]["t2v_R@1"] == pytest.approx(np.std(r1, ddof=1))
        assert 0 <= v["mean"]["t2v_R@1"] <= 100 and v["mean"]["t2v_MedR"] >= 1
    # the two variants really differ in β, and each run's stored config says so
    keys = [v["runs"] for v in doc["variants"]]
    assert len({k for ks in keys for k in ks}) == 4
    cfg0 = json.loads((root / "runs" / keys[0][0] / "result.json").read_text())["config"]
    assert cfg0["loss"]["beta"] == 0.0 and cfg0["train"]["seed"] == 0
    md = (root / "res" / "alignment.md").read_text()
    assert "python -m seds.experiments.ablate" in md and "--study alignment" in md and "proxy-RGB" in md and "seeds [0, 1]" in md
    assert md.count("\n| w/") == 3 and "±" in md       # two table rows + the paired comparison row
    # convergence and the paired comparison with the reference variant are in the table
    assert "epochs to best" in md and "Paired comparison with **w/ L_p-r (β=0.4)**" in md and "paired t" in md
    for v in doc["variants"]:
        assert len(v["test_rsum_per_seed"]) == 2 and all(p["epochs_trained"] == 1 for p in v["per_seed"])
    # rerun: everything cached, nothing retrained
    stamps = {p: p.stat().st_mtime for p in (root / "runs").glob("*/result.json")}
    assert _cli(root, overrides, "--study", "alignment", "--seeds", "2") == 0
    assert {p: p.stat().st_mtime for p in (root / "runs").glob("*/result.json")} == stamps
    assert not any((root / "runs").glob("*/last"))       # only best/ is kept


@pytest.mark.slow
def test_cache_survives_new_config_fields(tiny, tmp_path):
    """A run cached before a config field was added (so its stored config lacks it, and its hash key
    differs) is still found; a changed value is not."""
    import shutil
    root, store, overrides = tiny
    base = load_config("configs/ablation_cpu.yaml", overrides)
    v = next(x for x in ablate.STUDIES["alignment"].variants if "β=0)" in x.name)
    cfg = ablate.variant_config(base, v, 0)
    old = root / "runs" / ablate.run_key(cfg)
    assert old.exists()                      # trained by the alignment test above
    runs = tmp_path / "runs"
    moved = runs / "0123456789ab"
    shutil.copytree(old, moved)
    res = json.loads((moved / "result.json").read_text())
    del res["config"]["model"]["pose"]["hand_init"]          # "an older config without this field"
    (moved / "result.json").write_text(json.dumps(res))
    assert ablate.find_cached(cfg, runs)["key"] == res["key"]
    other = ablate.variant_config(base, ablate.Variant("x", ("loss.beta=0.3",)), 0)
    assert ablate.find_cached(other, runs) is None
    res["cache_version"] = ablate.CACHE_VERSION - 1                # trained by older training code
    (moved / "result.json").write_text(json.dumps(res))
    assert ablate.find_cached(cfg, runs) is None


@pytest.mark.slow
def test_stale_cached_metrics_are_evaluated_again(tiny, tmp_path):
    """A run cached before the expected-rank ties (result.json without the metrics marker) is not
    reused as it is: its kept best checkpoint is evaluated again, without retraining."""
    root, store, overrides = tiny
    base = load_config("configs/ablation_cpu.yaml", overrides)
    v = next(x for x in ablate.STUDIES["alignment"].variants if "β=0)" in x.name)
    cfg = ablate.variant_config(base, v, 0)
    runs_dir = tmp_path / "runs"
    run_cache.run_seds(cfg, runs_dir)                          # a fresh run, then made to look old
    f = runs_dir / ablate.run_key(cfg) / "result.json"
    fresh = json.loads(f.read_text())
    assert fresh["metrics"] == run_cache.METRICS and fresh["selection_ties"] == "expected"
    stale = {k: v for k, v in fresh.items() if k not in ("metrics", "selection_ties")}
    stale["test"] = {s: {d: {**m, "R@1": 100.0, "MedR": 1.0} for d, m in r.items()} for s, r in fresh["test"].items()}
    f.write_text(json.dumps(stale))
    ckpt_cfg = runs_dir / ablate.run_key(cfg) / "best" / "config.json"     # an old checkpoint: no selection_ties
    doc = json.loads(ckpt_cfg.read_text())
    doc["info"] = {k: v for k, v in doc["info"].items() if not k.startswith("selection_")}
    ckpt_cfg.write_text(json.dumps(doc))
    weights = runs_dir / ablate.run_key(cfg) / "best" / "model.safetensors"
    stamp = weights.stat().st_mtime
    again = run_cache.run_seds(cfg, runs_dir)
    assert again["test"] == fresh["test"] and again["metrics"] == run_cache.METRICS
    assert again["selection_ties"] == "optimistic"             # its epoch was chosen under the old ties
    assert weights.stat().st_mtime == stamp and json.loads(f.read_text())["test"] == fresh["test"]
    assert run_cache.run_seds(cfg, runs_dir) == again                  # now cached as it is


@pytest.mark.slow
def test_sweep_plot_and_variant_selection(tiny):
    root, store, overrides = tiny
    assert _cli(root, overrides, "--study", "beta", "--seeds", "1", "--only", "β=0.0,β=0.4") == 0
    doc = json.loads((root / "res" / "beta.json").read_text())
    assert [v["value"] for v in doc["variants"]] == [0.0, 0.4]
    assert doc["complete"] is False                     # --only a subset: the table says it is partial
    assert "**Partial: 2 of the study's 6 variants done so far.**" in (root / "res" / "beta.md").read_text()
    png = root / "res" / "beta.png"
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
    # β=0 and β=0.4 are the alignment study's seed-0 runs: shared through the cache
    align = json.loads((root / "res" / "alignment.json").read_text())
    assert doc["variants"][0]["runs"][0] == align["variants"][0]["runs"][0]
    assert _cli(root, overrides, "--study", "beta", "--only", "β=7") == 1


def test_hand_only_store_drops_body(tiny):
    root, store, overrides = tiny
    from seds.data.store import FeatureStore
    dst = ablate.derived_store(store, ("body",), root / "stores")
    src_fs, dst_fs = FeatureStore(store), FeatureStore(dst)
    assert src_fs.ids() == dst_fs.ids()
    a, b = src_fs[src_fs.ids()[0]], dst_fs[src_fs.ids()[0]]
    assert (b.keypoints[:, :7] == 0).all() and (a.keypoints[:, :7, 2] > 0).any()
    np.testing.assert_array_equal(a.keypoints[:, 7:], b.keypoints[:, 7:])
    np.testing.assert_array_equal(a.rgb, b.rgb)
    assert (dst / "manifest_test.csv").read_text() == (store / "manifest_test.csv").read_text()
    base = load_config("configs/ablation_cpu.yaml", overrides)
    v = next(x for x in ablate.STUDIES["keypoints"].variants if x.name == "hand")
    cfg = ablate.variant_config(base, v, 0, root / "stores")
    assert cfg.data.store == str(dst) and ablate.run_key(cfg) != ablate.run_key(base)


def test_every_study_builds_valid_configs(tiny):
    root, store, overrides = tiny
    base = load_config("configs/ablation_cpu.yaml", overrides)
    for study in ablate.STUDIES.values():
        keys = set()
        variants = [v for v in study.variants if not v.drop_parts and not any("hand_init" in o for o in v.overrides)]
        for v in variants:
            keys.add(ablate.run_key(ablate.variant_config(base, v, 0)))
        assert len(keys) == len(variants), study.name
    # every study names a reference variant it has; headline studies default to 5 seeds
    for study in ablate.STUDIES.values():
        assert study.reference in {v.name for v in study.variants}, study.name
    assert [ablate.study_seeds(n) for n in ("fusion", "streams", "alignment")] == [list(range(5))] * 3
    assert ablate.study_seeds("keypoints") == [0, 1, 2] and ablate.study_seeds("fusion", 2) == [0, 1]
    per_study = ablate.study_configs(["alignment", "keypoints"], base, None)
    assert len(per_study) == 2 * 5 + 5 * 3 - 3      # "hand + body" seeds 0-2 = "β=0.4" seeds 0-2: trained once
    # run keys ignore output paths but not seeds
    a = ablate.variant_config(base, ablate.Variant("x"), 0)
    b = ablate.variant_config(base, ablate.Variant("x", ("train.out=elsewhere",)), 0)
    c = ablate.variant_config(base, ablate.Variant("x"), 1)
    assert ablate.run_key(a) == ablate.run_key(b) != ablate.run_key(c)


def test_bad_inputs(tiny, capsys):
    root, store, overrides = tiny
    assert _cli(root, overrides + ["model.fusion.kind=sum"], "--study", "fusion") == 2
    assert "model.fusion.kind" in capsys.readouterr().err
    assert _cli(root, overrides, "--study", "nonsense") == 2
    assert "unknown study" in capsys.readouterr().err


@pytest.mark.slow
def test_several_studies_in_parallel_match_sequential(tiny, tmp_path):
    """``--study a,b --jobs 2`` trains each distinct run once in worker processes (the default model is
    shared by both studies) and gives the same numbers as the sequential runner."""
    root, store, overrides = tiny
    assert _cli(root, overrides, "--study", "alignment", "--seeds", "2") == 0       # sequential (cached)
    seq = json.loads((root / "res" / "alignment.json").read_text())
    par_root = tmp_path
    assert ablate.main(["--config", "configs/ablation_cpu.yaml", "--results", str(par_root / "res"),
                        "--runs", str(par_root / "runs"), "--study", "alignment,streams", "--seeds", "1",
                        "--jobs", "2", *overrides]) == 0
    par = json.loads((par_root / "res" / "alignment.json").read_text())
    streams = json.loads((par_root / "res" / "streams.json").read_text())
    # alignment (2 variants) + streams (3 variants, the fused one = alignment's β=0.4 run) → 4 runs
    assert len(list((par_root / "runs").glob("*/result.json"))) == 4
    assert streams["variants"][2]["runs"] == par["variants"][1]["runs"]
    for a, b in zip(seq["variants"], par["variants"]):
        assert a["runs"][0] == b["runs"][0]
        assert a["per_seed"][0]["test"] == b["per_seed"][0]["test"]
    assert ablate.main(["--study", "alignment,nope", "--seeds", "1"]) == 2


def test_steps_matched_batch_size_scales_the_schedule(tiny):
    from seds.train import Dist, epoch_batches
    root, store, overrides = tiny
    base = load_config("configs/ablation_cpu.yaml", overrides + ["train.epochs=10", "train.warmup_epochs=1",
                                                                 "train.eval_every=1", "train.batch_size=32"])
    fixed = {v.name: ablate.variant_config(base, v, 0) for v in ablate.STUDIES["batch-size"].variants}
    matched = {v.name: ablate.variant_config(base, v, 0) for v in ablate.STUDIES["batch-size-steps"].variants}
    assert {n: c.train.epochs for n, c in fixed.items()} == {"16": 10, "32": 10, "64": 10, "128": 10}
    assert {n: c.train.epochs for n, c in matched.items()} == {"16": 5, "32": 10, "64": 20, "128": 40}
    assert {n: c.train.eval_every for n, c in matched.items()} == {"16": 1, "32": 1, "64": 2, "128": 4}
    for n, c in matched.items():
        assert c.train.batch_size == int(n) and c.train.warmup_epochs == pytest.approx(int(n) / 32)
        # epochs ∝ batch size: epochs × n_train / batch (the number of steps) stays the same
        assert c.train.epochs * 32 == 10 * c.train.batch_size
    # batch 32 is the base config itself, so both studies share (and cache) that run
    assert ablate.run_key(matched["32"]) == ablate.run_key(fixed["32"])
    assert ablate.run_key(matched["64"]) != ablate.run_key(fixed["64"])
    n_train = 600
    steps = {n: c.train.epochs * len(epoch_batches(n_train, c.train.batch_size, 0, 0, Dist()))
             for n, c in matched.items()}
    assert steps == {"16": 190, "32": 190, "64": 200, "128": 200}
    # the scale follows the base config's batch, not a fixed 32 (e.g. a paper-style base at batch 128)
    big = load_config("configs/ablation_cpu.yaml", overrides + ["train.epochs=40", "train.batch_size=128"])
    scaled = {v.name: ablate.variant_config(big, v, 0).train.epochs for v in ablate.STUDIES["batch-size-steps"].variants}
    assert scaled == {"16": 5, "32": 10, "64": 20, "128": 40}


@pytest.mark.slow
def test_run_killed_mid_training_resumes_where_it_stopped(tiny, tmp_path):
    """A study run interrupted in epoch 2 (its training state saved, as every epoch's is) continues from
    that state instead of starting over, and ends with exactly the weights and metrics of an
    uninterrupted run; a leftover state of another model config is discarded, not resumed."""
    import copy
    from seds.train import train
    root, store, overrides = tiny
    cfg = load_config("configs/ablation_cpu.yaml", overrides + ["train.epochs=3", "train.save_every_steps=1"])
    ref = run_cache.run_seds(cfg, tmp_path / "a")
    assert ref["resumed_at_epoch"] is None and ref["epochs_trained"] == 3
    steps_epoch1 = run_cache.epoch_records(tmp_path / "a" / ref["key"])[0]["step"]
    out = tmp_path / "b" / ref["key"]
    cut = copy.deepcopy(cfg)
    cut.train.out, cut.train.max_steps = str(out), steps_epoch1 + 1      # "killed" one step into epoch 2
    train(cut, progress=False)
    assert (out / "last" / "train_state.pt").is_file() and run_cache.interrupted_epoch(out, cfg) == 1
    with open(out / "log.jsonl", "a") as f:       # a mark of the first attempt: a run started over loses it
        f.write(json.dumps({"kind": "mark"}) + "\n")
    res = run_cache.run_seds(cfg, tmp_path / "b")
    assert res["resumed_at_epoch"] == 1 and res["epochs_trained"] == 3
    assert res["test"] == ref["test"] and res["val"] == ref["val"] and res["best_epoch"] == ref["best_epoch"]
    assert [e["epoch"] for e in res["epochs"]] == [1, 2, 3] and not (out / "last").exists()
    assert '"kind": "mark"' in (out / "log.jsonl").read_text()
    # a state left by another model config is not resumed
    other = copy.deepcopy(cfg)
    other.model.fusion.layers = cfg.model.fusion.layers + 1
    other.train.out, other.train.max_steps = str(tmp_path / "c"), 1
    train(other, progress=False)
    assert run_cache.interrupted_epoch(tmp_path / "c", cfg) is None and not (tmp_path / "c" / "last").exists()
