"""What a query may be, checked before any work: the upload (given, present, not empty), the sentence (typed,
at most :data:`MAX_TEXT_CHARS`), and the words of what goes back to a person (no uploader's path or file name in a
message, word labels cut to :data:`MAX_LABEL_CHARS`). Every refusal is a :class:`QueryError`, worded for a person;
the engine (:mod:`seds.retrieval.engine`) and the app's recordings tab start their queries here."""
from __future__ import annotations

from pathlib import Path

MAX_TEXT_CHARS = 1000        # longer sentences are refused: the text encoder reads at most model.text.max_words words
MAX_LABEL_CHARS = 24         # a word label of the "Why?" heatmaps is cut to this many characters


class QueryError(ValueError):
    """A problem with a user's input or with the engine's setup, worded for a person (the app calls it
    ``AppError``)."""


def short_label(text: str, n: int = MAX_LABEL_CHARS) -> str:
    """``text`` cut to at most ``n`` characters (an ellipsis marks the cut)."""
    return text if len(text) <= n else text[: n - 1] + "…"


def without_path(message: str, path: Path) -> str:
    """``message`` with every mention of ``path`` (full, resolved, folder or file name) removed."""
    for s in sorted({str(path), str(path.resolve()), str(path.parent), path.name}, key=len, reverse=True):
        if s and s not in (".", "/"):
            message = message.replace(s, "")
    return message


def check_upload(path, ask: str = "Upload a video (or record one with the webcam) first.",
                 name: str = "video file") -> Path:
    """The checks every video query starts with: a file was given (else ``ask``), it exists and it is not empty."""
    if path is None or str(path).strip() == "":
        raise QueryError(ask)
    path = Path(path)
    if not path.is_file():
        raise QueryError(f"The {name} was not found (the upload may have failed).")
    if path.stat().st_size == 0:
        raise QueryError("The file is empty (0 bytes): not a video.")
    return path


def check_text(text, ask: str = "Type a sentence to search for.", why: str = "") -> str:
    """The checks every sentence query starts with: something typed (else ``ask``), at most ``MAX_TEXT_CHARS``."""
    text = (text or "").strip()
    if not text:
        raise QueryError(ask)
    if len(text) > MAX_TEXT_CHARS:
        raise QueryError(f"The text is {len(text):,} characters long; at most {MAX_TEXT_CHARS:,} are accepted{why}.")
    return text
