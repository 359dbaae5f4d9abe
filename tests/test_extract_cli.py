"""``python -m seds.extract``: resumable, parallel, failure-tolerant store filling.

The fast tests inject a fake extractor (the real one runs MediaPipe + I3D, seconds per clip): a
"video" is a text file holding its frame count, or ``CORRUPT`` (the extractor raises) or ``CRASH``
(the extractor kills its process). The slow test runs the real pipeline on two real clips.
"""
import csv
import importlib.util
import os
import signal
import subprocess
import sys
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from seds.data.features import VideoFeatures
from seds.data.manifest import load_manifest
from seds.data.store import FeatureStore, load_features
from seds.extract.__main__ import main
from seds.extract.factory import ExtractorFactory

REPO = Path(__file__).resolve().parents[1]


def expected_features(video_id: str, frames: int) -> VideoFeatures:
    rng = np.random.default_rng(zlib.crc32(video_id.encode()))
    clips = min(64, frames - 15)
    return VideoFeatures(rng.uniform(0, 1, (frames, 87, 3)).astype(np.float32),
                         rng.standard_normal((clips, 1024)).astype(np.float32),
                         np.arange(clips, dtype=np.int64), fps=24.0, meta={"backend": "fake"})


class FakeExtractor:
    def __init__(self, calls_dir, interrupt_after, delay):
        self.calls_dir, self.interrupt_after, self.delay = calls_dir, interrupt_after, delay

    def __call__(self, video_path, meta):
        assert set(meta) == {"id", "video", "text", "split", "signer"}, meta   # only the core fields
        if self.interrupt_after is not None and len(os.listdir(self.calls_dir)) >= self.interrupt_after:
            raise KeyboardInterrupt
        Path(self.calls_dir, f"{zlib.crc32(meta['id'].encode())}-{uuid.uuid4().hex}").touch()
        time.sleep(self.delay)
        content = Path(video_path).read_text()
        if content.startswith("CORRUPT"):
            raise ValueError(f"{video_path}: corrupt video (fake)")
        if content.startswith("CRASH"):
            os._exit(3)                       # like a segfault in a native decoder
        return expected_features(meta["id"], int(content))


@dataclass(frozen=True)
class FakeFactory:
    """Picklable, so spawned worker processes can rebuild it."""
    calls_dir: str
    interrupt_after: int | None = None
    delay: float = 0.0
    fail_init: bool = False

    def __call__(self):
        if self.fail_init:
            raise RuntimeError("no such weights (fake)")
        return FakeExtractor(self.calls_dir, self.interrupt_after, self.delay)


def calls(d) -> int:
    return len(os.listdir(d))


@pytest.fixture()
def dataset(tmp_path):
    """8 train videos (ids with awkward characters), 1 test video, an annotation CSV."""
    vids = tmp_path / "videos"
    vids.mkdir()
    rows = []
    for i in range(8):
        vid = f"clip {i}/ä" if i % 3 == 0 else f"clip_{i}"
        name = f"v{i}.mp4"
        (vids / name).write_text(str(16 + 7 * i))
        rows.append({"id": vid, "file": name, "text": f"sentence {i}", "split": "train", "frames": 16 + 7 * i,
                     "backend": "declared", "gloss": f"G{i}"})
    (vids / "t.mp4").write_text("30")
    rows.append({"id": "held_out", "file": "t.mp4", "text": "test sentence", "split": "test"})
    ann = tmp_path / "labels.csv"
    with open(ann, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["id", "file", "text", "split", "backend", "gloss"],
                           extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    callsd = tmp_path / "calls"
    callsd.mkdir()
    return {"ann": ann, "videos": vids, "out": tmp_path / "store", "calls": callsd,
            "train": {r["id"]: r for r in rows if r["split"] == "train"}}


def argv(ds, *extra):
    return ["--dataset", "folder", "--annotations", str(ds["ann"]), "--videos", str(ds["videos"]),
            "--split", "train", "--out", str(ds["out"]), "--no-progress", *extra]


def failures(ds, split="train"):
    with open(ds["out"] / f"failures_{split}.csv", newline="", encoding="utf-8") as f:
        return {r["id"]: r for r in csv.DictReader(f)}


def check_stored(ds, ids):
    st = FeatureStore(ds["out"])
    assert sorted(st.ids()) == sorted(ids)
    for vid in ids:
        got, want = st[vid], expected_features(vid, ds["train"][vid]["frames"])
        assert np.array_equal(got.keypoints, want.keypoints) and np.array_equal(got.rgb, want.rgb)
        assert got.meta["id"] == vid and got.meta["text"] == ds["train"][vid]["text"]
        assert got.meta["split"] == "train" and got.meta["video"].endswith(".mp4")
        # measured extractor facts beat declared manifest extras; other extras are kept
        assert got.meta["backend"] == "fake" and got.meta["gloss"] == ds["train"][vid]["gloss"]
    assert not st.partial_files()


def test_extracts_all_then_skips(dataset, capsys):
    ds = dataset
    assert main(argv(ds), extractor_factory=FakeFactory(str(ds["calls"]))) == 0
    check_stored(ds, list(ds["train"]))
    assert calls(ds["calls"]) == 8 and failures(ds) == {}
    m = load_manifest(ds["out"] / "manifest_train.csv")
    assert m.ids() == list(ds["train"]) and m[1].video == str(ds["videos"] / "v1.mp4")
    assert "8 extracted, 0 already in the store, 0 failed" in capsys.readouterr().out
    # second run: nothing to do
    assert main(argv(ds), extractor_factory=FakeFactory(str(ds["calls"]))) == 0
    assert calls(ds["calls"]) == 8
    assert "0 extracted, 8 already in the store" in capsys.readouterr().out


def test_resume_after_interrupt_and_partial_files(dataset, capsys):
    ds = dataset
    rc = main(argv(ds), extractor_factory=FakeFactory(str(ds["calls"]), interrupt_after=3))
    assert rc == 130
    st = FeatureStore(ds["out"])
    assert len(st) == 3 and not st.partial_files()
    first = set(st.ids())
    junk = ds["out"] / ".clip_5.safetensors.k1ll3d.tmp"       # a write cut short by a kill
    junk.write_bytes(b"\x00" * 64)
    assert st.ids() == sorted(first)                        # ignored by readers
    assert main(argv(ds), extractor_factory=FakeFactory(str(ds["calls"]))) == 0
    assert not junk.exists()
    assert calls(ds["calls"]) == 8                          # 3 + the 5 missing ones, none redone
    check_stored(ds, list(ds["train"]))
    assert "5 extracted, 3 already in the store" in capsys.readouterr().out


@pytest.mark.slow
def test_killed_process_leaves_only_whole_files(dataset):
    """SIGKILL a real CLI process mid-run, then resume."""
    ds = dataset
    code = ("import sys; sys.path[:0] = [{repo!r}, {tests!r}]\n"
            "from test_extract_cli import FakeFactory\n"
            "from seds.extract.__main__ import main\n"
            "sys.exit(main({args!r}, extractor_factory=FakeFactory({calls!r}, delay=0.3)))\n").format(
        repo=str(REPO), tests=str(REPO / "tests"), args=argv(ds), calls=str(ds["calls"]))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and calls(ds["calls"]) < 3 and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    st = FeatureStore(ds["out"])
    done = st.ids()
    assert 1 <= len(done) < 8
    for vid in done:                                        # every stored file is whole and valid
        load_features(st.path_for(vid))
    assert main(argv(ds), extractor_factory=FakeFactory(str(ds["calls"]))) == 0
    check_stored(ds, list(ds["train"]))


def test_bad_videos_are_reported_not_fatal(dataset, capsys):
    ds = dataset
    (ds["videos"] / "v2.mp4").write_text("CORRUPT")
    (ds["videos"] / "v4.mp4").unlink()
    rc = main(argv(ds), extractor_factory=FakeFactory(str(ds["calls"])))
    assert rc == 1
    fails = failures(ds)
    assert set(fails) == {"clip_2", "clip_4"}
    assert "corrupt video (fake)" in fails["clip_2"]["error"] and fails["clip_2"]["video"].endswith("v2.mp4")
    assert "video not found" in fails["clip_4"]["error"]
    check_stored(ds, [v for v in ds["train"] if v not in fails])
    assert "2 failure(s) listed in" in capsys.readouterr().out
    # fixing the file and rerunning retries only the failures
    (ds["videos"] / "v2.mp4").write_text(str(ds["train"]["clip_2"]["frames"]))
    (ds["videos"] / "v4.mp4").write_text(str(ds["train"]["clip_4"]["frames"]))
    assert main(argv(ds), extractor_factory=FakeFactory(str(ds["calls"]))) == 0
    # first run: 6 good + the corrupt one (the missing file is never dispatched); now the 2 fixed ones
    assert failures(ds) == {} and calls(ds["calls"]) == 7 + 2
    check_stored(ds, list(ds["train"]))


@pytest.mark.slow
def test_worker_processes_survive_bad_and_crashing_videos(dataset):
    ds = dataset
    (ds["videos"] / "v1.mp4").write_text("CORRUPT")
    (ds["videos"] / "v5.mp4").write_text("CRASH")
    rc = main(argv(ds, "--workers", "2"), extractor_factory=FakeFactory(str(ds["calls"])))
    assert rc == 1
    fails = failures(ds)
    assert set(fails) == {"clip_1", "clip_5"}
    assert "corrupt video (fake)" in fails["clip_1"]["error"]
    assert "crashed" in fails["clip_5"]["error"]
    check_stored(ds, [v for v in ds["train"] if v not in fails])


@pytest.mark.slow
def test_extractor_that_cannot_be_built_stops_early(dataset, capsys):
    ds = dataset
    for extra in ((), ("--workers", "2")):
        assert main(argv(ds, *extra), extractor_factory=FakeFactory(str(ds["calls"]), fail_init=True)) == 2
        assert "no such weights (fake)" in capsys.readouterr().err
    assert calls(ds["calls"]) == 0


def test_limit_split_and_argument_errors(dataset, capsys):
    ds = dataset
    assert main(argv(ds, "--limit", "2"), extractor_factory=FakeFactory(str(ds["calls"]))) == 0
    assert FeatureStore(ds["out"]).ids() == sorted(list(ds["train"])[:2])
    assert len(load_manifest(ds["out"] / "manifest_train.csv")) == 2
    bad = argv(ds)
    bad[bad.index("train")] = "dev"
    assert main(bad, extractor_factory=FakeFactory(str(ds["calls"]))) == 2
    assert "split 'dev' has no rows" in capsys.readouterr().err
    assert main(argv(ds, "--opt", "text_col=nope")) == 2
    assert "lacks the text column" in capsys.readouterr().err
    import pickle
    assert pickle.loads(pickle.dumps(ExtractorFactory("i3d-kinetics400", "mediapipe", "cpu", 64))) == \
        ExtractorFactory("i3d-kinetics400", "mediapipe", "cpu", 64)


@pytest.mark.slow
def test_real_pipeline_on_two_clips(shared_data, tmp_path):
    """``python -m seds.extract`` with the real MediaPipe + I3D extractor in 2 spawned workers."""
    if importlib.util.find_spec("seds.extract.pipeline") is None:
        pytest.skip("seds.extract.pipeline (the real extractor) is not available")
    out = tmp_path / "store"
    cmd = [sys.executable, "-m", "seds.extract", "--dataset", "how2sign_mini",
           "--annotations", os.path.relpath(shared_data / "how2sign-mini" / "manifest.csv", REPO),
           "--split", "val", "--limit", "2", "--out", str(out), "--workers", "2", "--no-progress"]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert res.returncode in (0, 1), res.stdout + res.stderr[-3000:]
    st = FeatureStore(out)
    m = load_manifest(out / "manifest_val.csv")
    assert len(m) == 2 and all(Path(r.video).is_file() for r in m)   # absolute paths, usable anywhere
    fails = {}
    with open(out / "failures_val.csv", newline="", encoding="utf-8") as f:
        fails = {r["id"]: r["error"] for r in csv.DictReader(f)}
    assert set(st.ids()) | set(fails) == set(m.ids()) and not set(st.ids()) & set(fails)
    assert st.ids(), f"no clip extracted: {fails}"
    assert all(err and "crashed" not in err for err in fails.values()), fails   # extractor errors only
    for vid in st.ids():
        row, f = m.get(vid), st[vid]
        n = int(row.extra["n_frames"])
        assert f.keypoints.shape[1:] == (87, 3) and 16 <= f.num_frames <= n + 16
        assert 1 <= f.num_clips <= 64 and f.meta["id"] == vid and f.meta["text"] == row.text
        assert (f.keypoints[:, :49, 2] > 0.3).mean() > 0.3      # a signer is found in real clips
        assert np.abs(f.rgb).mean() > 0


def test_missing_videos_root_is_an_argument_error(shared_data, tmp_path, capsys):
    ann = shared_data / "annotations" / "how2sign_realigned_val.csv"
    args = ["--dataset", "how2sign", "--annotations", str(ann), "--out", str(tmp_path / "s"), "--no-progress"]
    assert main(args) == 2
    assert "--videos" in capsys.readouterr().err
    # a wrong --videos folder: every video fails as missing, with a hint, and nothing is extracted
    rc = main(args + ["--videos", str(tmp_path), "--limit", "3"], extractor_factory=FakeFactory(str(tmp_path)))
    assert rc == 1
    assert "is --videos right?" in capsys.readouterr().err
    assert len(FeatureStore(tmp_path / "s")) == 0


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_killed_parallel_run_leaves_no_worker_and_keeps_its_failures(dataset):
    """Issue 15: after SIGKILL of `python -m seds.extract --workers 2`, both workers and the resource
    tracker kept running and writing, and the failures seen so far were lost (written only at the end)."""
    ds = dataset
    for name in ("v0.mp4", "v1.mp4"):
        (ds["videos"] / name).write_text("CORRUPT")
    code = ("import sys; sys.path[:0] = [{repo!r}, {tests!r}]\n"
            "from test_extract_cli import FakeFactory\n"
            "from seds.extract.__main__ import main\n"
            "sys.exit(main({args!r}, extractor_factory=FakeFactory({calls!r}, delay=0.5)))\n").format(
        repo=str(REPO), tests=str(REPO / "tests"), args=argv(ds, "--workers", "2"), calls=str(ds["calls"]))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    fails = ds["out"] / "failures_train.csv"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and not (
                fails.is_file() and len(fails.read_text().splitlines()) >= 3 and calls(ds["calls"]) >= 4):
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        below = _descendants(proc.pid)
        assert len([p for p in below if _running(p)]) >= 2          # the workers (and the resource tracker)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.time() + 5
        while time.time() < deadline and any(_running(p) for p in below):
            time.sleep(0.05)
        left = [p for p in below if _running(p)]
    finally:
        if proc.poll() is None:
            proc.kill()
    for p in left:                                                   # do not leak them into other tests
        os.kill(p, signal.SIGKILL)
    assert left == [], f"processes of the killed run still running: {left}"
    assert set(failures(ds)) == {"clip 0/ä", "clip_1"}              # kept although the run never finished
    n_stored = len(FeatureStore(ds["out"]).ids())
    time.sleep(1.0)
    assert len(FeatureStore(ds["out"]).ids()) == n_stored            # nothing writes any more

# --- shards: several machines filling one store ------------------------------------------------------

def test_two_shards_equal_one_run(dataset, tmp_path):
    ds = dataset
    one = {**ds, "out": tmp_path / "one"}
    assert main(argv(one), extractor_factory=FakeFactory(str(ds["calls"]))) == 0
    n_single = calls(ds["calls"])
    for i in range(2):
        assert main(argv(ds, "--shard", f"{i}/2"), extractor_factory=FakeFactory(str(ds["calls"]))) == 0
    assert calls(ds["calls"]) == 2 * n_single            # every video extracted once across the shards
    assert sorted(p.name for p in ds["out"].glob("failures_train.shard*of2.csv")) == [
        "failures_train.shard0of2.csv", "failures_train.shard1of2.csv"]
    assert main(argv(ds, "--verify")) == 0
    check_stored(ds, list(ds["train"]))
    a, b = FeatureStore(one["out"]), FeatureStore(ds["out"])
    assert a.ids() == b.ids()
    for vid in a.ids():
        x, y = a[vid], b[vid]
        assert np.array_equal(x.keypoints, y.keypoints) and np.array_equal(x.rgb, y.rgb) and x.meta == y.meta
    assert (one["out"] / "manifest_train.csv").read_text() == (ds["out"] / "manifest_train.csv").read_text()
    assert failures(ds) == {}


def test_verify_reports_failed_and_never_extracted_videos(dataset, capsys):
    from seds.extract.runner import shard_of
    ds = dataset
    (ds["videos"] / "v1.mp4").write_text("CORRUPT")
    first = shard_of("clip_1", 2)                          # the shard holding the corrupt video runs alone
    assert main(argv(ds, "--shard", f"{first}/2"), extractor_factory=FakeFactory(str(ds["calls"]))) == 1
    assert main(argv(ds, "--verify")) == 1
    assert "never extracted" in capsys.readouterr().out
    never = {v for v in ds["train"] if shard_of(v, 2) != first}
    fails = failures(ds)
    assert set(fails) == never | {"clip_1"} and never
    assert fails["clip_1"]["error"].startswith("ValueError") and "corrupt" in fails["clip_1"]["error"]
    assert all(fails[v]["error"].startswith("not extracted") for v in never)
    assert main(argv(ds, "--shard", f"{1 - first}/2"), extractor_factory=FakeFactory(str(ds["calls"]))) == 0
    assert main(argv(ds, "--verify")) == 1                 # only the corrupt video is left
    assert set(failures(ds)) == {"clip_1"}


def test_shard_from_arguments_and_environment(dataset, capsys):
    from seds.extract.runner import resolve_shard
    assert resolve_shard(None, {}) == (0, 1)
    assert resolve_shard("1/4", {"RANK": "3", "WORLD_SIZE": "8"}) == (1, 4)      # the flag wins
    assert resolve_shard(None, {"RANK": "3", "WORLD_SIZE": "8"}) == (3, 8)        # torchrun
    assert resolve_shard(None, {"SLURM_PROCID": "2", "SLURM_NTASKS": "5"}) == (2, 5)
    for bad in ("2/2", "a/b", "3", "1/0"):
        assert main(argv(dataset, "--shard", bad), extractor_factory=FakeFactory(str(dataset["calls"]))) == 2
        assert "shard" in capsys.readouterr().err
