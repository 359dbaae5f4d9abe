"""Checkpoints and galleries as Hugging Face Hub repositories.

* **Resolution.** ``--checkpoint`` / ``--gallery`` (evaluate, index, app) and ``model.pose.hand_init`` (train)
  accept a local folder or a Hub repository: ``org/name`` (when no such local path exists), or explicitly
  ``hf-hub:org/name`` (open_clip's spelling), each optionally ``@revision``. A repository is fetched by
  :func:`huggingface_hub.snapshot_download` into the library's own cache (``HF_HOME`` / ``HF_HUB_CACHE``), so
  ``HF_HUB_OFFLINE=1`` uses the cached snapshot and never touches the network. Checkpoints are model repos (only
  ``*.safetensors``, ``*.json`` and ``README.md`` are fetched — never a pickle), galleries dataset repos.
* **Model card.** :func:`model_card` turns a checkpoint folder into a Hub model repo's ``README.md``: Hub
  metadata (library name, tags, datasets, the variant, the extractors of its training features) and the
  metrics table of every ``eval_<split>.json`` that ``seds.evaluate`` wrote into it.
* **Publishing.** :func:`push_to_hub` uploads a checkpoint (weights, config, card, evaluations; never
  ``train_state.pt``) or a gallery folder. ``python -m seds.hub card|push|download`` (``seds-hub``).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from huggingface_hub import DatasetCardData, HfApi, ModelCardData, constants, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

from seds.atomic import atomic_write_bytes
from seds.checkpoint import CONFIG, WEIGHTS, CheckpointError, read_config
from seds.extract.factory import training_extractors
from seds.progname import prog

PREFIX = "hf-hub:"
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
CARD = "README.md"
GALLERY_INFO = "gallery.json"
# what a checkpoint repo holds (published), and what resolving one fetches: never a pickle (train_state.pt stays local)
CHECKPOINT_FILES = [WEIGHTS, CONFIG, CARD, "eval_*.json"]
FETCH_FILES = ["*.safetensors", "*.json", CARD]
TAGS = ["seds", "sign-language", "sign-language-retrieval", "text-to-video-retrieval", "video-text-retrieval"]
DATASETS = {"how2sign": "How2Sign", "phoenix2014t": "PHOENIX-2014T", "csl_daily": "CSL-Daily",
            "how2sign_mini": "How2Sign (mini subset)"}
STREAM_NAMES = {"fused": "fused (CGAF)", "pose": "pose", "rgb": "RGB"}


class HubError(CheckpointError):
    """A Hub repository could not be resolved or published (the message says why and what to do)."""


def parse_spec(spec: str | os.PathLike) -> tuple[str, str | None] | None:
    """``(repo_id, revision)`` when ``spec`` names a Hub repository, None when it is a local path: an
    ``hf-hub:`` spec always names the Hub; ``org/name[@rev]`` does when no such local path exists."""
    s = str(spec)
    explicit = s.startswith(PREFIX)
    if explicit:
        s = s[len(PREFIX):]
    elif Path(s).expanduser().exists():
        return None
    repo, _, rev = s.partition("@")
    if REPO_ID.match(repo):
        return repo, rev or None
    if explicit:
        raise HubError(f"{spec}: not a Hub repository id (expected {PREFIX}org/name[@revision])")
    return None


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve(spec: str | os.PathLike, repo_type: str = "model", what: str = "checkpoint",
            allow_patterns: list[str] | None = None) -> Path:
    """A local folder for ``spec`` (returned as given when it is a local path), fetched into the Hub cache
    when it names a repository; HubError (with the cache folder and what to do) when it cannot be had."""
    parsed = parse_spec(spec)
    if parsed is None:
        return Path(spec).expanduser()
    repo, rev = parsed
    try:
        folder = snapshot_download(repo, repo_type=repo_type, revision=rev, allow_patterns=allow_patterns,
                                   library_name="seds", local_files_only=offline())
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as e:
        how = ("HF_HUB_OFFLINE is set and it is not in the Hub cache "
               f"({constants.HF_HUB_CACHE}): fetch it once with network (`seds-hub download {repo}`)"
               if offline() else f"the Hub could not be reached and it is not in the cache ({type(e).__name__})")
        raise HubError(f"{what} {spec}: no such local folder, and the Hub {repo_type} repository {repo}"
                       f"{'@' + rev if rev else ''} is unavailable: {how}") from None
    except HfHubHTTPError as e:
        raise HubError(f"{what} {spec}: no such local folder, and the Hub refused the {repo_type} repository "
                       f"{repo}: {str(e).splitlines()[0]}") from None
    return Path(folder)


def resolve_checkpoint(spec: str | os.PathLike) -> Path:
    """A checkpoint folder: local, or a Hub model repository (weights, config, card and evaluations only)."""
    return resolve(spec, "model", "checkpoint", FETCH_FILES)


def resolve_init(spec: str | os.PathLike | None) -> str | Path | None:
    """``model.pose.hand_init`` (a folder or a ``.safetensors`` file): local, or a Hub model repository."""
    return resolve(spec, "model", "model.pose.hand_init", FETCH_FILES) if spec else spec


def resolve_gallery(spec: str | os.PathLike) -> Path:
    """A gallery folder: local, or a Hub dataset repository."""
    return resolve(spec, "dataset", "gallery")


# --------------------------------------------------------------------------------------------------
# model card
# --------------------------------------------------------------------------------------------------

def _metrics_rows(doc: dict) -> list[str]:
    protocol = doc.get("protocol") or next(iter(doc.get("results", {})), None)
    table = (doc.get("results") or {}).get(protocol) or {}
    rows = []
    for stream in ("fused", "pose", "rgb"):
        for direction, name in (("t2v", "text → video"), ("v2t", "video → text")):
            m = (table.get(stream) or {}).get(direction)
            if m:
                rows.append(f"| {doc.get('split', '?')} | {STREAM_NAMES[stream]} | {name} | {m['R@1']:.1f} | "
                            f"{m['R@5']:.1f} | {m['R@10']:.1f} | {m['MedR']:g} | {m['MeanR']:.1f} |")
    return rows


def evaluations(folder: str | Path) -> list[dict]:
    """The ``eval_<split>.json`` files ``seds.evaluate`` wrote into a checkpoint folder, by split name."""
    out = []
    for p in sorted(Path(folder).glob("eval_*.json")):
        try:
            doc = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{p}: unreadable evaluation ({e})") from None
        if isinstance(doc, dict) and isinstance(doc.get("results"), dict):
            out.append(doc)
    return out


def model_card(folder: str | Path, name: str | None = None, license: str | None = None,
               evals: list[dict] | None = None) -> str:
    """The ``README.md`` of a checkpoint folder as a Hub model repo (YAML metadata + text)."""
    folder = Path(folder)
    cfg, doc = read_config(folder)
    info = doc.get("info") or {}
    evals = evaluations(folder) if evals is None else evals
    pose, rgb = training_extractors(cfg, info)
    dataset = cfg.data.dataset
    real = dataset in DATASETS
    name = name or folder.resolve().name
    meta = ModelCardData(
        library_name="seds", license=license, tags=TAGS + [f"seds-{cfg.model.variant}"],
        datasets=[dataset] if real else None,
        seds_variant=cfg.model.variant, seds_dataset=dataset, seds_pose_features=pose, seds_rgb_features=rgb,
        seds_converted_from=info.get("converted_from"))
    lines = ["---", meta.to_yaml(), "---", "", f"# {name}", "",
             "A [SEDS](https://dl.acm.org/doi/10.1145/3664647.3681237) checkpoint (Semantically Enhanced Dual-Stream "
             "Encoder for sign language retrieval, ACM MM 2024): text → sign video and sign video → text.", ""]
    if not real:
        lines += [f"**Trained on `{dataset}` data, not on real signing: its answers on real signing videos are not "
                  "meaningful.**", ""]
    lines += ["| | |", "|---|---|",
              f"| variant | `{cfg.model.variant}` ({cfg.model.options.follows}) |",
              f"| training data | {DATASETS.get(dataset, dataset)} |",
              f"| pose features (training) | `{pose}` |",
              f"| RGB features (training) | `{rgb}` |",
              f"| streams | {', '.join(cfg.model.streams)} |",
              f"| text encoder | `{cfg.model.text.model}` |",
              f"| clips per video (T) | {cfg.model.max_clips} |"]
    if info.get("converted_from"):
        lines.append(f"| converted from | `{Path(str(info['converted_from'])).name}` (the authors’ release) |")
    if info.get("selected_on"):
        lines.append(f"| selected on | the {info['selected_on']} split |")
    lines += ["", "Live queries should be extracted with the same pose and RGB extractors as the training features; "
              "the app says which ones match.", "", "## Evaluation", ""]
    if evals:
        lines += ["From `seds.evaluate` (`eval_<split>.json` in this repository; ranks with expected ties):", "",
                  "| split | stream | direction | R@1 | R@5 | R@10 | MedR | MeanR |", "|---|---|---|---:|---:|---:|---:|---:|"]
        for d in evals:
            lines += _metrics_rows(d)
        lines += [""] + [f"- `{d.get('split')}`: {d.get('n_videos')} videos, protocol `{d.get('protocol')}`, ties "
                         f"`{d.get('ties')}`" for d in evals]
    else:
        lines.append("Not evaluated yet: `seds-evaluate --checkpoint <this folder> --split test` writes "
                     "`eval_test.json`, and the card lists it.")
    lines += ["", "## Use", "", "```bash", "pip install seds   # or, from a clone of the repository: pip install .",
              f"seds-evaluate --checkpoint hf-hub:<org>/{name} --split test --store <feature store>",
              f"seds-app --checkpoint hf-hub:<org>/{name} --gallery hf-hub:<org>/<gallery>", "```", "",
              "```python", "from seds.checkpoint import load_checkpoint", "from seds.hub import resolve_checkpoint", "",
              f"model, loss, cfg, info = load_checkpoint(resolve_checkpoint(\"hf-hub:<org>/{name}\"))", "```", ""]
    return "\n".join(lines)


def write_model_card(folder: str | Path, **kw) -> Path:
    path = Path(folder) / CARD
    atomic_write_bytes(path, model_card(folder, **kw).encode())
    return path


def gallery_card(folder: str | Path, name: str | None = None) -> str:
    """The ``README.md`` of a gallery folder as a Hub dataset repo."""
    info = json.loads((Path(folder) / GALLERY_INFO).read_text())
    ck = info.get("checkpoint") or {}
    name = name or Path(folder).resolve().name
    meta = DatasetCardData(tags=TAGS + ["seds-gallery"], seds_checkpoint_sha256=ck.get("sha256"))
    return "\n".join(["---", meta.to_yaml(), "---", "", f"# {name}", "",
                      "A SEDS gallery (`seds-index build`): the features of its videos and sentences encoded by one "
                      f"checkpoint (`{ck.get('name', '?')}`, weights sha256 `{str(ck.get('sha256'))[:12]}…`), "
                      "its search index and, where built with them, thumbnails and videos.", "",
                      "```bash", f"seds-app --checkpoint hf-hub:<org>/<checkpoint> --gallery hf-hub:<org>/{name}",
                      "```", ""])


# --------------------------------------------------------------------------------------------------
# publishing
# --------------------------------------------------------------------------------------------------

def folder_kind(folder: str | Path) -> str:
    folder = Path(folder)
    if (folder / GALLERY_INFO).is_file():
        return "gallery"
    if (folder / CONFIG).is_file():
        read_config(folder)          # a clear error when it is not a SEDS checkpoint
        if not (folder / WEIGHTS).is_file():
            raise HubError(f"{folder}: no {WEIGHTS}")
        return "checkpoint"
    raise HubError(f"{folder}: neither a SEDS checkpoint ({CONFIG} + {WEIGHTS}) nor a gallery ({GALLERY_INFO})")


def upload_plan(folder: str | Path) -> tuple[str, str, list[str]]:
    """(kind, repo type, the files to upload, relative to ``folder``) — the card must already be written."""
    folder = Path(folder)
    kind = folder_kind(folder)
    if kind == "checkpoint":
        files = sorted({p.name for pat in CHECKPOINT_FILES for p in folder.glob(pat) if p.is_file()})
        return kind, "model", files
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    return kind, "dataset", files


def push_to_hub(folder: str | Path, repo_id: str, private: bool = False, revision: str | None = None,
                message: str | None = None, license: str | None = None, dry_run: bool = False) -> list[str]:
    """Write the card, then upload ``folder`` (a checkpoint or a gallery) to ``repo_id`` (created if needed;
    token from ``huggingface-cli login`` or ``HF_TOKEN``). Returns the uploaded paths; ``dry_run`` only lists."""
    folder = Path(folder)
    if not REPO_ID.match(repo_id):
        raise HubError(f"{repo_id!r}: not a Hub repository id (org/name)")
    kind = folder_kind(folder)
    name = repo_id.split("/")[1]
    if kind == "checkpoint":
        write_model_card(folder, name=name, license=license)
    else:
        atomic_write_bytes(folder / CARD, gallery_card(folder, name).encode())
    kind, repo_type, files = upload_plan(folder)
    if dry_run:
        return files
    if offline():
        raise HubError("HF_HUB_OFFLINE is set: publishing needs the network (unset it to push)")
    api = HfApi(library_name="seds")
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type=repo_type, revision=revision,
                      allow_patterns=files, commit_message=message or f"Upload SEDS {kind}")
    return files


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog=prog("seds.hub", "seds-hub"),
                                 description="SEDS checkpoints and galleries on the Hugging Face Hub")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("card", help="write a checkpoint folder's model card (README.md)")
    c.add_argument("checkpoint")
    c.add_argument("--name", default=None, help="title (default: the folder's name)")
    c.add_argument("--license", default=None, help="the weights' license, e.g. apache-2.0 (Hub metadata)")
    p = sub.add_parser("push", help="publish a checkpoint (model repo) or a gallery (dataset repo)")
    p.add_argument("folder")
    p.add_argument("repo_id", help="org/name")
    p.add_argument("--private", action="store_true")
    p.add_argument("--revision", default=None, help="branch to push to (default: main)")
    p.add_argument("--message", default=None, help="commit message")
    p.add_argument("--license", default=None, help="the weights' license (model card metadata)")
    p.add_argument("--dry-run", action="store_true", help="write the card and list the files; upload nothing")
    d = sub.add_parser("download", help="fetch a checkpoint (or --gallery) into the Hub cache; print its folder")
    d.add_argument("spec", help="org/name[@revision] or hf-hub:org/name[@revision]")
    d.add_argument("--gallery", action="store_true", help="a gallery (dataset repo)")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "card":
            print(write_model_card(args.checkpoint, name=args.name, license=args.license))
        elif args.cmd == "push":
            files = push_to_hub(args.folder, args.repo_id, args.private, args.revision, args.message, args.license,
                                args.dry_run)
            verb = "would upload" if args.dry_run else "uploaded"
            print(f"{verb} {len(files)} files to {args.repo_id}:", *files, sep="\n  ")
        else:
            print((resolve_gallery if args.gallery else resolve_checkpoint)(
                args.spec if args.spec.startswith(PREFIX) else PREFIX + args.spec))
    except (CheckpointError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - network / authentication failures of the Hub client: one line
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
