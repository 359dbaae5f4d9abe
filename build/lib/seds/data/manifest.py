"""Manifests and the dataset adapters that build them.

A *manifest* is the one table every other part of the project reads: a CSV with the columns
``id, video, text, split, signer`` (plus any extra columns, kept as they are). ``id`` keys the
feature store, ``video`` is a video file *or a folder of frame images* (PHOENIX and CSL-Daily ship
frames, so the video reader must accept a directory), ``text`` is the sentence used for retrieval
(empty = unlabeled: kept, e.g. as gallery distractors or for self-supervised pose work).

Each dataset's own annotation format is turned into manifest rows by an *adapter*. Adapters are
declarative: a :class:`TableSpec` says which source columns hold the id, text, split and signer and
how the video path is formed from a row (a ``str.format`` template over the row's columns), and one
generic table reader (:func:`rows_from_table`) does the rest — delimiter sniffing, column checks with
clear errors, the split taken from a column or else from the file name. CSL-Daily, whose labels come
in two files, joins two such tables. Register a new dataset with :func:`register_adapter`.

Adapters (``python -m seds.extract --dataset NAME``):

* ``how2sign``: the realigned How2Sign CSVs (``how2sign_realigned_{train,val,test}.csv``; comma- or
  tab-separated; ``VIDEO_ID, VIDEO_NAME, SENTENCE_ID, SENTENCE_NAME, START_REALIGNED, END_REALIGNED,
  SENTENCE``). id = ``SENTENCE_NAME``, video = ``<root>/<SENTENCE_NAME>.mp4`` (How2Sign's segmented
  clips), split from the file name. The YouTube ``VIDEO_ID`` does not identify the signer, so
  ``signer`` is empty (``video_id`` is kept as an extra column).
* ``phoenix2014t``: RWTH-PHOENIX-Weather 2014T, either the combined ``name, split, n_frames, gloss,
  text`` CSV or the official ``PHOENIX-2014-T.<split>.corpus.csv`` files (``|``-separated ``name,
  video, start, end, speaker, orth, translation``; ``orth`` is kept as ``gloss``, ``speaker`` becomes
  ``signer``). video = the frame folder ``<root>/features/fullFrame-210x260px/<split>/<name>``.
* ``csl_daily``: CSL-Daily. Its labels ship as a pickle (``sentence_label/csl2020ct_v2.pkl``), which
  is never unpickled here (unpickling runs arbitrary code). Expected files: the split file
  ``sentence_label/split_1.txt`` (``name|split``, given as the annotations, or the ``sentence_label``
  folder holding it) plus a CSV/TSV with at least ``name, text`` (optional ``gloss, signer``) —
  option ``text_file``, default ``csl_daily_text.tsv`` or ``.csv`` beside the split file. video = the
  frame folder ``<root>/sentence/frames_512x512/<name>``; signer = the ``P####`` part of the name.
* ``how2sign_mini``: ``shared/data/how2sign-mini/manifest.csv`` (``id, file, split, sentence,
  video_id, n_frames, fps, width, height``); video = ``<root>/<file>`` (root defaults to the CSV's
  folder), signer = ``video_id`` (clips of one source video share a signer); rows without a
  sentence are kept with empty text (``ManifestRow.labeled`` is False).
* ``folder``: any folder of videos plus a CSV with ``id, file, text, split`` columns (names set by
  the options ``id_col, file_col, text_col, split_col, signer_col``).
* ``manifest``: this module's own format (what :func:`write_manifest` writes); relative ``video``
  paths are resolved against ``root`` or the manifest's folder.

Every adapter also accepts ``video_template`` to override how the video path is formed.
"""
from __future__ import annotations

import csv
import logging
import os
import re
import string
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("id", "video", "text", "split", "signer")
SPLIT_ALIASES = {"val": "dev", "dev": "val", "valid": "val", "validation": "val"}
_DELIMITERS = (",", "\t", "|", ";")
_SPLIT_IN_NAME = re.compile(r"(?:^|[._\-])(train|dev|val|test)(?:[._\-]|$)", re.IGNORECASE)


class ManifestError(ValueError):
    """Bad annotations/manifest: missing columns, empty split, duplicate ids, ..."""


# --- rows and manifests ---------------------------------------------------------------------------

@dataclass
class ManifestRow:
    id: str
    video: str
    text: str = ""
    split: str = ""
    signer: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def labeled(self) -> bool:
        """Whether the row has a sentence (unlabeled rows are gallery distractors / pose-only data)."""
        return bool(self.text.strip())

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "video": self.video, "text": self.text, "split": self.split,
                "signer": self.signer, **self.extra}


class Manifest:
    """An ordered list of :class:`ManifestRow` with unique ids."""

    def __init__(self, rows: Iterable[ManifestRow], source: str = ""):
        self.rows = list(rows)
        self.source = source
        counts = Counter(r.id for r in self.rows)
        dups = [i for i, n in counts.items() if n > 1]
        if dups:
            raise ManifestError(f"{source or 'manifest'}: {len(dups)} duplicate id(s), e.g. {dups[:5]}")
        self._index = {r.id: i for i, r in enumerate(self.rows)}

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[ManifestRow]:
        return iter(self.rows)

    def __getitem__(self, i: int) -> ManifestRow:
        return self.rows[i]

    def __contains__(self, video_id: str) -> bool:
        return video_id in self._index

    def get(self, video_id: str) -> ManifestRow:
        try:
            return self.rows[self._index[video_id]]
        except KeyError:
            raise KeyError(f"id {video_id!r} is not in {self.source or 'the manifest'}") from None

    def ids(self) -> list[str]:
        return [r.id for r in self.rows]

    def splits(self) -> dict[str, int]:
        return dict(Counter(r.split for r in self.rows))

    @property
    def extra_columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.rows:
            seen.update(dict.fromkeys(r.extra))
        return list(seen)

    def _derive(self, rows, what: str) -> Manifest:
        return Manifest(rows, f"{self.source}[{what}]" if self.source else what)

    def select(self, split: str) -> Manifest:
        """Rows of one split (``val`` and ``dev`` stand in for each other when only one exists)."""
        rows = [r for r in self.rows if r.split == split]
        alias = SPLIT_ALIASES.get(split)
        if not rows and alias is not None:
            rows = [r for r in self.rows if r.split == alias]
            if rows:
                log.info("split %r not found in %s; using %r", split, self.source, alias)
        if not rows:
            avail = ", ".join(f"{k or '<empty>'} ({n})" for k, n in sorted(self.splits().items()))
            raise ManifestError(f"split {split!r} has no rows in {self.source or 'the manifest'}; "
                                f"available splits: {avail or 'none (empty manifest)'}")
        return self._derive(rows, split)

    def labeled(self) -> Manifest:
        return self._derive([r for r in self.rows if r.labeled], "labeled")

    def head(self, n: int) -> Manifest:
        return self._derive(self.rows[:n], f":{n}")

    def missing_videos(self) -> list[ManifestRow]:
        """Rows whose video file/frame folder does not exist."""
        return [r for r in self.rows if not os.path.exists(r.video)]

    def __repr__(self) -> str:
        return f"Manifest({len(self)} rows, splits={self.splits()}, source={self.source!r})"


# --- generic table reading -----------------------------------------------------------------------

def read_table(path: str | os.PathLike,
               delimiter: str | None = None) -> tuple[list[str], list[dict[str, str]]]:
    """Read a delimited text table with a header row; the delimiter (``, \\t | ;``) is sniffed
    from the header when not given. Returns (columns, rows)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    with open(path, newline="", encoding="utf-8-sig") as f:
        header = f.readline()
        if not header.strip():
            raise ManifestError(f"{path} is empty (no header row)")
        if delimiter is None:
            delimiter = max(_DELIMITERS, key=header.count)
        f.seek(0)
        reader = csv.DictReader(f, delimiter=delimiter)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        reader.fieldnames = columns
        if len(set(columns)) != len(columns):
            raise ManifestError(f"{path}: repeated column names in header {columns}")
        rows = []
        for lineno, r in enumerate(reader, start=2):
            if None in r:
                raise ManifestError(f"{path}:{lineno}: more fields than the {len(columns)} header columns "
                                    f"(delimiter {delimiter!r})")
            rows.append({k: (v or "").strip() for k, v in r.items()})
    return columns, rows


def split_from_filename(path: str | os.PathLike) -> str | None:
    """``how2sign_realigned_val.csv`` → ``val``; ``PHOENIX-2014-T.dev.corpus.csv`` → ``dev``."""
    m = _SPLIT_IN_NAME.search(Path(path).name)
    return m.group(1).lower() if m else None


@dataclass(frozen=True)
class TableSpec:
    """Which source columns make a manifest row. Each field lists candidate column names (the first
    one present in the file is used); ``video`` is a ``str.format`` template over the source
    columns plus ``{split}`` and ``{id}``, giving the path relative to the video root."""

    id: tuple[str, ...]
    video: str
    text: tuple[str, ...] = ()                 # () → the dataset has no text column
    split: tuple[str, ...] = ()                # () → split from the file name / requested split
    signer: tuple[str, ...] = ()
    signer_from_id: Callable[[str], str] | None = None
    rename: Mapping[str, str] = field(default_factory=dict)   # kept column → manifest column
    keep_rest: bool = True                     # keep unmapped columns as extras
    keep_signer_column: bool = False           # also keep the signer column (when it is a proxy)


def _pick(columns: list[str], candidates: tuple[str, ...], path: Path, what: str,
          required: bool = True) -> str | None:
    for c in candidates:
        if c in columns:
            return c
    if required:
        raise ManifestError(f"{path} lacks the {what} column (looked for {list(candidates)}); "
                            f"columns found: {columns}")
    return None


def rows_from_table(path: str | os.PathLike, spec: TableSpec, split: str | None = None,
                    video_template: str | None = None, delimiter: str | None = None) -> list[ManifestRow]:
    """Turn one annotation table into manifest rows (video paths relative to the video root).

    ``split`` is used only when the table has no split column and its file name names none.
    """
    path = Path(path)
    columns, table = read_table(path, delimiter)
    c_id = _pick(columns, spec.id, path, "id")
    c_text = _pick(columns, spec.text, path, "text") if spec.text else None
    c_split = _pick(columns, spec.split, path, "split", required=False) if spec.split else None
    c_signer = _pick(columns, spec.signer, path, "signer", required=False) if spec.signer else None
    template = video_template or spec.video
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    unknown = sorted(fields - set(columns) - {"split", "id"})
    if unknown:
        raise ManifestError(f"{path}: video path template {template!r} uses column(s) {unknown} that "
                            f"the file lacks; columns found: {columns}")
    file_split = None if c_split else (split_from_filename(path) or split or "")
    used = {c_id, c_text, c_split} | (fields & set(MANIFEST_COLUMNS))
    if not spec.keep_signer_column:
        used.add(c_signer)
    kept = {}
    if spec.keep_rest:
        for c in columns:
            if c in used:
                continue
            name = spec.rename.get(c, c)
            kept[c] = f"source_{name}" if name in MANIFEST_COLUMNS else name
    rows = []
    for lineno, r in enumerate(table, start=2):
        vid = r[c_id]
        if not vid:
            raise ManifestError(f"{path}:{lineno}: empty id (column {c_id!r})")
        sp = r[c_split] if c_split else file_split
        try:
            video = template.format_map({**r, "split": sp, "id": vid})
        except (ValueError, IndexError) as e:
            raise ManifestError(f"{path}: bad video path template {template!r} ({e})") from e
        signer = r[c_signer] if c_signer else ""
        if not signer and spec.signer_from_id is not None:
            signer = spec.signer_from_id(vid)
        rows.append(ManifestRow(id=vid, video=video, text=r[c_text] if c_text else "", split=sp,
                                signer=signer, extra={name: r[c] for c, name in kept.items()}))
    return rows


# --- the adapter registry ------------------------------------------------------------------------

AdapterFn = Callable[..., list[ManifestRow]]


@dataclass(frozen=True)
class Adapter:
    name: str
    read: AdapterFn                                   # (annotations, split=None, **options) -> rows
    files: str                                        # what the user points --annotations at
    default_root: Callable[[Path], Path | None] = lambda annotations: None


ADAPTERS: dict[str, Adapter] = {}


def register_adapter(name: str, files: str, default_root: Callable[[Path], Path | None] | None = None):
    """Decorator registering ``fn(annotations: Path, split: str | None, **options) -> rows``."""
    def deco(fn: AdapterFn) -> AdapterFn:
        if name in ADAPTERS:
            raise ValueError(f"adapter {name!r} registered twice")
        ADAPTERS[name] = Adapter(name, fn, files, default_root or (lambda a: None))
        return fn
    return deco


def table_adapter(name: str, spec: TableSpec, files: str, root_is_annotation_dir: bool = False) -> None:
    """Register an adapter that is nothing more than a :class:`TableSpec`."""
    def read(annotations: Path, split: str | None = None, video_template: str | None = None,
             delimiter: str | None = None) -> list[ManifestRow]:
        return rows_from_table(annotations, spec, split, video_template, delimiter)
    read.__doc__ = f"{name}: {files}"
    register_adapter(name, files, (lambda a: a.parent) if root_is_annotation_dir else None)(read)


def adapter_names() -> list[str]:
    return sorted(ADAPTERS)


def get_adapter(name: str) -> Adapter:
    try:
        return ADAPTERS[name]
    except KeyError:
        raise ManifestError(f"unknown dataset adapter {name!r}; available: {adapter_names()}") from None


table_adapter("manifest", TableSpec(id=("id",), video="{video}", text=("text",), split=("split",),
                                    signer=("signer",)),
              "a SEDS manifest CSV (id, video, text, split, signer, ...)", root_is_annotation_dir=True)

table_adapter("how2sign", TableSpec(
    id=("SENTENCE_NAME",), video="{SENTENCE_NAME}.mp4", text=("SENTENCE",),
    rename={"VIDEO_ID": "video_id", "VIDEO_NAME": "video_name", "SENTENCE_ID": "sentence_id",
            "START_REALIGNED": "start", "END_REALIGNED": "end"}),
    "how2sign_realigned_<split>.csv (VIDEO_ID, VIDEO_NAME, SENTENCE_ID, SENTENCE_NAME, "
    "START_REALIGNED, END_REALIGNED, SENTENCE); --videos = the folder of segmented clips")

table_adapter("phoenix2014t", TableSpec(
    id=("name",), video="features/fullFrame-210x260px/{split}/{name}", text=("text", "translation"),
    split=("split",), signer=("speaker", "signer"), rename={"orth": "gloss"}),
    "phoenix2014t.csv (name, split, n_frames, gloss, text) or PHOENIX-2014-T.<split>.corpus.csv; "
    "--videos = the PHOENIX-2014-T folder holding features/fullFrame-210x260px/<split>/<name>/*.png")

table_adapter("how2sign_mini", TableSpec(
    id=("id",), video="{file}", text=("sentence",), split=("split",), signer=("video_id",),
    keep_signer_column=True),
    "how2sign-mini/manifest.csv (id, file, split, sentence, video_id, n_frames, fps, width, height)",
    root_is_annotation_dir=True)


@register_adapter("folder", "a CSV/TSV with id, file, text, split columns (names configurable) beside "
                            "or above the videos; --videos = the folder the file paths are relative to",
                  default_root=lambda a: a.parent)
def _folder(annotations: Path, split: str | None = None, id_col: str = "id", file_col: str = "file",
            text_col: str = "text", split_col: str = "split", signer_col: str | None = None,
            video_template: str | None = None, delimiter: str | None = None) -> list[ManifestRow]:
    spec = TableSpec(id=(id_col,), video="{" + file_col + "}", text=(text_col,) if text_col else (),
                     split=(split_col,) if split_col else (), signer=(signer_col,) if signer_col else ())
    return rows_from_table(annotations, spec, split, video_template, delimiter)


_CSL_SIGNER = re.compile(r"_(P\d+)(?:_|$)")


def _csl_signer(name: str) -> str:
    m = _CSL_SIGNER.search(name)
    return m.group(1) if m else ""


@register_adapter("csl_daily", "sentence_label/split_1.txt (name|split) or its folder, plus a CSV/TSV of "
                               "name,text[,gloss,signer] (option text_file; default csl_daily_text.tsv/.csv "
                               "beside the split file); --videos = the CSL-Daily folder holding "
                               "sentence/frames_512x512/<name>/")
def _csl_daily(annotations: Path, split: str | None = None, text_file: str | None = None,
               video_template: str | None = None, delimiter: str | None = None) -> list[ManifestRow]:
    annotations = Path(annotations)
    split_file = annotations / "split_1.txt" if annotations.is_dir() else annotations
    if text_file is None:
        cands = [split_file.parent / f"csl_daily_text{ext}" for ext in (".tsv", ".csv")]
        found = [c for c in cands if c.is_file()]
        if not found:
            raise ManifestError(
                "csl_daily needs the sentences as a CSV/TSV with columns name,text (the official "
                "csl2020ct_v2.pkl is not unpickled, for safety): pass the option text_file=PATH or put "
                f"one of {[str(c) for c in cands]} beside the split file")
        text_file = found[0]
    spec = TableSpec(id=("name", "Name"), video="sentence/frames_512x512/{name}", split=("split",),
                     signer_from_id=_csl_signer, keep_rest=False)
    rows = rows_from_table(split_file, spec, split, video_template, delimiter)
    text_spec = TableSpec(id=("name", "Name"), video="", text=("text", "sentence", "translation"),
                          signer=("signer",), rename={"label_gloss": "gloss"})
    texts = {r.id: r for r in rows_from_table(text_file, text_spec)}
    missing = 0
    for r in rows:
        t = texts.get(r.id)
        if t is None:
            missing += 1
            continue
        r.text = t.text
        r.signer = t.signer or r.signer
        r.extra.update({k: v for k, v in t.extra.items() if k not in ("split",)})
    if missing:
        log.warning("csl_daily: %d of %d names in %s have no sentence in %s (kept, unlabeled)",
                    missing, len(rows), split_file, text_file)
    return rows


# --- public entry points -------------------------------------------------------------------------

def load_manifest(source: str | os.PathLike, split: str | None = None, root: str | os.PathLike | None = None,
                  *, dataset: str | None = None, check_files: bool = False, **options) -> Manifest:
    """Load a manifest, from this module's own CSV format or through a dataset adapter.

    ``source`` is a manifest CSV, or — with ``dataset=NAME`` or written ``"NAME:PATH"`` — the
    annotation file(s) of that dataset. ``root`` is the folder video paths are relative to
    (defaults: the annotation file's folder for ``manifest``, ``how2sign_mini`` and ``folder``;
    otherwise paths stay relative). ``split`` keeps one split (a clear error if it is empty).
    ``check_files`` raises when videos are missing. Extra keyword options go to the adapter.
    """
    src = str(source)
    if dataset is None:
        name, sep, rest = src.partition(":")
        if sep and name in ADAPTERS:
            dataset, src = name, rest
        else:
            dataset = "manifest"
    adapter = get_adapter(dataset)
    annotations = Path(src).expanduser()
    if not annotations.exists():
        raise FileNotFoundError(f"{dataset} annotations not found: {annotations} (expected {adapter.files})")
    try:
        rows = adapter.read(annotations, split, **options)
    except TypeError as e:
        if "unexpected keyword" in str(e):
            raise ManifestError(f"adapter {dataset!r}: {e}") from e
        raise
    except ManifestError as e:
        if dataset == "manifest":
            raise ManifestError(f"{e} — if this is a dataset's own annotation file, name its adapter "
                                f"(dataset=NAME / --dataset NAME; one of {adapter_names()})") from e
        raise
    base = Path(root).expanduser() if root is not None else adapter.default_root(annotations)
    if base is not None:
        base = Path(os.path.abspath(base))      # manifests get written elsewhere: no cwd-relative paths
        for r in rows:
            if r.video and not os.path.isabs(r.video):
                r.video = str(base / r.video)
    m = Manifest(rows, source=str(annotations))
    if not len(m):
        raise ManifestError(f"{annotations} holds no rows")
    if split is not None:
        m = m.select(split)
    n_unlabeled = sum(not r.labeled for r in m)
    if n_unlabeled:
        log.info("%s: %d of %d rows have no text (unlabeled)", annotations, n_unlabeled, len(m))
    if check_files:
        miss = m.missing_videos()
        if miss:
            raise FileNotFoundError(f"{len(miss)} of {len(m)} videos listed in {annotations} are missing, "
                                    f"e.g. {[r.video for r in miss[:3]]}")
    return m


def write_manifest(manifest: Manifest | Iterable[ManifestRow], path: str | os.PathLike) -> Path:
    """Write rows as a manifest CSV (core columns first, then extras); atomic replace."""
    if not isinstance(manifest, Manifest):
        manifest = Manifest(manifest)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(MANIFEST_COLUMNS) + manifest.extra_columns
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=columns, restval="")
            w.writeheader()
            w.writerows(r.as_dict() for r in manifest)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
