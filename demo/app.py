"""SEDS sign language retrieval — the Gradio app.

    python demo/app.py [--checkpoint DIR] [--gallery DIR] [--pose-backend mediapipe] [--device auto]
                       [--port 7860] [--share] [--host 0.0.0.0] [--config configs/demo.yaml]

Defaults come from ``configs/demo.yaml`` (section ``app``); ``SEDS_*`` environment variables override
them (``SEDS_CHECKPOINT``, ``SEDS_GALLERY``, ``SEDS_POSE_BACKEND``, ``SEDS_DEVICE``, ``SEDS_PORT``,
``SEDS_SHARE``, ``SEDS_HOST``, ``SEDS_TOP_K``, ``SEDS_MAX_CLIPS``, ``SEDS_MAX_SECONDS``), and flags
override both. All logic lives in ``demo/backend.py`` (over :mod:`seds.retrieval.engine`); this file is the UI.
"""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parents[1]
if not __package__:                    # `python demo/app.py` (a checkout, a Space), not installed: the repository
    if str(ROOT) not in sys.path:      # root on sys.path and, as PEP 366 describes, this script's package named, so
        sys.path.insert(0, str(ROOT))  # that its imports are the package's (`seds-app` runs the installed seds_app)
    __package__ = "demo"

import gradio as gr  # noqa: E402

from seds.cpu_runtime import give_back_freed_memory, return_large_buffers_to_os  # noqa: E402

from .backend import (DEMO_CONFIG, MAX_TEXT_CHARS, STREAM_TITLES, AppBackend, AppConfig, AppError,  # noqa: E402
                      explanation_figure, load_app_config)
from .live import LiveQueries, plan_text, progress_text, real_signing_note  # noqa: E402
from .recordings_tab import recordings_tab  # noqa: E402

try:                                    # Hugging Face ZeroGPU Spaces: GPU work inside @spaces.GPU
    import spaces
    gpu = spaces.GPU(duration=120)
except Exception:  # noqa: BLE001 - the package is optional (and only works on Spaces)
    def gpu(fn):
        return fn

CSS = """
#seds-banner {border-left: 4px solid #d97706; padding: 6px 12px; background: rgba(217,119,6,0.08);}
#seds-banner.real {border-left-color: #059669; background: rgba(5,150,105,0.08);}
.seds-status {min-height: 1.5em;}
#v2t-status {min-height: 5em;}
#v2t-status .pending {visibility: hidden;}   /* the one progress line replaces the status while a query runs */
#v2t-note {border-left: 4px solid #d97706; padding: 2px 10px; background: rgba(217,119,6,0.08);}
"""
CACHE_MAX_AGE_S = 3600
VIDEO_CONCURRENCY, TEXT_CONCURRENCY, QUEUE_SIZE = 4, 8, 64    # Gradio queue: requests at once / waiting


# --------------------------------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------------------------------

def banner_md(be: AppBackend) -> str:
    d = be.describe()
    ckpt = Path(d["checkpoint"].split(" — ")[0]).name
    if be.is_synthetic:
        head = (f"**checkpoint: {ckpt} (synthetic data, proxy RGB) — results on real signing are not meaningful**"
                " · pose: " + d["pose"].split(";")[0] + " · RGB: synthetic proxy, not I3D")
    else:
        kind = "the authors' released weights, " if be.ckpt_info.get("converted_from") else ""
        head = (f"**checkpoint: {ckpt} ({kind}{be.model_cfg.model.variant} variant, {be.model_cfg.data.dataset})** · "
                f"pose: {d['pose'].split(';')[0]} · RGB: {d['rgb']}")
    return head + f" · device: {d['device']}"


def details_md(be: AppBackend) -> str:
    names = {"checkpoint": "Checkpoint", "model": "Model", "rgb": "RGB features", "pose": "Pose",
             "gallery": "Gallery", "device": "Device", "limits": "Limits"}
    lines = [f"- **{names[k]}**: {v}" for k, v in be.describe().items()]
    lines.append(f"- **Loaded in** {be.load_seconds:.1f} s (models are loaded once and shared by all users)")
    return "\n".join(lines)


def timings_md(timings: dict) -> str:
    order = ["hash", "decode", "pose", "filter", "rgb", "embed", "search", "preview", "total"]
    parts = [f"{k} {timings[k]:.2f}" for k in order if k in timings]
    return "**Timings (s)**: " + " · ".join(parts)


def sentence_rows(hits, true_text: str | None) -> list[list]:
    return [[h.rank, f"{h.score:.3f}", ("✓ " if true_text and h.meta.get("text") == true_text else "")
             + h.meta.get("text", "")] for h in hits]


def video_items(be: AppBackend, hits) -> list[tuple[str, str]]:
    items = []
    for h in hits:
        p = be.video_path(h.id) or be.gallery.thumbnail_path(h.id)
        if p:
            items.append((p, f"#{h.rank} · {h.score:.3f} · {h.meta.get('text') or h.id}"))
    return items


# --------------------------------------------------------------------------------------------------
# the app
# --------------------------------------------------------------------------------------------------

def build_app(be: AppBackend, live: LiveQueries | None = None) -> gr.Blocks:
    """The UI. Video → text has one trigger, the *Search sentences* button: a new file only shows what
    the search will do and how long it should take (:meth:`LiveQueries.plan`); the search itself runs
    once per file and settings (:class:`LiveQueries` remembers recent answers), with one progress line."""
    live = live or LiveQueries(be)
    streams = be.streams
    g = be.gallery
    ex_ids = g.info.get("ui_examples") or ([i for i in g.videos.ids if be.video_path(i)][:8] if g.videos else [])
    ex_videos = [be.video_path(i) for i in ex_ids if be.video_path(i)]
    ex_texts = []
    for i in ex_ids:
        t = g.videos.meta(i).get("text") if g.videos is not None else ""
        if t and t not in ex_texts:
            ex_texts.append(t)
    if not ex_texts and g.sentences is not None:
        ex_texts = [g.sentences.meta(i)["text"] for i in g.sentences.ids[:5]]

    # Gradio's upload/output cache: files older than an hour are deleted hourly, and all of them on exit
    with gr.Blocks(title="SEDS sign language retrieval", delete_cache=(CACHE_MAX_AGE_S, CACHE_MAX_AGE_S)) as app:
        gr.Markdown("# SEDS — sign language retrieval (pose + RGB)\nSearch sentences with a sign video, or sign "
                    "videos with a sentence. Each query is answered by the **pose-only**, **RGB-only** and "
                    "**fused** encoders side by side.")
        gr.Markdown(banner_md(be), elem_id="seds-banner", elem_classes=[] if be.is_synthetic else ["real"])
        with gr.Accordion("What is loaded", open=False):
            gr.Markdown(details_md(be), elem_id="seds-details")
        v_state = gr.State(None)
        t_state = gr.State(None)
        with gr.Tabs():
            # ---------------------------------------------------------------- video → text
            with gr.Tab("Video → text", id="v2t"):
                with gr.Row():
                    with gr.Column(scale=1):
                        video_in = gr.Video(label="Sign video (upload or webcam)", sources=["upload", "webcam"],
                                            include_audio=True, elem_id="video-in", height=300)
                        with gr.Row():
                            v_btn = gr.Button("Search sentences", variant="primary", elem_id="v2t-run", scale=2)
                            v_k = gr.Slider(1, 20, value=be.cfg.top_k, step=1, label="Results per encoder",
                                            elem_id="v2t-k", scale=1, min_width=220)
                        if ex_videos:
                            gr.Examples([[p] for p in ex_videos], inputs=[video_in], label="Gallery videos "
                                        "(features cached: pick one, then Search sentences)", examples_per_page=8,
                                        elem_id="v2t-examples")
                    with gr.Column(scale=1):
                        preview = gr.Video(label="Skeleton overlay (what the pose stream sees)", interactive=False,
                                           elem_id="preview", height=300, autoplay=True, loop=True)
                        v_status = gr.Markdown("Upload or record a sign video (or pick a gallery video), then "
                                               "press **Search sentences**.", elem_id="v2t-status",
                                               elem_classes=["seds-status"])
                        v_time = gr.Markdown("", elem_id="v2t-timings")
                v_note = gr.Markdown("", elem_id="v2t-note", visible=False)
                v_tables = {}
                with gr.Row():
                    for s in streams:
                        with gr.Column(min_width=240):
                            v_tables[s] = gr.Dataframe(headers=["#", "score", "sentence"], label=STREAM_TITLES[s],
                                                       interactive=False, wrap=True, elem_id=f"v2t-{s}",
                                                       column_widths=["9%", "17%", "74%"])
                gr.Markdown("### Why? Fine-grained clip × word similarity (Sec. 3.3, as in the paper's Fig. 6)")
                v_pair = gr.Dropdown(label="Explain the match of your video with", choices=[], elem_id="v2t-pair")
                v_plot = gr.Plot(label="clip × word similarity E", elem_id="v2t-heatmap")

            # ---------------------------------------------------------------- text → video
            with gr.Tab("Text → video", id="t2v"):
                with gr.Row():
                    text_in = gr.Textbox(label=f"Sentence (at most {MAX_TEXT_CHARS:,} characters; the text encoder "
                                         f"reads its first {be.model_cfg.model.text.max_words} words)",
                                         placeholder="Type a sentence …", scale=4, elem_id="text-in", lines=1,
                                         max_length=MAX_TEXT_CHARS)
                    t_btn = gr.Button("Search videos", variant="primary", scale=1, elem_id="t2v-run")
                if ex_texts:
                    gr.Examples([[t] for t in ex_texts[:6]], inputs=[text_in], label="Sentences of gallery videos")
                t_status = gr.Markdown("", elem_id="t2v-status", elem_classes=["seds-status"])
                t_galleries = {}
                with gr.Row():
                    for s in streams:
                        with gr.Column(min_width=240):
                            t_galleries[s] = gr.Gallery(label=STREAM_TITLES[s], columns=2, height=460,
                                                        object_fit="contain", elem_id=f"t2v-{s}", interactive=False)
                t_time = gr.Markdown("", elem_id="t2v-timings")
                gr.Markdown("### Why? Fine-grained clip × word similarity")
                t_pair = gr.Dropdown(label="Explain the match of your sentence with video", choices=[],
                                     elem_id="t2v-pair")
                t_plot = gr.Plot(label="clip × word similarity E", elem_id="t2v-heatmap")

            recordings_tab(be, live)
            with gr.Tab("About", id="about"):
                gr.Markdown(ABOUT)

        # ---------------------------------------------------------------- handlers
        v_outputs = [v_state, preview, v_status, v_note, v_time, *[v_tables[s] for s in streams], v_pair, v_plot]

        def empty_video(msg: str = ""):
            return [None, None, msg, gr.update(value="", visible=False), "", *[[] for _ in streams],
                    gr.update(choices=[], value=None), None]

        def session_of(request: gr.Request | None):
            return getattr(request, "session_hash", None)

        def new_video(path, request: gr.Request = None):
            """A file arrived (upload, webcam, example): say what Search will do and clear old results."""
            if not path:
                return empty_video("Upload or record a sign video (or pick a gallery video), then press "
                                   "**Search sentences**.")
            try:
                return empty_video(plan_text(live.plan(path, session_of(request))))
            except AppError as e:
                return empty_video(f"⚠️ {e}")

        @gpu
        def run_video(path, k, progress=gr.Progress(), request: gr.Request = None):
            if not path:
                return empty_video("⚠️ Upload a video (or record one with the webcam) first.")
            session, plan = session_of(request), None
            try:
                plan = live.plan(path, session)
                est = plan.estimate_s if plan.kind == "live" else None
                progress(0.0, desc=progress_text("decode", 0.0, est))

                def report(stage, frac, elapsed, estimate):
                    progress(min(max(frac, 0.0), 1.0), desc=progress_text(stage, elapsed, estimate))
                q = live.query_video(path, k=int(k), progress=report, estimate_s=est, session=session)
            except AppError as e:
                gr.Warning(str(e))
                return empty_video(f"⚠️ {e}")
            finally:
                if plan is not None and plan.kind == "live":
                    give_back_freed_memory()        # the extraction's freed pages (seds/cpu_runtime.py)
            return answer_video(q, est)

        def rerank_video(q, path, k, request: gr.Request = None):
            """Another top-k for the answer on screen (from the recent-queries cache: no extraction)."""
            if q is None or not path:
                return [gr.skip()] * len(v_outputs)
            try:
                return answer_video(live.query_video(path, k=int(k), session=session_of(request)), None)
            except AppError as e:
                return empty_video(f"⚠️ {e}")

        def why_choices(q, label) -> tuple[list, set]:
            """The Why dropdown's (label(hit, stream), id) pairs: every hit once, fused results first; and the
            ids seen."""
            choices, seen = [], set()
            for s in ("fused",) + tuple(x for x in streams if x != "fused"):
                for h in q.hits.get(s, []):
                    if h.id not in seen:
                        seen.add(h.id)
                        choices.append((label(h, s), h.id))
            return choices, seen

        def answer_video(q, est):
            choices, seen = why_choices(q, lambda h, s: f"{h.meta.get('text', h.id)}  [{STREAM_TITLES[s]} #{h.rank}]")
            if q.true_text:
                tid = g.sentence_id(q.true_text)
                if tid is not None and tid not in seen:
                    choices.append((f"{q.true_text}  [the video's own sentence]", tid))
            first = choices[0][1] if choices else None
            fig = explanation_figure(be.explain_video_query(q, first)) if first is not None else None
            total = q.timings.get("total", 0.0)
            if q.recent:
                took = f"**Time**: {total:.2f} s (answered from memory)."
            elif q.source == "extracted" and "decode" in q.timings:
                took = f"**Time**: live extraction and search took {total:.1f} s" + (f" (estimated ≈ {est:.0f} s)." if est
                                                                               else ".")
            elif q.source == "cache":
                took = f"**Time**: {total:.2f} s (gallery feature cache)."
            else:
                took = f"**Time**: {total:.2f} s."
            status = took + "\n\n" + " ".join(f"ℹ️ {n}" for n in q.notes)
            if q.true_text:
                status += f"\n\n✓ marks this gallery video's own sentence: “{q.true_text}”."
            note = real_signing_note(be, q)
            return [q, q.preview, status, gr.update(value=note, visible=bool(note)), timings_md(q.timings),
                    *[sentence_rows(q.hits[s], q.true_text) for s in streams],
                    gr.update(choices=choices, value=first), fig]

        def explainer(explain):
            """The Why dropdown's callback: the heatmaps of the query and the chosen item (a warning and no
            figure when that pair cannot be explained)."""
            def run(q, key):
                if q is None or key is None:
                    return None
                try:
                    return explanation_figure(explain(q, key))
                except AppError as e:
                    gr.Warning(str(e))
                    return None
            return run

        explain_video, explain_text = explainer(be.explain_video_query), explainer(be.explain_text_query)

        t_outputs = [t_state, t_status, *[t_galleries[s] for s in streams], t_time, t_pair, t_plot]

        @gpu
        def run_text(text):
            try:
                q = be.query_text(text)
            except AppError as e:
                gr.Warning(str(e))
                return [None, f"⚠️ {e}", *[[] for _ in streams], "", gr.update(choices=[], value=None), None]
            choices, _ = why_choices(q, lambda h, s: f"{h.id}: {h.meta.get('text', '')}  [{STREAM_TITLES[s]} #{h.rank}]")
            first = choices[0][1] if choices else None
            fig = explanation_figure(be.explain_text_query(q, first)) if first is not None else None
            return [q, "", *[video_items(be, q.hits[s]) for s in streams], timings_md(q.timings),
                    gr.update(choices=choices, value=first), fig]

        # one trigger per upload: the button. A new file only gets its plan (cheap: hash + header).
        video_in.change(new_video, [video_in], v_outputs, show_progress="hidden", trigger_mode="always_last")
        # video queries: VIDEO_CONCURRENCY at once (extraction itself is one at a time in the backend, so cached
        # gallery videos and bad files are answered while an upload is extracted); text queries are cheap.
        # The status line is the one progress indicator (CSS hides its old text meanwhile)
        v_btn.click(run_video, [video_in, v_k], v_outputs, concurrency_id="video", concurrency_limit=VIDEO_CONCURRENCY,
                    show_progress="full", show_progress_on=[v_status])
        v_k.release(rerank_video, [v_state, video_in, v_k], v_outputs, concurrency_id="video",
                    concurrency_limit=VIDEO_CONCURRENCY, show_progress="hidden")
        v_pair.input(explain_video, [v_state, v_pair], [v_plot], show_progress="hidden")
        text_in.submit(run_text, [text_in], t_outputs, concurrency_id="text", concurrency_limit=TEXT_CONCURRENCY,
                       show_progress_on=[t_status])
        t_btn.click(run_text, [text_in], t_outputs, concurrency_id="text", concurrency_limit=TEXT_CONCURRENCY,
                    show_progress_on=[t_status])
        t_pair.input(explain_text, [t_state, t_pair], [t_plot], show_progress="hidden")
    return app


ABOUT = """
**SEDS** (Semantically Enhanced Dual-Stream Encoder, ACM MM 2024) encodes a sign video with two streams:
a **pose stream** (49 keypoints per frame → ST-GCN → 16-frame clips → transformer) and an **RGB stream**
(I3D features of the same 16-frame windows → transformer), fused by Cross Gloss Attention Fusion (CGAF).
Videos and sentences are compared with a fine-grained clip × word similarity (CiCo): every clip looks for
its best words and every word for its best clips. The *Why?* heatmaps show that matrix.

**Video → text**: pick or upload a video, then press *Search sentences* — the one trigger. When a file arrives
the status line says what the search will do and, for a new video, about how long it will take on this machine
(seconds per frame and per RGB window measured on the last live queries). The file's SHA-256 is looked up in
the gallery's feature cache; otherwise the app decodes it at 24 fps, estimates pose, drops frames without a
signer or a hand, picks at most N windows at equal intervals and extracts their RGB features with the extractor
the checkpoint was trained with. The last few answers are remembered (keyed by SHA-256 and the extraction
settings): searching the same file again or changing *Results per encoder* answers at once, without extracting.

**Real signing with the synthetic demo model**: a video that is not one of the gallery's videos and in which the
pose estimator found a signer counts as real signing; with a checkpoint trained on synthetic data its results
get a warning line.

**The default demo** is trained on a *synthetic* signing benchmark (cartoon signers, pseudo-words, proxy RGB
features) so that it works offline and out of the box. Uploading a real signing video runs the real pipeline
(MediaPipe, RGB extractor) — but the *demo model* has never seen real signing, so its answers mean nothing there.
Point the app at a real checkpoint and gallery (README: "Hugging Face Spaces" and "Gallery index") for that.
"""


def parse_args(argv=None) -> tuple[AppConfig, argparse.Namespace]:
    ap = argparse.ArgumentParser(prog="seds-app" if __package__ == "seds_app" else "python demo/app.py",
                                 description="SEDS sign language retrieval app")
    ap.add_argument("--config", default=str(DEMO_CONFIG), help="YAML with an 'app' section")
    ap.add_argument("--checkpoint", help="checkpoint folder (env SEDS_CHECKPOINT)")
    ap.add_argument("--gallery", help="gallery folder from `python -m seds.index build` (env SEDS_GALLERY)")
    ap.add_argument("--pose-backend", dest="pose_backend", help="auto | mediapipe | rtmpose | mmpose (env SEDS_POSE_BACKEND;"
                    " auto: the checkpoint's training backend when it runs here, else mediapipe)")
    ap.add_argument("--pose-stride", dest="pose_stride", type=int,
                    help="run pose on every N-th frame of a live query, interpolate the rest (env SEDS_POSE_STRIDE; "
                         "configs/demo.yaml: 2; 1 = every frame; benchmarks/results/pose_stride.md)")
    ap.add_argument("--i3d-weights", dest="i3d_weights", help="I3D checkpoint for models trained on BSL-1K features, "
                    "e.g. the authors' (env SEDS_I3D_WEIGHTS; without it the Kinetics-400 I3D substitutes)")
    ap.add_argument("--i3d-compile", dest="i3d_compile", action="store_true", default=None,
                    help="run I3D through torch.compile, compiled at start in the background (env SEDS_I3D_COMPILE; "
                         "1.76x less CPU per window, benchmarks/results/i3d.md)")
    ap.add_argument("--device", help="auto | cpu | cuda | cuda:N (env SEDS_DEVICE)")
    ap.add_argument("--host", help="server address, e.g. 0.0.0.0 (env SEDS_HOST or GRADIO_SERVER_NAME)")
    ap.add_argument("--port", type=int, help="server port (env SEDS_PORT or GRADIO_SERVER_PORT); 0 picks a free one")
    ap.add_argument("--share", action="store_true", default=None, help="public Gradio share link (env SEDS_SHARE)")
    ap.add_argument("--top-k", dest="top_k", type=int, help="results per encoder (env SEDS_TOP_K)")
    ap.add_argument("--max-clips", dest="max_clips", type=int, help="windows per live query (env SEDS_MAX_CLIPS)")
    ap.add_argument("--max-seconds", dest="max_seconds", type=float, help="trim uploads to this (env SEDS_MAX_SECONDS)")
    ap.add_argument("--no-preview", dest="preview", action="store_false", default=None, help="no skeleton overlay video")
    ap.add_argument("--media-root", dest="media_root",
                    help="the folder gallery videos are served from (env SEDS_MEDIA_ROOT; default: the gallery's parent)")
    args = ap.parse_args(argv)
    over = {k: getattr(args, k) for k in ("checkpoint", "gallery", "pose_backend", "pose_stride", "i3d_weights",
                                          "i3d_compile", "device",
                                          "host", "port",
                                          "share", "top_k", "max_clips", "max_seconds", "preview", "media_root")}
    return load_app_config(args.config, over), args


def launch(be: AppBackend, cfg: AppConfig, **kw):
    """Build the app and start the server (``prevent_thread_lock=True`` in ``kw`` returns at once)."""
    app = build_app(be)
    app.queue(default_concurrency_limit=2, max_size=QUEUE_SIZE)
    allowed = be.gallery.served_files()     # exact files: the gallery's videos and thumbnails, nothing else
    port = cfg.port if cfg.port else None
    app.launch(server_name=cfg.host, server_port=port, share=cfg.share, allowed_paths=allowed,
               css=CSS, footer_links=["api", "gradio"], max_file_size=int(cfg.max_upload_mb * 2**20), **kw)
    return app


def own_upload_folder() -> Path:
    """A fresh folder for Gradio's upload/output cache of this process (inside ``GRADIO_TEMP_DIR`` when that is
    set), made Gradio's through ``GRADIO_TEMP_DIR`` before the UI is built, so that exiting deletes exactly it."""
    base = os.environ.get("GRADIO_TEMP_DIR") or None
    if base:
        Path(base).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="seds-app-uploads-", dir=base))
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


def warm_up(be: AppBackend) -> None:
    try:
        secs = be.warm_up()
        print(f"extraction models ready{' (I3D compiled)' if be.rgb_compiled else ''} in {secs:.0f} s", flush=True)
    except Exception as e:  # noqa: BLE001 - the first query then builds them and reports any error itself
        print(f"warning: warming up the extraction models failed: {type(e).__name__}: {e}", flush=True)


def main(argv=None) -> int:
    return_large_buffers_to_os()       # an idle app gives a live extraction's frame buffers back (cpu_runtime)
    try:
        cfg, _ = parse_args(argv)
        print("loading the checkpoint and the gallery …", flush=True)
        be = AppBackend(cfg)
    except (AppError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - any start-up failure: one line, no traceback
        print(f"error: the app could not start: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    atexit.register(be.close)          # the preview folder goes with the process, and so do the uploads:
    atexit.register(shutil.rmtree, own_upload_folder(), ignore_errors=True)
    # SIGTERM (container stop, systemd, a Space restart) ends the app as Ctrl-C does: Gradio closes the server,
    # then atexit deletes the previews and the upload folder
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    for k, v in be.describe().items():
        print(f"  {k}: {v}", flush=True)
    if cfg.i3d_compile:                # compile I3D while the server starts, not in the first user's query
        threading.Thread(target=warm_up, args=(be,), name="seds-warm-up", daemon=True).start()
    try:
        launch(be, cfg)
    except OSError as e:               # port in use, address not available, ...
        print(f"error: the server could not start: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
