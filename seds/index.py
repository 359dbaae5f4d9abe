"""Gallery index: encoded videos (or sentences) with their fine-grained features, searchable with a
two-stage retrieval — a faiss inner-product search on pooled vectors proposes candidates, then the
exact CiCo fine-grained score (SEDS Sec. 3.3, ``seds.similarity.fine_grained_scores(...).mean``)
re-ranks them.

Per stream (``pose``, ``rgb``, ``fused`` for a video gallery; ``text`` for a sentence gallery) the
index holds

* clip/word features ``(N, T, D)`` — stored L2-normalised (the score only sees normalised features)
  in the configured dtype, padded positions zeroed;
* a validity mask ``(N, T)`` bool;
* pooled vectors ``(N, D)`` float32 (``seds.similarity.pooled``) in a ``faiss.IndexFlatIP``.

``kind="video"``: the gallery items are videos and queries are sentences (T2V search);
``kind="text"``: the items are sentences and queries are videos (V2T search). Either way the score is
``½ (M_t2k + M_k2t)`` of the (video, sentence) pair.

On disk (``save``/``load``): ``config.json`` (format version, kind, dim, dtype, streams, tau, item
count, shard list), ``metadata.json`` (ids and one JSON object per item) and one or more
``gallery-NNNNN.safetensors`` shards holding ``{stream}.features``, ``{stream}.mask`` and
``{stream}.pooled`` for a contiguous range of items.

On top of the index: :class:`Gallery` — a folder with a video index (text → video), a sentence index
(video → text), thumbnails and a :class:`FeatureCache`, encoded by one checkpoint (its weights' SHA-256 is
recorded and checked) — built by :func:`build_gallery`, and the command line::

    python -m seds.index build  --checkpoint CKPT --manifest CSV [--store DIR [--extract]] --out GALLERY [--cache]
    python -m seds.index add    --checkpoint CKPT --manifest CSV [--store DIR [--extract]] --gallery GALLERY
    python -m seds.index search --checkpoint CKPT --gallery GALLERY (--text "..." | --video FILE) [-k 5]
"""
from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from seds.similarity import DEFAULT_TAU, fine_grained_scores, pooled

try:  # faiss is a hard requirement of the index, but fail with a clear message when missing
    import faiss
except ImportError:  # pragma: no cover - exercised only without faiss
    faiss = None

FORMAT = "seds-gallery-index"
FORMAT_VERSION = 1
KINDS = ("video", "text")
DEFAULT_STREAMS = {"video": ("pose", "rgb", "fused"), "text": ("text",)}
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
SHARD_BYTES = 1 << 30            # default shard size on disk (1 GiB)
_WORK_TENSOR_BYTES = 24 << 20   # cap on each work tensor in exhaustive scoring (below glibc's 32 MB mmap
                                 # threshold, so CPU chunks reuse heap memory instead of page-faulting)
_WORK_TENSOR_BYTES_GPU = 512 << 20
_ADD_ROWS = 4096                 # rows normalised at once in add()
FAISS_GPU_MAX_K = 2048           # faiss GPU flat search limit on k


class GalleryIndexError(ValueError):
    """Bad input to, or a corrupt file of, a GalleryIndex."""


@dataclass(frozen=True)
class IndexConfig:
    """What a gallery holds. ``streams`` defaults to pose/rgb/fused for videos, text for sentences;
    ``tau`` is the softmax temperature of the fine-grained score."""
    kind: str = "video"
    dim: int = 512
    dtype: str = "float16"
    streams: tuple[str, ...] = ()
    tau: float = DEFAULT_TAU

    def __post_init__(self):
        if self.kind not in KINDS:
            raise GalleryIndexError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if isinstance(self.dim, bool) or not isinstance(self.dim, int) or self.dim < 1:
            raise GalleryIndexError(f"dim must be a positive int, got {self.dim!r}")
        if self.dtype not in DTYPES:
            raise GalleryIndexError(f"dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}")
        streams = tuple(self.streams) if self.streams else DEFAULT_STREAMS[self.kind]
        if any(not isinstance(s, str) or not s or "." in s for s in streams) or len(set(streams)) != len(streams):
            raise GalleryIndexError(f"streams must be distinct non-empty names without '.', got {streams!r}")
        object.__setattr__(self, "streams", streams)
        if not (isinstance(self.tau, (int, float)) and self.tau > 0):
            raise GalleryIndexError(f"tau must be > 0, got {self.tau!r}")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["streams"] = list(self.streams)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any], source: str = "config") -> "IndexConfig":
        missing = [k for k in ("kind", "dim", "dtype", "streams", "tau") if k not in d]
        if missing:
            raise GalleryIndexError(f"{source}: missing field(s) {missing}")
        return cls(kind=d["kind"], dim=d["dim"], dtype=d["dtype"], streams=tuple(d["streams"]), tau=d["tau"])


@dataclass
class Hit:
    """One search result. ``score`` is the fine-grained score (or the pooled inner product when no
    re-ranking was asked for), ``rank`` 1-based, ``coarse_score`` the faiss pooled inner product
    (None for exhaustive search), ``index`` the item's row in the gallery."""
    id: str | int
    score: float
    rank: int
    meta: dict = field(default_factory=dict)
    coarse_score: float | None = None
    index: int = -1


@dataclass
class _Stream:
    chunks: list = field(default_factory=list)     # [(features (n, T, D), mask (n, T))]
    pooled: list = field(default_factory=list)     # [np.ndarray (n, D) float32]
    faiss: Any = None


def _to_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    try:
        return torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError) as e:
        raise GalleryIndexError(f"{name}: cannot convert to a tensor ({e})") from None


def _to_mask(x, shape: tuple[int, ...], name: str) -> torch.Tensor:
    m = _to_tensor(x, name)
    if tuple(m.shape) != tuple(shape):
        raise GalleryIndexError(f"{name}: shape {tuple(m.shape)} != expected {tuple(shape)}")
    if m.dtype != torch.bool:
        if m.is_floating_point() or not bool(((m == 0) | (m == 1)).all()):
            raise GalleryIndexError(f"{name}: must be boolean (or 0/1 integers), got {m.dtype}")
        m = m.bool()
    return m


def faiss_gpu_available() -> bool:
    return faiss is not None and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class GalleryIndex:
    """Encoded gallery with two-stage (faiss → fine-grained re-rank) search.

    ``device``: where features are stored and the fine-grained scores computed;
    ``use_gpu_faiss``: None = use faiss GPU when available; ``compute_dtype``: dtype of the
    fine-grained computation (float32 by default; float16/bfloat16 are sensible on GPU).
    """

    def __init__(self, kind: str = "video", dim: int = 512, streams: Sequence[str] | None = None,
                 dtype: str = "float16", tau: float = DEFAULT_TAU, *, config: IndexConfig | None = None,
                 device: str | torch.device = "cpu", use_gpu_faiss: bool | None = None,
                 compute_dtype: torch.dtype = torch.float32):
        if faiss is None:
            raise ImportError("seds.index needs faiss (pip install faiss-cpu or faiss-gpu)")
        self.config = config if config is not None else IndexConfig(kind, dim, dtype, tuple(streams or ()), tau)
        self.device = torch.device(device)
        self.compute_dtype = compute_dtype
        if use_gpu_faiss is None:
            use_gpu_faiss = faiss_gpu_available()
        elif use_gpu_faiss and not faiss_gpu_available():
            raise GalleryIndexError("use_gpu_faiss=True but this faiss build has no GPU support or no GPU is visible")
        self.use_gpu_faiss = bool(use_gpu_faiss)
        self._gpu_res = faiss.StandardGpuResources() if self.use_gpu_faiss else None
        self._ids: list = []
        self._meta: list[dict] = []
        self._pos: dict = {}
        self._streams = {s: _Stream(faiss=self._new_faiss()) for s in self.config.streams}
        self._tls = threading.local()      # per-thread reusable work buffers (see _buffer)

    # ------------------------------------------------------------------ basics
    def _new_faiss(self):
        idx = faiss.IndexFlatIP(self.config.dim)
        if self.use_gpu_faiss:
            dev = self.device.index if self.device.type == "cuda" and self.device.index is not None else 0
            idx = faiss.index_cpu_to_gpu(self._gpu_res, dev, idx)
        return idx

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A reusable work tensor of ``shape`` (a view of a per-thread buffer that only grows): on CPU,
        allocating a fresh (M, T, D) tensor per query costs more in page faults than the gather itself."""
        store = self._tls.__dict__.setdefault("bufs", {})
        key = (name, dtype, tuple(shape[1:]))
        buf = store.get(key)
        if buf is None or buf.shape[0] < shape[0]:
            buf = torch.empty(shape, dtype=dtype, device=self.device)
            store[key] = buf
        return buf[:shape[0]]

    def _gather(self, feats: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """feats[rows] converted to the compute dtype, in reusable buffers."""
        shape = (rows.shape[0],) + tuple(feats.shape[1:])
        raw = self._buffer("gather", shape, feats.dtype)
        torch.index_select(feats, 0, rows, out=raw)
        if feats.dtype == self.compute_dtype:
            return raw
        return self._buffer("compute", shape, self.compute_dtype).copy_(raw)

    def clear_buffers(self) -> None:
        """Free this thread's re-rank work buffers (they hold about M·T·D·6 bytes)."""
        self._tls.__dict__.pop("bufs", None)

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def streams(self) -> tuple[str, ...]:
        return self.config.streams

    @property
    def ids(self) -> list:
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id) -> bool:
        return item_id in self._pos

    def row(self, item_id) -> int:
        """The item's row in the stored tensors (``stream_data(s)[0][row]``)."""
        if item_id not in self._pos:
            raise KeyError(f"id {item_id!r} is not in the index")
        return self._pos[item_id]

    def meta(self, item_id) -> dict:
        if item_id not in self._pos:
            raise KeyError(f"id {item_id!r} is not in the index")
        return dict(self._meta[self._pos[item_id]])

    def set_meta(self, item_id, row: Mapping) -> None:
        """Replace an item's metadata (a JSON-serialisable dict)."""
        if item_id not in self._pos:
            raise KeyError(f"id {item_id!r} is not in the index")
        try:
            json.dumps(dict(row))
        except (TypeError, ValueError) as e:
            raise GalleryIndexError(f"metadata must be JSON-serialisable: {e}") from None
        self._meta[self._pos[item_id]] = dict(row)

    def __repr__(self) -> str:
        c = self.config
        return (f"GalleryIndex(kind={c.kind!r}, n={len(self)}, dim={c.dim}, dtype={c.dtype!r}, "
                f"streams={c.streams}, device={str(self.device)!r}, faiss={'gpu' if self.use_gpu_faiss else 'cpu'})")

    def stream_data(self, stream: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Stored (features (N, T, D), mask (N, T)) of a stream, merged into single tensors
        (shorter additions padded to the longest T)."""
        st = self._streams[self._check_stream(stream)]
        if not st.chunks:
            raise GalleryIndexError("the index is empty")
        if len(st.chunks) > 1:
            n = sum(f.shape[0] for f, _ in st.chunks)
            t = max(f.shape[1] for f, _ in st.chunks)
            feats = torch.zeros((n, t, self.config.dim), dtype=st.chunks[0][0].dtype, device=self.device)
            mask = torch.zeros((n, t), dtype=torch.bool, device=self.device)
            start = 0
            for f, m in st.chunks:
                feats[start:start + f.shape[0], :f.shape[1]] = f
                mask[start:start + f.shape[0], :f.shape[1]] = m
                start += f.shape[0]
            st.chunks = [(feats, mask)]
        return st.chunks[0]

    def pooled_vectors(self, stream: str) -> np.ndarray:
        st = self._streams[self._check_stream(stream)]
        if not st.pooled:
            raise GalleryIndexError("the index is empty")
        if len(st.pooled) > 1:
            st.pooled = [np.concatenate(st.pooled)]
        return st.pooled[0]

    # ------------------------------------------------------------------ adding
    def add(self, ids: Sequence, features_by_stream, masks=None, metadata_rows: Sequence[Mapping] | None = None):
        """Append N items. ``features_by_stream``: {stream: (N, T, D)} for every stream of the index (a
        bare tensor is accepted for a one-stream index); ``masks``: None (all valid), one (N, T) mask
        shared by all streams, or {stream: (N, T_s)}; ``metadata_rows``: N JSON-serialisable dicts.
        Nothing is added if any check fails."""
        ids = list(ids)
        n = len(ids)
        if n == 0:
            raise GalleryIndexError("add(): no ids given")
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, (str, int)):
                raise GalleryIndexError(f"ids must be str or int, got {type(i).__name__} ({i!r})")
        if len(set(ids)) != n:
            seen, dup = set(), None
            for i in ids:
                if i in seen:
                    dup = i
                    break
                seen.add(i)
            raise GalleryIndexError(f"add(): duplicate id {dup!r} in this batch")
        clash = next((i for i in ids if i in self._pos), None)
        if clash is not None:
            raise GalleryIndexError(f"add(): id {clash!r} is already in the index")
        if not isinstance(features_by_stream, Mapping):
            if len(self.streams) != 1:
                raise GalleryIndexError(f"features_by_stream must be a mapping over streams {self.streams}")
            features_by_stream = {self.streams[0]: features_by_stream}
        missing = [s for s in self.streams if s not in features_by_stream]
        extra = [s for s in features_by_stream if s not in self.streams]
        if missing or extra:
            raise GalleryIndexError(f"features_by_stream: missing streams {missing}, unknown streams {extra}; "
                                    f"the index holds {list(self.streams)}")
        if metadata_rows is None:
            rows = [{} for _ in range(n)]
        else:
            rows = [dict(r) if isinstance(r, Mapping) else r for r in metadata_rows]
            if len(rows) != n or any(not isinstance(r, dict) for r in rows):
                raise GalleryIndexError(f"metadata_rows must be {n} dicts, got {len(rows)} rows")
            try:
                json.dumps(rows)
            except (TypeError, ValueError) as e:
                raise GalleryIndexError(f"metadata_rows must be JSON-serialisable: {e}") from None
        if masks is not None and isinstance(masks, Mapping):
            unknown = [s for s in masks if s not in self.streams]
            if unknown:
                raise GalleryIndexError(f"masks: unknown streams {unknown}")
        prepared = {}
        for s in self.streams:
            f = _to_tensor(features_by_stream[s], f"features[{s!r}]")
            if f.ndim != 3 or f.shape[0] != n:
                raise GalleryIndexError(f"features[{s!r}]: expected shape ({n}, T, {self.config.dim}), "
                                        f"got {tuple(f.shape)}")
            if f.shape[2] != self.config.dim:
                raise GalleryIndexError(f"features[{s!r}]: feature size {f.shape[2]} != index dim {self.config.dim}")
            if f.shape[1] == 0:
                raise GalleryIndexError(f"features[{s!r}]: zero positions (T = 0)")
            if not f.is_floating_point():
                raise GalleryIndexError(f"features[{s!r}]: must be floating point, got {f.dtype}")
            m_src = masks.get(s) if isinstance(masks, Mapping) else masks
            m = torch.ones(f.shape[:2], dtype=torch.bool) if m_src is None else \
                _to_mask(m_src, f.shape[:2], f"masks[{s!r}]" if isinstance(masks, Mapping) else "masks")
            m = m.to(f.device)
            empty = ~m.any(1)
            if bool(empty.any()):
                first = int(torch.nonzero(empty)[0])
                raise GalleryIndexError(f"features[{s!r}]: item {ids[first]!r} has no valid position in its mask")
            if not bool(torch.isfinite(f).all()):
                raise GalleryIndexError(f"features[{s!r}]: contains NaN or inf")
            stored = torch.empty(f.shape, dtype=DTYPES[self.config.dtype], device=self.device)
            pool = np.empty((n, self.config.dim), dtype=np.float32)
            for a in range(0, n, _ADD_ROWS):
                fa = F.normalize(f[a:a + _ADD_ROWS].float(), dim=-1) * m[a:a + _ADD_ROWS, :, None]
                sa = fa.to(stored.dtype)
                stored[a:a + _ADD_ROWS] = sa.to(self.device)
                pool[a:a + _ADD_ROWS] = pooled(sa.float(), m[a:a + _ADD_ROWS]).cpu().numpy()
            prepared[s] = (stored, m.to(self.device), pool)
        for s, (stored, m, pool) in prepared.items():
            st = self._streams[s]
            st.chunks.append((stored, m))
            st.pooled.append(pool)
            st.faiss.add(pool)
        for j, i in enumerate(ids):
            self._pos[i] = len(self._ids) + j
        self._ids.extend(ids)
        self._meta.extend(rows)

    # ------------------------------------------------------------------ search
    def _check_stream(self, stream: str | None) -> str:
        if stream is None:
            if len(self.streams) == 1:
                return self.streams[0]
            if "fused" in self.streams:
                return "fused"
            raise GalleryIndexError(f"stream is required: the index holds {list(self.streams)}")
        if stream not in self._streams:
            raise GalleryIndexError(f"unknown stream {stream!r}; the index holds {list(self.streams)}")
        return stream

    def _check_queries(self, queries, query_mask) -> tuple[torch.Tensor, torch.Tensor]:
        """→ L2-normalised queries (B, L, D) in compute dtype and mask (B, L) bool, on the device."""
        q = _to_tensor(queries, "queries")
        if q.ndim != 3:
            raise GalleryIndexError(f"queries must be (B, L, D), got shape {tuple(q.shape)}")
        if q.shape[2] != self.config.dim:
            raise GalleryIndexError(f"query feature size {q.shape[2]} != index dim {self.config.dim}")
        if q.shape[0] == 0 or q.shape[1] == 0:
            raise GalleryIndexError(f"empty queries, shape {tuple(q.shape)}")
        if not q.is_floating_point():
            raise GalleryIndexError(f"queries must be floating point, got {q.dtype}")
        qm = torch.ones(q.shape[:2], dtype=torch.bool) if query_mask is None else \
            _to_mask(query_mask, q.shape[:2], "query_mask")
        if not bool(qm.any(1).all()):
            raise GalleryIndexError("a query has no valid position in its mask")
        if not bool(torch.isfinite(q).all()):
            raise GalleryIndexError("queries contain NaN or inf")
        qm = qm.to(self.device)
        q = F.normalize(q.to(self.device, torch.float32), dim=-1) * qm[..., None]
        return q.to(self.compute_dtype), qm

    def _require_items(self):
        if len(self) == 0:
            raise GalleryIndexError("the index is empty: add() items before searching")

    def _pair_scores(self, gallery: torch.Tensor, gallery_mask: torch.Tensor,
                     q: torch.Tensor, qm: torch.Tensor) -> torch.Tensor:
        """Fine-grained scores (B, n) between queries (B, L, D) and gallery items (n, T, D)."""
        tau = self.config.tau
        if self.kind == "video":       # gallery = videos, queries = sentences
            return fine_grained_scores(gallery, gallery_mask, q, qm, tau, normalize=False).mean.t()
        return fine_grained_scores(q, qm, gallery, gallery_mask, tau, normalize=False).mean

    def coarse_search(self, queries, query_mask=None, stream: str | None = None,
                      m: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1: faiss inner product of pooled vectors → (scores (B, m'), rows (B, m')), m' = min(m, N)."""
        stream = self._check_stream(stream)
        self._require_items()
        q, qm = self._check_queries(queries, query_mask)
        return self._coarse(q, qm, stream, m)

    def _coarse(self, q, qm, stream, m):
        m = min(int(m), len(self))
        if self.use_gpu_faiss and m > FAISS_GPU_MAX_K:
            raise GalleryIndexError(f"rerank={m} exceeds the faiss GPU limit of {FAISS_GPU_MAX_K} candidates")
        qp = pooled(q.float(), qm).cpu().numpy().astype(np.float32, copy=False)
        scores, rows = self._streams[stream].faiss.search(np.ascontiguousarray(qp), m)
        return torch.from_numpy(scores), torch.from_numpy(rows.astype(np.int64, copy=False))

    def rerank_candidates(self, queries, query_mask, stream: str | None, rows) -> torch.Tensor:
        """Stage 2: exact fine-grained scores (B, m) of each query against its candidate rows (B, m)."""
        stream = self._check_stream(stream)
        self._require_items()
        q, qm = self._check_queries(queries, query_mask)
        rows = _to_tensor(rows, "rows").long()
        if rows.ndim != 2 or rows.shape[0] != q.shape[0]:
            raise GalleryIndexError(f"rows must be (B={q.shape[0]}, m), got {tuple(rows.shape)}")
        if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= len(self)):
            raise GalleryIndexError(f"rows outside [0, {len(self)})")
        return self._rerank(q, qm, stream, rows)

    def _rerank(self, q, qm, stream, rows):
        feats, mask = self.stream_data(stream)
        out = torch.empty(rows.shape, dtype=torch.float32)
        rows_dev = rows.to(self.device)
        for b in range(q.shape[0]):       # one query at a time: each has its own candidate set
            g = self._gather(feats, rows_dev[b])
            gm = mask.index_select(0, rows_dev[b])
            out[b] = self._pair_scores(g, gm, q[b:b + 1], qm[b:b + 1])[0].float().cpu()
        return out

    def score_all(self, queries, query_mask=None, stream: str | None = None,
                  chunk_size: int | None = None) -> torch.Tensor:
        """Exact fine-grained scores (B, N) of every query against every item, in chunks of items
        (the reference for the two-stage search, and the full score matrix for evaluation)."""
        stream = self._check_stream(stream)
        self._require_items()
        q, qm = self._check_queries(queries, query_mask)
        return self._score_all(q, qm, stream, chunk_size)

    def _score_all(self, q, qm, stream, chunk_size=None):
        feats, mask = self.stream_data(stream)
        n, t = feats.shape[:2]
        if chunk_size is None:
            # the largest work tensors per item: (B, T, L) similarities and (T, D) features, 4 bytes each
            per_item = 4 * max(q.shape[0] * q.shape[1] * t, t * self.config.dim)
            cap = _WORK_TENSOR_BYTES if self.device.type == "cpu" else _WORK_TENSOR_BYTES_GPU
            chunk_size = max(1, cap // per_item)
        out = torch.empty((q.shape[0], n), dtype=torch.float32, device=self.device)
        for a in range(0, n, chunk_size):
            g = feats[a:a + chunk_size].to(self.compute_dtype)
            out[:, a:a + chunk_size] = self._pair_scores(g, mask[a:a + chunk_size], q, qm).float()
        return out.cpu()

    def search_batch(self, queries, query_mask=None, stream: str | None = None, k: int = 10,
                     rerank: int | None = 100, exhaustive: bool = False) -> list[list[Hit]]:
        """Top-k hits for each of B queries (B, L, D) with mask (B, L).

        ``rerank=M``: faiss proposes the top-M items by pooled inner product, the fine-grained score
        re-ranks them (M is raised to k if smaller). ``rerank=0/None``: faiss ranking only.
        ``exhaustive=True``: fine-grained score against every item (reference; ignores ``rerank``).
        """
        stream = self._check_stream(stream)
        self._require_items()
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise GalleryIndexError(f"k must be a positive int, got {k!r}")
        if rerank is not None and (isinstance(rerank, bool) or not isinstance(rerank, int) or rerank < 0):
            raise GalleryIndexError(f"rerank must be a non-negative int or None, got {rerank!r}")
        q, qm = self._check_queries(queries, query_mask)
        k = min(k, len(self))
        if exhaustive:
            scores, rows = torch.topk(self._score_all(q, qm, stream), k, dim=1)
            coarse = None
        elif not rerank:
            scores, rows = self._coarse(q, qm, stream, k)
            coarse = scores
        else:
            cs, cand = self._coarse(q, qm, stream, max(rerank, k))
            fine = self._rerank(q, qm, stream, cand)
            order = torch.sort(fine, dim=1, descending=True, stable=True).indices[:, :k]
            scores, rows, coarse = fine.gather(1, order), cand.gather(1, order), cs.gather(1, order)
        return [[Hit(id=self._ids[r], score=float(s), rank=j + 1, meta=dict(self._meta[r]),
                     coarse_score=None if coarse is None else float(coarse[b, j]), index=r)
                 for j, (r, s) in enumerate(zip(rows[b].tolist(), scores[b].tolist()))]
                for b in range(rows.shape[0])]

    def search(self, query_feats, query_mask=None, stream: str | None = None, k: int = 10,
               rerank: int | None = 100, exhaustive: bool = False) -> list[Hit]:
        """Top-k hits for one query (L, D) with mask (L,); see :meth:`search_batch`."""
        q = _to_tensor(query_feats, "query_feats")
        if q.ndim != 2:
            raise GalleryIndexError(f"query_feats must be (L, D), got shape {tuple(q.shape)}")
        qm = None if query_mask is None else _to_tensor(query_mask, "query_mask")
        if qm is not None and qm.ndim != 1:
            raise GalleryIndexError(f"query_mask must be (L,), got shape {tuple(qm.shape)}")
        return self.search_batch(q[None], None if qm is None else qm[None], stream, k, rerank, exhaustive)[0]

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path, shard_bytes: int = SHARD_BYTES) -> Path:
        """Write config.json, metadata.json and safetensors shards of at most ~``shard_bytes``."""
        from safetensors.torch import save_file

        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        n = len(self)
        data = {s: self.stream_data(s) for s in self.streams} if n else {}
        pools = {s: self.pooled_vectors(s) for s in self.streams} if n else {}
        max_len = {s: int(data[s][0].shape[1]) for s in data}
        itemsize = torch.empty((), dtype=DTYPES[self.config.dtype]).element_size()
        row_bytes = sum(t * self.config.dim * itemsize + t + 4 * self.config.dim for t in max_len.values()) or 1
        rows_per_shard = max(1, int(shard_bytes) // row_bytes)
        shards = []
        for i, a in enumerate(range(0, n, rows_per_shard)):
            b = min(a + rows_per_shard, n)
            tensors = {}
            for s in self.streams:
                tensors[f"{s}.features"] = data[s][0][a:b].contiguous().cpu()
                tensors[f"{s}.mask"] = data[s][1][a:b].cpu().clone()  # streams may share one mask
                tensors[f"{s}.pooled"] = torch.from_numpy(np.ascontiguousarray(pools[s][a:b]))
            name = f"gallery-{i:05d}.safetensors"
            save_file(tensors, str(path / name), metadata={"format": FORMAT, "start": str(a)})
            shards.append({"file": name, "start": a, "count": b - a})
        keep = {sh["file"] for sh in shards}
        for old in path.glob("gallery-*.safetensors"):
            if old.name not in keep:
                old.unlink()
        (path / "metadata.json").write_text(json.dumps({"ids": self._ids, "meta": self._meta}))
        cfg = {"format": FORMAT, "version": FORMAT_VERSION, **self.config.to_json(), "n_items": n,
               "max_len": max_len, "shards": shards}
        (path / "config.json").write_text(json.dumps(cfg, indent=2))
        return path

    @classmethod
    def load(cls, directory: str | Path, *, device: str | torch.device = "cpu",
             use_gpu_faiss: bool | None = None, compute_dtype: torch.dtype = torch.float32) -> "GalleryIndex":
        """Read an index written by :meth:`save`, validating every file against config.json."""
        from safetensors import safe_open
        from safetensors import SafetensorError

        path = Path(directory)
        if not path.is_dir():
            raise GalleryIndexError(f"{path}: not a directory")
        cfg = _read_json(path / "config.json")
        if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
            raise GalleryIndexError(f"{path / 'config.json'}: not a {FORMAT} config (format={cfg.get('format')!r})"
                                    if isinstance(cfg, dict) else f"{path / 'config.json'}: not a JSON object")
        if cfg.get("version") != FORMAT_VERSION:
            raise GalleryIndexError(f"{path / 'config.json'}: format version {cfg.get('version')!r} is not "
                                    f"supported (expected {FORMAT_VERSION})")
        config = IndexConfig.from_json(cfg, source=str(path / "config.json"))
        n = cfg.get("n_items")
        shards = cfg.get("shards")
        if not isinstance(n, int) or n < 0 or not isinstance(shards, list):
            raise GalleryIndexError(f"{path / 'config.json'}: bad 'n_items' or 'shards'")
        meta = _read_json(path / "metadata.json")
        if not isinstance(meta, dict) or not isinstance(meta.get("ids"), list) or not isinstance(meta.get("meta"), list):
            raise GalleryIndexError(f"{path / 'metadata.json'}: expected an object with 'ids' and 'meta' lists")
        if len(meta["ids"]) != n or len(meta["meta"]) != n:
            raise GalleryIndexError(f"{path / 'metadata.json'}: {len(meta['ids'])} ids / {len(meta['meta'])} "
                                    f"metadata rows, config.json says n_items={n}")
        index = cls(config=config, device=device, use_gpu_faiss=use_gpu_faiss, compute_dtype=compute_dtype)
        if n == 0:
            return index
        dim, dtype = config.dim, DTYPES[config.dtype]
        max_len = cfg.get("max_len")
        if not isinstance(max_len, dict) or sorted(max_len) != sorted(config.streams) or any(
                isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in max_len.values()):
            raise GalleryIndexError(f"{path / 'config.json'}: 'max_len' must give a positive int length for "
                                    f"each stream {list(config.streams)}, got {max_len!r}")
        feats = {s: torch.empty((n, int(max_len[s]), dim), dtype=dtype) for s in config.streams}
        masks = {s: torch.empty((n, int(max_len[s])), dtype=torch.bool) for s in config.streams}
        pools = {s: np.empty((n, dim), dtype=np.float32) for s in config.streams}
        expected_start = 0
        for sh in shards:
            if not isinstance(sh, dict) or sh.get("start") != expected_start or not isinstance(sh.get("count"), int) \
                    or sh["count"] < 1 or not isinstance(sh.get("file"), str):
                raise GalleryIndexError(f"{path / 'config.json'}: shard list is not a contiguous cover of the "
                                        f"items (at {sh!r}, expected start {expected_start})")
            a, b = sh["start"], sh["start"] + sh["count"]
            if b > n:
                raise GalleryIndexError(f"{path / 'config.json'}: shard {sh['file']} ends at {b} > n_items={n}")
            fpath = path / sh["file"]
            if not fpath.is_file():
                raise GalleryIndexError(f"{fpath}: shard listed in config.json is missing")
            try:
                with safe_open(str(fpath), framework="pt") as fh:
                    keys = set(fh.keys())
                    for s in config.streams:
                        want = {f"{s}.features": ((b - a, int(max_len[s]), dim), dtype),
                                f"{s}.mask": ((b - a, int(max_len[s])), torch.bool),
                                f"{s}.pooled": ((b - a, dim), torch.float32)}
                        for key, (shape, dt) in want.items():
                            if key not in keys:
                                raise GalleryIndexError(f"{fpath}: tensor {key!r} is missing")
                            t = fh.get_tensor(key)
                            if tuple(t.shape) != shape or t.dtype != dt:
                                raise GalleryIndexError(f"{fpath}: tensor {key!r} is {tuple(t.shape)} {t.dtype}, "
                                                        f"expected {shape} {dt}")
                            if key.endswith(".features"):
                                feats[s][a:b] = t
                            elif key.endswith(".mask"):
                                masks[s][a:b] = t
                            else:
                                pools[s][a:b] = t.numpy()
            except (SafetensorError, OSError) as e:
                raise GalleryIndexError(f"{fpath}: cannot read safetensors file ({e})") from None
            expected_start = b
        if expected_start != n:
            raise GalleryIndexError(f"{path / 'config.json'}: shards cover {expected_start} items, n_items={n}")
        ids = meta["ids"]
        if any(isinstance(i, bool) or not isinstance(i, (str, int)) for i in ids) or len(set(ids)) != n:
            raise GalleryIndexError(f"{path / 'metadata.json'}: ids must be distinct strings or ints")
        if any(not isinstance(r, dict) for r in meta["meta"]):
            raise GalleryIndexError(f"{path / 'metadata.json'}: every metadata row must be an object")
        for s in config.streams:
            if not bool(masks[s].any(1).all()):
                raise GalleryIndexError(f"{path}: stream {s!r} has an item with an all-false mask")
            st = index._streams[s]
            st.chunks = [(feats[s].to(index.device), masks[s].to(index.device))]
            st.pooled = [pools[s]]
            st.faiss.add(pools[s])
        index._ids = list(ids)
        index._meta = list(meta["meta"])
        index._pos = {i: j for j, i in enumerate(ids)}
        return index


def _read_json(p: Path):
    if not p.is_file():
        raise GalleryIndexError(f"{p}: missing")
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GalleryIndexError(f"{p}: invalid JSON ({e})") from None


# ====================================================================================================
# Galleries: a video index (text → video) + a sentence index (video → text) + metadata, thumbnails and a
# feature cache, built from a manifest with a checkpoint — and the command line over them.
# ====================================================================================================

GALLERY_FORMAT = "seds-gallery"
GALLERY_VERSION = 1
GALLERY_INFO = "gallery.json"


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes (the feature cache key)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


class FeatureCache:
    """``<root>/<sha256>.safetensors``: the extracted :class:`~seds.data.features.VideoFeatures` of a
    video file, keyed by the SHA-256 of its bytes, stored in float16 (keypoints and RGB) to stay
    small. A gallery build can fill it; the app reads it before running the extraction pipeline."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, sha: str) -> Path:
        if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise GalleryIndexError(f"not a SHA-256 hex digest: {sha!r}")
        return self.root / f"{sha}.safetensors"

    def __contains__(self, sha: str) -> bool:
        return self.path(sha).is_file()

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*.safetensors")) if self.root.is_dir() else 0

    def put(self, sha: str, feats, dtype=np.float16) -> Path:
        from safetensors.numpy import save_file
        from seds.data.store import _json_default

        self.root.mkdir(parents=True, exist_ok=True)
        meta = {"format": "seds-feature-cache/1", "fps": repr(float(feats.fps)),
                "meta": json.dumps(feats.meta, default=_json_default, sort_keys=True)}
        p = self.path(sha)
        tmp = p.with_name(f".{p.name}.tmp")
        save_file({"keypoints": np.ascontiguousarray(feats.keypoints, dtype=dtype),
                   "rgb": np.ascontiguousarray(feats.rgb, dtype=dtype),
                   "clip_starts": np.ascontiguousarray(feats.clip_starts, dtype=np.int64)}, str(tmp), meta)
        tmp.replace(p)
        return p

    def get(self, sha: str):
        """The cached features (float32), or None when absent or unreadable (then: extract)."""
        from safetensors import safe_open
        from seds.data.features import VideoFeatures

        p = self.path(sha)
        if not p.is_file():
            return None
        try:
            with safe_open(str(p), framework="np") as fh:
                md = fh.metadata() or {}
                t = {k: fh.get_tensor(k) for k in ("keypoints", "rgb", "clip_starts")}
            return VideoFeatures(keypoints=t["keypoints"], rgb=t["rgb"], clip_starts=t["clip_starts"],
                                 fps=float(md.get("fps", 24.0)), meta=json.loads(md.get("meta", "{}")))
        except Exception as e:  # noqa: BLE001 - a broken cache entry is skipped, never fatal
            import logging
            logging.getLogger("seds.index").warning("feature cache entry %s is unreadable (%s)", p, e)
            return None


def checkpoint_fingerprint(folder: str | Path) -> dict:
    """What a gallery must agree on with the checkpoint that queries it: the weights' SHA-256 and the
    feature sources (a gallery encoded by another model is meaningless to this one)."""
    from seds.checkpoint import WEIGHTS, read_config

    cfg, _ = read_config(folder)
    folder = Path(folder) if Path(folder).is_dir() else Path(folder).parent
    w = folder / WEIGHTS
    if not w.is_file():
        raise GalleryIndexError(f"{folder}: no {WEIGHTS}")
    m = cfg.model
    return {"sha256": file_sha256(w), "name": folder.name, "dataset": cfg.data.dataset,
            "rgb_features": cfg.data.rgb_features, "pose_backend": cfg.data.pose_backend,
            "streams": list(m.streams), "dim": m.dim, "text_model": m.text.model, "max_clips": m.max_clips}


class Gallery:
    """A gallery folder::

        gallery.json          format, the checkpoint fingerprint, counts, how it was built
        videos/               GalleryIndex(kind="video"): pose / rgb / fused clip features (T2V)
        sentences/            GalleryIndex(kind="text"): word features of unique sentences (V2T)
        thumbnails/<id>.jpg   a middle frame of each video (when the video file exists)
        cache/<sha256>.safetensors   optional extracted features of the gallery's video files

    Video metadata: ``text, video`` (path relative to the gallery folder when the file lies beside
    it, else absolute), ``thumbnail, sha256, fps, n_clips, clip_times`` (window centres, seconds),
    ``duration_s, split, signer``. Sentence metadata: ``text, videos`` (ids of the videos with it).
    """

    def __init__(self, root: str | Path, videos: GalleryIndex | None, sentences: GalleryIndex | None,
                 info: dict):
        self.root = Path(root)
        self.videos = videos
        self.sentences = sentences
        self.info = info
        self.cache = FeatureCache(self.root / "cache")
        self._text_ids = {}
        if sentences is not None:
            self._text_ids = {sentences.meta(i).get("text", ""): i for i in sentences.ids}

    def __repr__(self) -> str:
        return (f"Gallery({str(self.root)!r}, videos={len(self.videos) if self.videos else 0}, "
                f"sentences={len(self.sentences) if self.sentences else 0}, cache={len(self.cache)})")

    def sentence_id(self, text: str):
        return self._text_ids.get(text.strip())

    def video_path(self, video_id) -> str | None:
        if self.videos is None or video_id not in self.videos:
            return None
        v = self.videos.meta(video_id).get("video") or ""
        if not v:
            return None
        p = Path(v) if Path(v).is_absolute() else (self.root / v)
        return str(p.resolve()) if p.is_file() else None

    def thumbnail_path(self, video_id) -> str | None:
        if self.videos is None or video_id not in self.videos:
            return None
        t = self.videos.meta(video_id).get("thumbnail") or ""
        p = self.root / t
        return str(p.resolve()) if t and p.is_file() else None

    def check_checkpoint(self, fingerprint: dict) -> None:
        """Raise when the gallery was encoded by other weights than ``fingerprint``'s."""
        mine = self.info.get("checkpoint", {})
        if mine.get("sha256") != fingerprint.get("sha256"):
            raise GalleryIndexError(
                f"{self.root} was built with checkpoint {mine.get('name', '?')} (weights sha256 "
                f"{str(mine.get('sha256'))[:12]}…), not with the loaded one ({fingerprint.get('name')}, "
                f"{str(fingerprint.get('sha256'))[:12]}…): its features mean nothing to this model. Rebuild it: "
                f"python -m seds.index build --checkpoint <this checkpoint> --manifest ... --out {self.root}")

    # -- persistence ------------------------------------------------------------------------------
    def save(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.videos is not None:
            self.videos.save(self.root / "videos")
        if self.sentences is not None:
            self.sentences.save(self.root / "sentences")
        self.info.update({"format": GALLERY_FORMAT, "version": GALLERY_VERSION,
                          "n_videos": len(self.videos) if self.videos is not None else 0,
                          "n_sentences": len(self.sentences) if self.sentences is not None else 0})
        (self.root / GALLERY_INFO).write_text(json.dumps(self.info, indent=2, sort_keys=True))
        return self.root

    @classmethod
    def load(cls, root: str | Path, device: str | torch.device = "cpu") -> "Gallery":
        root = Path(root)
        if not (root / GALLERY_INFO).is_file():
            raise GalleryIndexError(f"{root}: no {GALLERY_INFO} — not a gallery folder (build one with "
                                    "python -m seds.index build)")
        info = _read_json(root / GALLERY_INFO)
        if not isinstance(info, dict) or info.get("format") != GALLERY_FORMAT:
            raise GalleryIndexError(f"{root / GALLERY_INFO}: not a {GALLERY_FORMAT} file")
        if info.get("version") != GALLERY_VERSION:
            raise GalleryIndexError(f"{root / GALLERY_INFO}: version {info.get('version')!r} is not supported")
        videos = GalleryIndex.load(root / "videos", device=device) if (root / "videos").is_dir() else None
        sentences = GalleryIndex.load(root / "sentences", device=device) if (root / "sentences").is_dir() else None
        if videos is None and sentences is None:
            raise GalleryIndexError(f"{root}: holds neither videos/ nor sentences/")
        return cls(root, videos, sentences, info)

    # -- adding ------------------------------------------------------------------------------------
    def add_videos(self, model, rows, features, *, cache: bool = False, thumbnails: bool = True,
                   batch_size: int = 16, progress: bool = False) -> int:
        """Encode and add the manifest ``rows`` (``seds.data.manifest.ManifestRow``) whose ids are new;
        ``features(row)`` gives their :class:`VideoFeatures` (None: skipped). Returns how many were added."""
        from seds.app_backend import clip_times, encode_videos

        if self.videos is None:
            streams = tuple(model.cfg.streams) + (("fused",) if len(model.cfg.streams) == 2 else ())
            self.videos = GalleryIndex("video", dim=model.cfg.dim, streams=streams, tau=model.cfg.tau)
        todo = [r for r in rows if r.id not in self.videos]
        added = 0
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(todo), unit="video", desc="encode videos")
        for lo in range(0, len(todo), batch_size):
            batch_rows, feats = [], []
            for r in todo[lo:lo + batch_size]:
                f = features(r)
                if f is not None:
                    batch_rows.append(r)
                    feats.append(f)
            if bar is not None:
                bar.update(len(todo[lo:lo + batch_size]))
            if not feats:
                continue
            streams, mask = encode_videos(model, feats, batch_size)
            metas = []
            for r, f in zip(batch_rows, feats):
                metas.append(self._video_meta(r, f, clip_times(f.clip_starts, f.fps), cache, thumbnails))
            self.videos.add([r.id for r in batch_rows], {s: streams[s] for s in self.videos.streams}, mask, metas)
            added += len(batch_rows)
        if bar is not None:
            bar.close()
        return added

    def _video_meta(self, row, feats, times, cache: bool, thumbnails: bool) -> dict:
        import os

        meta = {"text": row.text, "video": "", "thumbnail": "", "sha256": "", "fps": float(feats.fps),
                "n_clips": int(feats.num_clips), "clip_times": [round(float(t), 3) for t in times],
                "duration_s": round(float(feats.meta.get("duration_s", feats.num_frames / feats.fps)), 3),
                "split": row.split, "signer": row.signer}
        video = Path(row.video) if row.video else None
        if video is not None and video.is_file():
            v_abs, parent = video.resolve(), self.root.resolve().parent
            meta["video"] = os.path.relpath(v_abs, self.root.resolve()) if parent in v_abs.parents else str(v_abs)
            meta["sha256"] = file_sha256(video)
            if cache:
                self.cache.put(meta["sha256"], feats)
            if thumbnails:
                thumb = _write_thumbnail(video, self.root / "thumbnails", row.id)
                if thumb is not None:
                    meta["thumbnail"] = str(thumb.relative_to(self.root))
        return meta

    def add_sentences(self, model, texts, videos_of: dict | None = None, batch_size: int = 64) -> int:
        """Encode and add the sentences of ``texts`` not yet in the gallery (duplicates merged)."""
        from seds.app_backend import encode_sentences

        if self.sentences is None:
            self.sentences = GalleryIndex("text", dim=model.cfg.dim, tau=model.cfg.tau)
        new = []
        for t in texts:
            t = (t or "").strip()
            if t and t not in self._text_ids and t not in new:
                new.append(t)
        videos_of = videos_of or {}
        for t, i in self._text_ids.items():      # existing sentences learn about newly added videos
            meta = self.sentences.meta(i)
            extra = [v for v in videos_of.get(t, []) if v not in meta.get("videos", [])]
            if extra:
                self.sentences.set_meta(i, {**meta, "videos": meta.get("videos", []) + extra})
        if not new:
            return 0
        start = len(self.sentences)
        ids = [f"s{start + j:06d}" for j in range(len(new))]
        for lo in range(0, len(new), batch_size):
            words, mask = encode_sentences(model, new[lo:lo + batch_size], batch_size)
            chunk_ids = ids[lo:lo + batch_size]
            metas = [{"text": t, "videos": list(videos_of.get(t, []))} for t in new[lo:lo + batch_size]]
            self.sentences.add(chunk_ids, words, mask, metas)
        self._text_ids.update(dict(zip(new, ids)))
        return len(new)


def _write_thumbnail(video: Path, folder: Path, video_id: str, height: int = 120) -> Path | None:
    """JPEG of the middle frame of ``video`` (None if it cannot be decoded)."""
    import cv2
    from seds.data.store import escape_id

    cap = cv2.VideoCapture(str(video))
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if n > 1:
            cap.set(cv2.CAP_PROP_POS_FRAMES, n // 2)
        ok, frame = cap.read()
    finally:
        cap.release()
    if not ok or frame is None:
        return None
    h, w = frame.shape[:2]
    if h > height:
        frame = cv2.resize(frame, (max(1, round(w * height / h)), height), interpolation=cv2.INTER_AREA)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{escape_id(str(video_id))}.jpg"
    cv2.imwrite(str(out), frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return out


def build_gallery(out: str | Path, model, fingerprint: dict, rows, features, *, videos: bool = True,
                  sentences: bool = True, cache: bool = False, thumbnails: bool = True,
                  batch_size: int = 16, progress: bool = False, info: dict | None = None) -> Gallery:
    """A new gallery at ``out`` from manifest ``rows``: every row with features becomes a video item
    (labeled or not: unlabeled ones are distractors); every distinct sentence of a row becomes a
    sentence item. ``features(row)`` returns a :class:`VideoFeatures` or None (row skipped)."""
    out = Path(out)
    if (out / GALLERY_INFO).exists() or (out / "videos").exists():
        import shutil
        for sub in ("videos", "sentences", "thumbnails", "cache"):
            shutil.rmtree(out / sub, ignore_errors=True)
    g = Gallery(out, None, None, {"checkpoint": fingerprint, **(info or {})})
    rows = list(rows)
    if videos:
        g.add_videos(model, rows, features, cache=cache, thumbnails=thumbnails, batch_size=batch_size,
                     progress=progress)
        if g.videos is None or len(g.videos) == 0:
            raise GalleryIndexError("no video could be encoded: the gallery would be empty")
    if sentences:
        present = set(g.videos.ids) if g.videos is not None else None
        videos_of: dict = {}
        for r in rows:
            if r.text.strip() and (present is None or r.id in present):
                videos_of.setdefault(r.text.strip(), []).append(r.id)
        g.add_sentences(model, [r.text for r in rows], videos_of)
    g.save()
    return g


# --- command line ---------------------------------------------------------------------------------

def _load_rows(args):
    from seds.data.manifest import load_manifest

    m = load_manifest(args.manifest, split=args.split or None, dataset=args.dataset or None)
    if args.labeled_only:
        m = m.labeled()
    if args.limit:
        m = m.head(args.limit)
    return m


def _feature_source(args, model_cfg, rows, device: str):
    """``features(row)`` over a feature store; missing videos are extracted into it first (the
    checkpoint's RGB extractor, ``--pose-backend``), failures reported and skipped."""
    import sys
    import tempfile

    from seds.data.manifest import Manifest
    from seds.data.store import FeatureStore

    root = args.store
    if not root:                       # a temporary store, removed when the command ends
        import atexit
        import shutil
        root = tempfile.mkdtemp(prefix="seds-index-")
        atexit.register(shutil.rmtree, root, True)
    store = FeatureStore(root, create=True)
    missing = [r for r in rows if not store.has(r.id)]
    if missing and args.store and not args.extract:
        raise GalleryIndexError(f"{len(missing)} of {len(rows)} videos are not in the feature store {args.store} "
                                f"(e.g. {missing[0].id!r}); pass --extract to extract them")
    if missing:
        from seds.app_backend import ExtractorFactory
        from seds.extract.__main__ import run_extraction

        pose = args.pose_backend or (model_cfg.data.pose_backend
                                     if model_cfg.data.pose_backend in ("mediapipe", "rtmpose", "mmpose")
                                     else "mediapipe")
        factory = ExtractorFactory(model_cfg.data.rgb_features, pose, device,
                                   min(args.max_clips, model_cfg.model.max_clips),
                                   max_seconds=args.max_seconds, trim_long=args.max_seconds is not None)
        print(f"extracting {len(missing)} video(s): pose {pose}, RGB {model_cfg.data.rgb_features}, "
              f"≤ {factory.max_clips} windows", file=sys.stderr)
        summary = run_extraction(Manifest(missing), store, factory, workers=args.workers, progress=True)
        for f in summary.failures:
            print(f"  skipped {f.id}: {f.error}", file=sys.stderr)

    def features(row):
        return store[row.id] if store.has(row.id) else None
    return features


def _cmd_build(args, add: bool = False) -> int:
    import sys

    from seds.checkpoint import load_checkpoint

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    model, _, mcfg, _ = load_checkpoint(args.checkpoint, device)
    fp = checkpoint_fingerprint(args.checkpoint)
    rows = list(_load_rows(args))
    features = _feature_source(args, mcfg, rows, device)
    out = Path(args.out)
    if add:
        g = Gallery.load(out)
        g.check_checkpoint(fp)
        nv = g.add_videos(model, rows, features, cache=args.cache, thumbnails=not args.no_thumbnails,
                          progress=True) if not args.sentences_only else 0
        present = set(g.videos.ids) if g.videos is not None else set()
        videos_of: dict = {}
        for r in rows:
            if r.text.strip() and r.id in present:
                videos_of.setdefault(r.text.strip(), []).append(r.id)
        ns = g.add_sentences(model, [r.text for r in rows], videos_of) if not args.videos_only else 0
        g.save()
        print(f"added {nv} video(s) and {ns} sentence(s) to {out}: {g}")
        return 0
    info = {"built_from": {"manifest": str(args.manifest), "dataset": args.dataset or "manifest",
                           "split": args.split or "", "store": str(args.store or "")}}
    g = build_gallery(out, model, fp, rows, features, videos=not args.sentences_only,
                      sentences=not args.videos_only, cache=args.cache, thumbnails=not args.no_thumbnails,
                      progress=True, info=info)
    print(f"wrote {g}", file=sys.stdout)
    return 0


def _cmd_search(args) -> int:
    from seds.app_backend import AppBackend, AppConfig, STREAM_TITLES

    if bool(args.text) == bool(args.video):
        raise GalleryIndexError("give exactly one of --text or --video")
    cfg = AppConfig(checkpoint=args.checkpoint, gallery=args.gallery, device=args.device, top_k=args.k,
                    rerank=args.rerank, pose_backend=args.pose_backend or "mediapipe",
                    max_clips=args.max_clips, preview=False)
    be = AppBackend(cfg)
    try:
        q = be.query_text(args.text) if args.text else be.query_video(args.video)
    finally:
        be.close()
    for note in getattr(q, "notes", []):
        print(f"note: {note}")
    result = {}
    for s, hits in q.hits.items():
        print(f"\n{STREAM_TITLES.get(s, s)}:")
        for h in hits:
            print(f"  {h.rank:2d}. {h.score:7.4f}  {h.id}  {h.meta.get('text', '')}")
        result[s] = [{"rank": h.rank, "score": h.score, "id": h.id, "text": h.meta.get("text", "")} for h in hits]
    print("\ntimings (s): " + ", ".join(f"{k} {v:.3f}" for k, v in q.timings.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"hits": result, "timings": q.timings}, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m seds.index build|add|search`` (see ``--help`` of each)."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m seds.index", description="Build, extend and search SEDS galleries.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, help_ in (("build", "encode a manifest's videos and sentences into a new gallery folder"),
                        ("add", "add a manifest's new videos and sentences to an existing gallery")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--checkpoint", required=True, help="checkpoint folder (model.safetensors + config.json)")
        p.add_argument("--manifest", required=True, help="manifest CSV, or a dataset's annotations with --dataset")
        p.add_argument("--dataset", default=None, help="annotation adapter (how2sign, how2sign_mini, ...); "
                                                       "default: this project's manifest format")
        p.add_argument("--split", default=None, help="keep one split of the manifest")
        p.add_argument("--store", default=None, help="feature store with the videos' features (see --extract)")
        p.add_argument("--extract", action="store_true", help="extract videos missing from --store into it "
                       "(without --store, everything is extracted into a temporary store)")
        p.add_argument("--out" if name == "build" else "--gallery", dest="out", required=True, help="gallery folder")
        p.add_argument("--pose-backend", default=None, help="pose backend for extraction (default: the "
                       "checkpoint's data.pose_backend, else mediapipe)")
        p.add_argument("--max-clips", type=int, default=64, help="windows per extracted video (≤ model max_clips)")
        p.add_argument("--max-seconds", type=float, default=None, help="extract only the first N seconds of "
                       "each video (default: whole videos)")
        p.add_argument("--device", default="auto")
        p.add_argument("--workers", type=int, default=1, help="extraction processes")
        p.add_argument("--limit", type=int, default=0, help="use the first N rows only")
        p.add_argument("--labeled-only", action="store_true", help="skip rows without a sentence")
        p.add_argument("--cache", action="store_true", help="also store each video file's features in "
                       "<gallery>/cache (keyed by its SHA-256) so the app needs no extraction for them")
        p.add_argument("--no-thumbnails", action="store_true")
        only = p.add_mutually_exclusive_group()
        only.add_argument("--videos-only", action="store_true", help="no sentence index")
        only.add_argument("--sentences-only", action="store_true", help="no video index")
    p = sub.add_parser("search", help="query a gallery with a sentence (→ videos) or a video file (→ sentences)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--gallery", required=True)
    p.add_argument("--text", default=None)
    p.add_argument("--video", default=None)
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--rerank", type=int, default=100)
    p.add_argument("--pose-backend", default=None)
    p.add_argument("--max-clips", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None, help="also write the hits to this JSON file")
    args = ap.parse_args(argv)
    from seds.app_backend import AppError
    from seds.checkpoint import CheckpointError
    from seds.config import ConfigError
    from seds.data.manifest import ManifestError

    try:
        if args.cmd == "search":
            return _cmd_search(args)
        return _cmd_build(args, add=args.cmd == "add")
    except (GalleryIndexError, CheckpointError, ManifestError, AppError, ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    import sys
    sys.exit(main())
