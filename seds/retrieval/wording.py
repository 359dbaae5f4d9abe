"""The words of the engine's note codes (:class:`seds.retrieval.engine.Note`), for the two interfaces that show
them: the app (``demo/backend.py``) and ``python -m seds.index search``. The engine itself returns codes with
values; another interface (or language) words them its own way.
"""
from __future__ import annotations

from seds.extract.factory import describe_rgb
from seds.retrieval.engine import (NOTE_CACHED, NOTE_EXTRACTED, NOTE_FRAMES_SKIPPED, NOTE_HAND_RARE, NOTE_PADDED,
                                   NOTE_SUBSTITUTES, NOTE_TRIMMED, NOTE_TRUNCATED, Note)

WINDOWS_PHRASE = {"max_clips": ".", "authors": " chosen as the authors' preprocessing chooses them (up to 64, "
                  "max_clips does not apply)."}
NOTE_TEXT = {
    NOTE_CACHED: lambda v: ("Features from the gallery cache: this file is a gallery video, so its keypoints and RGB "
                            f"features were computed when the gallery was built ({v['pose_backend']} keypoints); "
                            "MediaPipe was not run."),
    NOTE_TRIMMED: lambda v: (f"The video is longer than {v['max_seconds']:g} s: only its first {v['max_seconds']:g} s "
                             "were used."),
    NOTE_TRUNCATED: lambda v: (f"The file looks truncated or damaged: only {v['source_frames']} of the "
                               f"{v['reported_frames']} frames its header announces could be decoded; the results "
                               "use those."),
    NOTE_FRAMES_SKIPPED: lambda v: (f"{v['skipped']} of {v['decoded']} frames showed no signer or no hand and were "
                                    "skipped."),
    NOTE_PADDED: lambda v: f"Only {v['usable']} usable frames (< {v['window']}): the last one was repeated.",
    NOTE_HAND_RARE: lambda v: (f"The signer's {v['hand']} hand was found in {100 * v['fraction']:.0f}% of the "
                               "frames: the pose stream works with one hand, results may be less reliable."),
    NOTE_EXTRACTED: lambda v: (f"Features extracted: pose by {v['pose_backend']}, RGB by "
                               f"{describe_rgb(v['rgb_features'])}; {v['windows']} windows"
                               + WINDOWS_PHRASE[v['window_rule']]),
    NOTE_SUBSTITUTES: lambda v: "Not the checkpoint's training features — " + "; ".join(v["lines"]) + ".",
}


def note_text(note: Note) -> str:
    return NOTE_TEXT[note.code](note.values)
