"""Benchmark of the two-stage gallery search (seds.retrieval.gallery_index): faiss on pooled vectors → fine-grained
re-rank of the top M, against exhaustive fine-grained scoring.

Synthetic but structured data, so that agreement numbers mean something: a vocabulary of unit "word"
vectors; sentences come in paraphrase families (a base sentence, each member replacing ~30% of its
words, word frequencies Zipf-like), so pooled vectors of a family are close and the fine-grained
score must separate them. A video shows its sentence's words in order over its T clips, with noise;
a text query keeps ~80% of a video's words (plus noise). Per gallery size and M we report the
per-query latency of each stage (batch of one query), the top-10 overlap with exhaustive search and
how often the true video is ranked first.

    python benchmarks/bench_index.py                      # 1k and 10k, T=64 (CPU default)
    python benchmarks/bench_index.py --big --big-clips 16 # + 100k with T reduced to fit CPU memory
    python benchmarks/bench_index.py --device cuda        # GPU: 100k at T=64 included by default

Writes benchmarks/results/index_<device>.json and .md.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from seds.retrieval.gallery_index import GalleryIndex, faiss, faiss_gpu_available  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


class Synthetic:
    """Structured synthetic galleries/queries (see module docstring); generated chunk by chunk."""

    def __init__(self, dim: int, clips: int, max_words: int, vocab: int = 4000, family: int = 5,
                 video_noise: float = 0.8, text_noise: float = 0.6, seed: int = 0, device="cpu"):
        self.dim, self.clips, self.max_words, self.family = dim, clips, max_words, family
        self.video_noise, self.text_noise = video_noise, text_noise
        self.device = torch.device(device)
        self.g = torch.Generator(device=self.device).manual_seed(seed)
        self.words = F.normalize(torch.randn(vocab, dim, generator=self.g, device=self.device), dim=-1)
        self.zipf = 1.0 / torch.arange(1, vocab + 1, device=self.device).float() ** 0.8

    def sentences(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Word ids (n, max_words) and lengths (n,), in paraphrase families of ``family``."""
        nb = -(-n // self.family)
        base = torch.multinomial(self.zipf, nb * self.max_words, replacement=True, generator=self.g)
        base = base.view(nb, 1, self.max_words).expand(nb, self.family, self.max_words).reshape(-1, self.max_words)[:n]
        repl = torch.multinomial(self.zipf, n * self.max_words, replacement=True, generator=self.g).view(n, -1)
        swap = torch.rand(n, self.max_words, generator=self.g, device=self.device) < 0.3
        sent = torch.where(swap, repl, base)
        lengths = torch.randint(8, self.max_words + 1, (n,), generator=self.g, device=self.device)
        return sent, lengths

    def videos(self, sent: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip features (n, T, D): clip t shows word ⌊t·len/T⌋; videos have 60–100% valid clips."""
        n, t = sent.shape[0], self.clips
        valid = torch.clamp((torch.rand(n, generator=self.g, device=self.device) * 0.4 + 0.6) * t, min=1).long()
        pos = torch.arange(t, device=self.device)[None, :]
        word_pos = torch.clamp(pos * lengths[:, None] // valid[:, None], max=self.max_words - 1)
        ids = sent.gather(1, word_pos)
        noise = torch.randn(n, t, self.dim, generator=self.g, device=self.device) * (self.video_noise / self.dim ** 0.5)
        return self.words[ids] + noise, pos < valid[:, None]

    def queries(self, sent: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Text queries (n, max_words, D) keeping ~80% of each sentence's words."""
        n, lmax = sent.shape
        pos = torch.arange(lmax, device=self.device)[None, :]
        keep = (torch.rand(n, lmax, generator=self.g, device=self.device) < 0.8) & (pos < lengths[:, None])
        keep[:, 0] = True
        noise = torch.randn(n, lmax, self.dim, generator=self.g, device=self.device) * (self.text_noise / self.dim ** 0.5)
        return self.words[sent] + noise, keep


def sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_gallery(syn: Synthetic, n: int, dtype: str, device, compute_dtype, chunk: int = 5000):
    idx = GalleryIndex("video", dim=syn.dim, streams=("fused",), dtype=dtype, device=device,
                       compute_dtype=compute_dtype)
    sents, lens = [], []
    for a in range(0, n, chunk):
        s, ln = syn.sentences(min(chunk, n - a))
        v, m = syn.videos(s, ln)
        idx.add(range(a, a + s.shape[0]), {"fused": v}, m)
        sents.append(s)
        lens.append(ln)
        del v, m
    idx.stream_data("fused")        # merge the added chunks before timing
    return idx, torch.cat(sents), torch.cat(lens)


def ms_stats(x: list[float]) -> dict[str, float]:
    a = np.asarray(x) * 1e3
    return {"median": float(np.median(a)), "p90": float(np.percentile(a, 90)), "mean": float(a.mean())}


def bench_size(n: int, clips: int, args, device: torch.device, compute_dtype) -> dict:
    syn = Synthetic(args.dim, clips, args.words, seed=args.seed + n, device=device)
    t0 = time.perf_counter()
    idx, sent, lens = build_gallery(syn, n, args.dtype, device, compute_dtype)
    sync(device)
    build_s = time.perf_counter() - t0
    nq = min(args.queries, n)
    target = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed))[:nq]
    q, qm = syn.queries(sent[target.to(device)], lens[target.to(device)])

    t0, c0 = time.perf_counter(), time.process_time()
    exact = torch.cat([idx.score_all(q[a:a + 8], qm[a:a + 8]) for a in range(0, nq, 8)])
    sync(device)
    exhaustive_ms = (time.perf_counter() - t0) * 1e3 / nq
    exhaustive_cpu_ms = (time.process_time() - c0) * 1e3 / nq
    ex_top = torch.topk(exact, 10, dim=1).indices
    ex_sets = [set(r) for r in ex_top.tolist()]
    out = {"n_items": n, "clips": clips, "max_words": args.words, "dim": args.dim, "dtype": args.dtype,
           "n_queries": nq, "build_s": round(build_s, 2), "exhaustive_ms_per_query_batched": exhaustive_ms,
           "exhaustive_cpu_ms_per_query_batched": exhaustive_cpu_ms,
           "exhaustive_target_r1": float((ex_top[:, 0] == target).float().mean() * 100)}

    def agreement(top: torch.Tensor) -> dict[str, float]:
        k10 = np.mean([len(set(r) & s) / 10 for r, s in zip(top.tolist(), ex_sets)]) * 100
        k5 = np.mean([len(set(r[:5]) & set(e[:5])) / 5 for r, e in zip(top.tolist(), ex_top.tolist())]) * 100
        return {"agreement@10": float(k10), "agreement@5": float(k5), "top1_agreement": float((top[:, 0] == ex_top[:, 0]).float().mean() * 100),
                "target_r1": float((top[:, 0] == target).float().mean() * 100)}

    _, coarse_rows = idx.coarse_search(q, qm, m=10)
    out["coarse_only"] = agreement(coarse_rows)
    rows_out = []
    for m in args.rerank:
        if m > n:
            continue
        idx.rerank_candidates(q[:1], qm[:1], "fused", idx.coarse_search(q[:1], qm[:1], m=m)[1])   # warm-up
        t_faiss, t_rerank, c_faiss, c_rerank, tops = [], [], [], [], []
        for i in range(nq):
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            cs, cand = idx.coarse_search(q[i:i + 1], qm[i:i + 1], m=m)
            sync(device)
            t1, c1 = time.perf_counter(), time.process_time()
            fine = idx.rerank_candidates(q[i:i + 1], qm[i:i + 1], "fused", cand)
            order = torch.topk(fine, 10, dim=1).indices
            top = cand.gather(1, order)
            sync(device)
            t2, c2 = time.perf_counter(), time.process_time()
            t_faiss.append(t1 - t0)
            t_rerank.append(t2 - t1)
            c_faiss.append(c1 - c0)
            c_rerank.append(c2 - c1)
            tops.append(top)
        total = [a + b for a, b in zip(t_faiss, t_rerank)]
        row = {"M": m, "faiss_ms": ms_stats(t_faiss), "rerank_ms": ms_stats(t_rerank), "total_ms": ms_stats(total),
               "faiss_cpu_ms": ms_stats(c_faiss), "rerank_cpu_ms": ms_stats(c_rerank),
               "total_cpu_ms": ms_stats([a + b for a, b in zip(c_faiss, c_rerank)]),
               **agreement(torch.cat(tops))}
        rows_out.append(row)
        print(f"  N={n:>6} T={clips} M={m:>4}: faiss {row['faiss_ms']['median']:7.2f} ms "
              f"(cpu {row['faiss_cpu_ms']['median']:.2f}), rerank {row['rerank_ms']['median']:7.2f} ms "
              f"(cpu {row['rerank_cpu_ms']['median']:.2f}), agreement@10 {row['agreement@10']:5.1f}%, "
              f"top1 {row['top1_agreement']:5.1f}%", flush=True)
    out["rerank"] = rows_out
    del idx
    return out


def to_markdown(report: dict) -> str:
    lines = [f"# Gallery index benchmark ({report['device']})", "",
             f"{report['device_name']}; torch {report['torch']}, faiss {report['faiss']} "
             f"({'GPU' if report['faiss_gpu'] else 'CPU'} index), {report['threads']} torch threads. "
             f"D={report['args']['dim']}, text queries ≤{report['args']['words']} words, storage "
             f"{report['args']['dtype']}, compute {report['compute_dtype']}. Latencies are medians over "
             f"single-query searches (p90 in brackets); agreement = overlap of the top 10 with exhaustive "
             f"fine-grained search; target R@1 = the query's own video ranked first. "
             f"Wall-clock times, with the process CPU time beside them (on a CPU machine shared with other "
             f"jobs the CPU time is the stable number; with one thread it equals the wall time of an idle machine).",
             ""]
    for r in report["results"]:
        lines += [f"## N = {r['n_items']:,} videos, T = {r['clips']} clips", "",
                  f"Build {r['build_s']} s. Exhaustive: {r['exhaustive_ms_per_query_batched']:.1f} ms/query "
                  f"(CPU {r['exhaustive_cpu_ms_per_query_batched']:.1f} ms; batches of 8), target R@1 {r['exhaustive_target_r1']:.1f}%. faiss only (no re-rank): "
                  f"agreement@10 {r['coarse_only']['agreement@10']:.1f}%, target R@1 "
                  f"{r['coarse_only']['target_r1']:.1f}%.", "",
                  "| M | faiss ms | rerank ms | total ms | total CPU ms | agreement@10 % | agreement@5 % "
                  "| top-1 agreement % | target R@1 % |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for x in r["rerank"]:
            lines.append(f"| {x['M']} | {x['faiss_ms']['median']:.2f} ({x['faiss_ms']['p90']:.2f}) | "
                         f"{x['rerank_ms']['median']:.2f} ({x['rerank_ms']['p90']:.2f}) | "
                         f"{x['total_ms']['median']:.2f} | {x['total_cpu_ms']['median']:.2f} | {x['agreement@10']:.1f} | {x['agreement@5']:.1f} | "
                         f"{x['top1_agreement']:.1f} | "
                         f"{x['target_r1']:.1f} |")
        lines.append("")
    if report.get("note"):
        lines += [report["note"], ""]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    p.add_argument("--sizes", default="1000,10000", help="gallery sizes (comma-separated)")
    p.add_argument("--big", action="store_true", help="add the 100k gallery (default on GPU)")
    p.add_argument("--big-clips", type=int, default=None, help="T for the 100k gallery (CPU default 16, GPU 64)")
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--words", type=int, default=32)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--dtype", default="float16")
    p.add_argument("--compute-dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--queries", type=int, default=50)
    p.add_argument("--rerank", default="50,100,200,500,1000,2000")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="torch/faiss CPU threads (1 gives stable timings on a machine shared with other jobs)")
    p.add_argument("--out", default=None, help="output stem (default benchmarks/results/index_<device>)")
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    args.rerank = [int(x) for x in args.rerank.split(",")]
    sizes = [(int(s), args.clips) for s in args.sizes.split(",") if s]
    big = args.big or device.type == "cuda"
    if big and 100_000 not in [s for s, _ in sizes]:
        sizes.append((100_000, args.big_clips or (args.clips if device.type == "cuda" else 16)))
    compute_dtype = getattr(torch, args.compute_dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    report = {"device": device.type,
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
              or platform.machine(),
              "torch": torch.__version__, "faiss": faiss.__version__, "faiss_gpu": faiss_gpu_available(),
              "threads": torch.get_num_threads(), "compute_dtype": args.compute_dtype,
              "args": {k: v for k, v in vars(args).items() if k != "out"}, "results": []}
    if device.type == "cpu" and any(s >= 100_000 and t < args.clips for s, t in sizes):
        report["note"] = (f"The 100k gallery uses T={sizes[-1][1]} clips instead of {args.clips}: at T=64 its "
                          "float16 features take 6.5 GB and the exhaustive reference ~4x longer, too much for "
                          "a shared CPU machine. Run on a GPU for the full-size figure.")
    for n, t in sizes:
        print(f"gallery N={n} T={t} on {device}", flush=True)
        report["results"].append(bench_size(n, t, args, device, compute_dtype))
    stem = Path(args.out) if args.out else RESULTS / f"index_{device.type}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
    stem.with_suffix(".md").write_text(to_markdown(report))
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")


if __name__ == "__main__":
    main()
