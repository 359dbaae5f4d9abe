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

``softmax_over_padding`` (the official variant's similarity, ``seds.config.VariantOptions``): padded positions
keep their (normalised) features and enter the score's softmaxes, as in the authors' code; the mask then
only limits the means (and the pooled vectors).

``kind="video"``: the gallery items are videos and queries are sentences (T2V search);
``kind="text"``: the items are sentences and queries are videos (V2T search). Either way the score is
``½ (M_t2k + M_k2t)`` of the (video, sentence) pair.

On disk (``save``/``load``): ``config.json`` (format version, kind, dim, dtype, streams, tau, item
count, shard list), ``metadata.json`` (ids and one JSON object per item) and one or more
``gallery-NNNNN.safetensors`` shards holding ``{stream}.features``, ``{stream}.mask`` and
``{stream}.pooled`` for a contiguous range of items.

On top of the index: :class:`seds.retrieval.gallery.Gallery` (a video index, a sentence index,
thumbnails and a feature cache, encoded by one checkpoint) and the command line ``python -m seds.index``.
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
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

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
    softmax_over_padding: bool = False

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
        return cls(kind=d["kind"], dim=d["dim"], dtype=d["dtype"], streams=tuple(d["streams"]), tau=d["tau"],
                   softmax_over_padding=bool(d.get("softmax_over_padding", False)))


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
                 dtype: str = "float16", tau: float = DEFAULT_TAU, *, softmax_over_padding: bool = False,
                 config: IndexConfig | None = None,
                 device: str | torch.device = "cpu", use_gpu_faiss: bool | None = None,
                 compute_dtype: torch.dtype = torch.float32):
        if faiss is None:
            raise ImportError("seds.index needs faiss (pip install faiss-cpu or faiss-gpu)")
        self.config = config if config is not None else IndexConfig(kind, dim, dtype, tuple(streams or ()), tau,
                                                                    softmax_over_padding)
        self._keep = 1.0 if self.config.softmax_over_padding else 0.0   # weight of padded positions' features
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
                fa = F.normalize(f[a:a + _ADD_ROWS].float(), dim=-1) * m[a:a + _ADD_ROWS, :, None].clamp(min=self._keep)
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
        q = F.normalize(q.to(self.device, torch.float32), dim=-1) * qm[..., None].clamp(min=self._keep)
        return q.to(self.compute_dtype), qm

    def _require_items(self):
        if len(self) == 0:
            raise GalleryIndexError("the index is empty: add() items before searching")

    def _pair_scores(self, gallery: torch.Tensor, gallery_mask: torch.Tensor,
                     q: torch.Tensor, qm: torch.Tensor) -> torch.Tensor:
        """Fine-grained scores (B, n) between queries (B, L, D) and gallery items (n, T, D)."""
        tau, sop = self.config.tau, self.config.softmax_over_padding
        if self.kind == "video":       # gallery = videos, queries = sentences
            return fine_grained_scores(gallery, gallery_mask, q, qm, tau, normalize=False,
                                       softmax_over_padding=sop).mean.t()
        return fine_grained_scores(q, qm, gallery, gallery_mask, tau, normalize=False, softmax_over_padding=sop).mean

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

        path = Path(directory)
        if not path.is_dir():
            raise GalleryIndexError(f"{path}: not a directory")
        cfg = read_json(path / "config.json")
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
        meta = read_json(path / "metadata.json")
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


def read_json(p: Path):
    if not p.is_file():
        raise GalleryIndexError(f"{p}: missing")
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GalleryIndexError(f"{p}: invalid JSON ({e})") from None
