"""CLIP byte-level BPE tokenizer and the SEDS authors' sentence formatting (offline, no download).

The official SEDS model (CiCo/CLIP4Clip lineage) encodes sentences with CLIP's text tower, so a converted
checkpoint needs text ids exactly as it was trained on:

* **Vocabulary** — OpenAI CLIP's 48,894 BPE merges (``seds/assets/bpe_simple_vocab_16e6.txt.gz``, MIT,
  see ``seds/assets/LICENSE-CLIP-BPE.txt``): ids 0–255 are the 256 byte symbols, 256–511 the same symbols
  ending a word (``</w>``), 512–49405 one per merge in rank order, then ``<|startoftext|>`` = 49406 and
  ``<|endoftext|>`` = 49407 (49,408 ids).
* **Normalisation** — ``ftfy.fix_text``, HTML unescaping applied twice, whitespace runs collapsed to one
  space, stripped, lower-cased; then split with CLIP's pre-tokenisation pattern (contractions, runs of
  letters, single digits, runs of other non-space symbols) and every piece's UTF-8 bytes BPE-merged.
* **Formatting** (:meth:`ClipBPETokenizer.batch`, the authors' dataloader ``_get_text``) — ``SOT`` + tokens
  + ``EOT``, zero-padded to ``max_words`` (32 in the released configs), mask 1 up to and including EOT.
  A sentence with more than ``max_words - 2`` tokens is **sub-sampled, not truncated**: the kept tokens are
  positions ``np.linspace(1, n, max_words - 2, dtype=int)`` of ``[SOT] + tokens`` (n = number of tokens),
  so the first and the last token always survive.

Quirk kept for parity: the literal strings ``<|startoftext|>`` / ``<|endoftext|>`` in a sentence (any case)
become the special ids, as in CLIP's tokenizer.
"""
from __future__ import annotations

import gzip
import html
from functools import lru_cache
from importlib import resources

import ftfy
import numpy as np
import regex
import torch

SOT, EOT = "<|startoftext|>", "<|endoftext|>"
N_MERGES = 49152 - 256 - 2  # CLIP keeps the first 48,894 merges of the file
_PIECE = regex.compile(
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
    regex.IGNORECASE)
_SPACES = regex.compile(r"\s+")


@lru_cache(maxsize=1)
def byte_symbols() -> tuple[str, ...]:
    """The printable stand-in character of each byte 0..255 (GPT-2/CLIP byte-level BPE alphabet).

    Bytes that are printable Latin-1 (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) stand for themselves; the other
    68 bytes take the code points 256, 257, ... in byte order, so no symbol is whitespace or a control char.
    """
    printable = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    out, extra = [], 0
    for b in range(256):
        if b in printable:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return tuple(out)


def byte_alphabet_order() -> list[str]:
    """Byte symbols in vocabulary order: the printable bytes (ascending) first, then the remapped ones."""
    sym = byte_symbols()
    return sorted(sym, key=lambda c: (ord(c) >= 256, ord(c)))


@lru_cache(maxsize=1)
def load_merges() -> tuple[tuple[str, str], ...]:
    """The first :data:`N_MERGES` merge rules of the bundled file (its first line is a version header)."""
    data = resources.files("seds").joinpath("assets", "bpe_simple_vocab_16e6.txt.gz").read_bytes()
    lines = gzip.decompress(data).decode("utf-8").split("\n")[1:1 + N_MERGES]
    merges = tuple(tuple(line.split()) for line in lines)
    if len(merges) != N_MERGES or any(len(m) != 2 for m in merges):
        raise ValueError("bundled CLIP BPE merges file is damaged (expected 48,894 'a b' lines)")
    return merges


def normalise(text: str) -> str:
    """CLIP's text clean-up: ftfy, double HTML unescape, collapsed whitespace, lower case."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return _SPACES.sub(" ", text).strip().lower()


class ClipBPETokenizer:
    """OpenAI CLIP's BPE tokenizer (byte-identical ids) plus the SEDS authors' padding/sub-sampling format.

    >>> tok = ClipBPETokenizer()
    >>> ids, mask = tok.batch(["I call it painting the wall."])   # (1, 32) each, ids[0, 0] == 49406
    """

    pad_id = 0

    def __init__(self):
        merges = load_merges()
        letters = byte_alphabet_order()
        vocab = letters + [c + "</w>" for c in letters] + [a + b for a, b in merges] + [SOT, EOT]
        self.encoder: dict[str, int] = {s: i for i, s in enumerate(vocab)}
        self.decoder: list[str] = vocab
        self.ranks: dict[tuple[str, str], int] = {m: r for r, m in enumerate(merges)}
        self.sot_id, self.eot_id = self.encoder[SOT], self.encoder[EOT]
        sym = byte_symbols()
        self._to_sym = sym
        self._from_sym = {c: b for b, c in enumerate(sym)}
        self._cache: dict[str, tuple[int, ...]] = {SOT: (self.sot_id,), EOT: (self.eot_id,)}

    @property
    def vocab_size(self) -> int:
        return len(self.decoder)

    # --- BPE -----------------------------------------------------------------------------------------
    def _merge_word(self, symbols: list[str]) -> list[str]:
        """Apply merges to one word: repeatedly join every left-to-right occurrence of the best-ranked pair."""
        ranks = self.ranks
        while len(symbols) > 1:
            best, best_rank = None, None
            for pair in zip(symbols, symbols[1:]):
                r = ranks.get(pair)
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = pair, r
            if best is None:
                break
            a, b = best
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and symbols[i] == a and symbols[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        return symbols

    def _piece_ids(self, piece: str) -> tuple[int, ...]:
        hit = self._cache.get(piece)
        if hit is None:
            chars = [self._to_sym[b] for b in piece.encode("utf-8")]
            chars[-1] += "</w>"
            hit = tuple(self.encoder[s] for s in self._merge_word(chars))
            self._cache[piece] = hit
        return hit

    # --- public API ----------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of one sentence, without SOT/EOT (CLIP ``SimpleTokenizer.encode``)."""
        if not isinstance(text, str):
            raise TypeError(f"ClipBPETokenizer.encode expects a str, got {type(text).__name__}")
        ids: list[int] = []
        for piece in _PIECE.findall(normalise(text)):
            ids.extend(self._piece_ids(piece))
        return ids

    def decode(self, ids, skip_special: bool = False) -> str:
        """Text of token ids; word ends become spaces (so the result ends with one), as in CLIP.

        ``ids`` may be a list or a 1-D tensor; ``skip_special`` drops SOT/EOT. Invalid UTF-8 (e.g. a cut
        multi-byte character) decodes to U+FFFD. Padding is not removed: pass ``ids[mask.bool()]``.
        """
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        out, buf = [], bytearray()
        for i in ids:
            if not 0 <= int(i) < self.vocab_size:
                raise ValueError(f"token id {i} outside the CLIP vocabulary [0, {self.vocab_size})")
            s = self.decoder[int(i)]
            if s in (SOT, EOT):
                if not skip_special:
                    out.append(buf.decode("utf-8", errors="replace"))
                    buf = bytearray()
                    out.append(s)
                continue
            end = s.endswith("</w>")
            buf.extend(self._from_sym[c] for c in (s[:-4] if end else s))
            if end:
                buf.extend(b" ")
        out.append(buf.decode("utf-8", errors="replace"))
        return "".join(out)

    def format_ids(self, ids: list[int], max_words: int = 32) -> tuple[list[int], list[int]]:
        """The authors' ``_get_text`` layout of one token list → (ids, mask), each ``max_words`` long."""
        if max_words < 2:
            raise ValueError(f"max_words must be >= 2 (room for SOT and EOT), got {max_words}")
        words = [self.sot_id] + list(ids)
        if len(words) > max_words - 1:
            keep = np.linspace(1, len(words) - 1, max_words - 2, dtype=int)
            words = [self.sot_id] + [words[k] for k in sorted(keep.tolist())]
        words.append(self.eot_id)
        n = len(words)
        return words + [self.pad_id] * (max_words - n), [1] * n + [0] * (max_words - n)

    def batch(self, texts, max_words: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
        """Sentences → (ids, mask), LongTensors of shape (N, max_words) in the authors' dataloader format."""
        if isinstance(texts, str):
            texts = [texts]
        rows = [self.format_ids(self.encode(t), max_words) for t in texts]
        ids = torch.tensor([r[0] for r in rows], dtype=torch.long).reshape(len(rows), max_words)
        mask = torch.tensor([r[1] for r in rows], dtype=torch.long).reshape(len(rows), max_words)
        return ids, mask

    __call__ = batch


@lru_cache(maxsize=1)
def default_tokenizer() -> ClipBPETokenizer:
    """A shared instance (building the merge table takes ~0.1 s)."""
    return ClipBPETokenizer()
