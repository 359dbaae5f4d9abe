"""Issue 25 — the soak test: the default app (``python demo/app.py``) over loopback, 4 simulated users (one
``gradio_client`` session each) for 40 s of load (``SEDS_SOAK_SECONDS``), mixing text queries, cached gallery
videos, fresh uploads (new bytes each time: live extraction) and a hostile upload at the start of each load phase,
then one a minute (a 16000² PNG of < 1 MB). Asserts zero errors, every answer identical to the serial answer of the same query, no user's file
name in another user's answer, and idle RSS growth between two identical load phases ≤ 100 MB; writes ``benchmarks/results/soak.md``
(p95 latencies, RSS sampled every few seconds)."""
from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.app_server import rss_mb, start_app
from tests.hostile_files import huge_png

ROOT = Path(__file__).resolve().parents[1]
SHARED_CLIPS = ROOT.parent / "shared" / "data" / "how2sign-mini" / "clips"
COMMAND = "python -m pytest -m slow tests/test_app_soak.py"
USERS, SAMPLE_S, IDLE_SAMPLES = 4, 3.0, 5
GROWTH_LIMIT_MB = 100.0
# two load phases of 20 s each: ~40 requests a phase, so a leak of a few MB per request stays far above the limit
# (a planted 5 MB per text query fails it); longer soaks with SEDS_SOAK_SECONDS
DEFAULT_SECONDS = 40.0


def soak_seconds() -> float:
    return float(os.environ.get("SEDS_SOAK_SECONDS", str(DEFAULT_SECONDS)))


def answer(kind: str, out) -> str:
    """What must not depend on concurrency: the ranked results (or the refusal), not timings or file paths."""
    if kind == "text":
        return json.dumps([[item.get("caption") for item in (g or [])] for g in out[1:4]] + [out[0]])
    status = out[1]
    if status.startswith("⚠️"):
        return status
    return json.dumps([t["data"] for t in out[4:7]])


def idle_rss(pid: int) -> float:
    """The server's RSS with no request in flight: the lowest of a few samples, after a short settle."""
    time.sleep(2.0)
    xs = []
    for _ in range(IDLE_SAMPLES):
        xs.append(rss_mb(pid))
        time.sleep(1.0)
    return min(xs)


def p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))] if xs else float("nan")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg makes the fresh uploads (new bytes, same frames)")
def test_soak_four_users(tmp_path):
    from gradio_client import handle_file

    duration = soak_seconds()
    clips = sorted(SHARED_CLIPS.glob("*.mp4"))
    base = clips[0] if clips else ROOT / "examples" / "videos" / "syn_test_00023.webm"   # real signing if present
    cached = [ROOT / "examples" / "videos" / f"syn_test_{i:05d}.webm" for i in range(4)]
    texts = [m["text"] for m in json.loads((ROOT / "examples" / "gallery" / "sentences" / "metadata.json")
                                           .read_text())["meta"][:6]] + ["a sentence nobody signed"]
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    counter = iter(range(10**6))
    lock = threading.Lock()
    live_slot = threading.Semaphore(1)      # one fresh upload in flight at a time (users, not a load test)

    def fresh(user: int) -> Path:
        """The base clip's frames in new bytes (a remux with another comment), under this user's own name."""
        with lock:
            n = next(counter)
        out = uploads / f"user{user}_private_{n}{base.suffix}"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(base), "-c", "copy", "-metadata", f"comment=soak {n}",
                        str(out)], check=True)
        return out

    def hostile(user: int) -> Path:
        with lock:
            n = next(counter)
        return huge_png(uploads / f"user{user}_bomb_{n}.png", rgb=(n % 256, 7, 9))

    server = start_app(tmp_path / "app")
    phase_ends: list[float] = []
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    t_start = time.monotonic()

    def sampler():
        while not stop.is_set():
            try:
                samples.append((time.monotonic() - t_start, rss_mb(server.pid)))
            except (OSError, RuntimeError):
                return
            stop.wait(SAMPLE_S)
    threading.Thread(target=sampler, daemon=True).start()

    def run(client, kind: str, arg) -> tuple[str, str, float]:
        t0 = time.perf_counter()
        if kind == "text":
            out = client.predict(arg, api_name="/run_text")
        else:
            client.predict(handle_file(str(arg)), api_name="/new_video")          # the UI plans each new file
            out = client.predict(handle_file(str(arg)), 5, api_name="/run_video")
        return answer(kind, out), json.dumps(out, default=str), time.perf_counter() - t0

    try:
        # serial answers: one session asks each distinct query once
        serial_client = server.client()
        serial = {("text", t): run(serial_client, "text", t)[0] for t in texts}
        serial.update({("cached", v.name): run(serial_client, "cached", v)[0] for v in cached})
        serial[("fresh", "")] = run(serial_client, "fresh", fresh(9))[0]
        serial[("hostile", "")] = run(serial_client, "hostile", hostile(9))[0]
        assert "larger than the limit" in serial[("hostile", "")]
        serial_done = time.monotonic() - t_start

        records, errors = [], []
        idle = {"after the serial pass": idle_rss(server.pid)}

        def user(u: int, t_phase: float, seconds: float):
            rng = random.Random(u)            # each phase: the same queries in the same order
            client = server.client()
            t_end = t_phase + seconds
            # user 0 opens each phase with a hostile upload (a long request may not keep it from one), then one a
            # minute in all
            next_hostile = t_phase + 60.0 * u
            while time.monotonic() < t_end:
                if time.monotonic() >= next_hostile:
                    kind, key, arg = "hostile", "", hostile(u)
                    next_hostile += 60.0 * USERS
                else:
                    r = rng.random()
                    if r < 0.45:
                        t = rng.choice(texts)
                        kind, key, arg = "text", t, t
                    elif r < 0.8 or not live_slot.acquire(blocking=False):
                        v = rng.choice(cached)
                        kind, key, arg = "cached", v.name, v
                    else:
                        kind, key, arg = "fresh", "", fresh(u)
                try:
                    got, raw, secs = run(client, kind, arg)
                except Exception as e:  # noqa: BLE001 - counted, reported
                    errors.append(f"user {u} {kind}: {type(e).__name__}: {e}")
                    continue
                finally:
                    if kind == "fresh":
                        live_slot.release()
                records.append((u, kind, time.monotonic() - t_start, secs))
                if got != serial[(kind, key)]:
                    errors.append(f"user {u} {kind} {key!r}: answer differs from the serial one:\n{got[:300]}\n"
                                  f"vs\n{serial[(kind, key)][:300]}")
                others = [f"user{o}_" for o in range(USERS + 1) if o != u] + ["user9_"]
                if any(o in raw for o in others):
                    errors.append(f"user {u} {kind}: another user's file name in the answer: {raw[:300]}")

        # two identical load phases, each followed by a quiet moment in which the idle RSS is read: memory that a
        # first phase of concurrent load brings in (allocator arenas, caches filling) is held, not leaked; what
        # must not happen is that the second, identical phase leaves more behind than the first
        for phase in (1, 2):
            t_phase = time.monotonic()
            threads = [threading.Thread(target=user, args=(u, t_phase, duration / 2)) for u in range(USERS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(duration + 300)
            phase_ends.append(time.monotonic() - t_start)
            idle[f"after load phase {phase}"] = idle_rss(server.pid)
        load_t = time.monotonic() - t_start
        alive = server.proc.poll() is None
    finally:
        stop.set()
        server.stop()

    # --- figures ------------------------------------------------------------------------------------------
    # growth: idle RSS after the second load phase against idle RSS after the first (both read with no request in
    # flight, the lowest of several samples); a live extraction holds its decoded frames while it runs, so samples
    # taken under load measure what is in flight, not what is kept
    growth = idle["after load phase 2"] - idle["after load phase 1"]
    after = [r for t, r in samples if t >= serial_done]
    kinds = ("text", "cached", "fresh", "hostile")
    rows = []
    for k in kinds:
        xs = [s for _, kk, _, s in records if kk == k]
        rows.append(f"| {k} | {len(xs)} | {statistics.median(xs) if xs else float('nan'):.2f} s | {p95(xs):.2f} s | "
                    f"{max(xs) if xs else float('nan'):.2f} s |")
    lines = [f"# Soak: {USERS} users × {duration:g} s against the running app", "",
             f"Command: `{COMMAND}`" + (f" (SEDS_SOAK_SECONDS={duration:g})" if duration != DEFAULT_SECONDS else ""), "",
             f"The default demo (`python demo/app.py`: demo checkpoint, example gallery, MediaPipe) over loopback; "
             f"{USERS} `gradio_client` sessions at once, each looping over: a text query (45 %), a cached gallery "
             f"video (35 %), a fresh upload (20 %, one in flight at a time: {base.name} remuxed to new bytes each time, so it is extracted "
             f"live; {'a real How2Sign-mini clip' if clips else 'a synthetic clip: no signer is found'}); a hostile "
             "upload at the start of each phase, then one a minute in all (a 16000×16000 PNG of < 1 MB). Every answer is compared with the serial "
             "answer of the same query. Machine: "
             f"{os.cpu_count()}-core CPU, no GPU, shared with other jobs (load average {os.getloadavg()[0]:.2f} at "
             "the end): wall times are inflated by that; RSS and counts are not.", "",
             f"**{len(records)} requests, {len(errors)} errors**. The load runs in two identical phases of "
             f"{duration / 2:g} s; idle RSS (no request in flight, lowest of {IDLE_SAMPLES} samples 1 s apart): "
             + ", ".join(f"{k} {v:.0f} MB" for k, v in idle.items())
             + f": **growth from phase 1 to phase 2 {growth:+.0f} MB** (limit {GROWTH_LIMIT_MB:+.0f}); highest sample "
             f"under load {max(after) if after else float('nan'):.0f} MB (a live extraction holds its decoded "
             "frames while it runs).", "",
             "| request (client side, plan + search for videos) | n | median | p95 | max |", "|---|---:|---:|---:|---:|",
             *rows, "", f"RSS of the server (MB), sampled every {SAMPLE_S:g} s (t from the server's start-up; "
             f"the serial pass ends at {serial_done:.0f} s, the load phases at "
             f"{', '.join(f'{t:.0f}' for t in phase_ends)} s):", "", "| t (s) | RSS (MB) |", "|---:|---:|",
             *[f"| {t:.0f} | {r:.0f} |" for t, r in samples], ""]
    (ROOT / "benchmarks" / "results" / "soak.md").write_text("\n".join(lines))
    assert alive, server.log.read_text()[-2000:]
    assert not errors, "\n".join(errors[:10])
    assert {k for _, k, _, _ in records} >= {"text", "cached", "fresh"} and len(records) >= 4 * USERS
    assert sum(k == "hostile" for _, k, _, _ in records) >= 2                 # one in each phase at least
    assert growth <= GROWTH_LIMIT_MB, idle
