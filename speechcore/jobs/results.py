"""Job results: the VoScript result shape, its exports and its manual edits (pure functions).

A result is plain JSON (what the store keeps): `id, filename, created_at,
status, language, segments, speaker_map, unique_speakers, params` plus the
optional `warning`, `alignment` and `artifacts`. Segments keep the raw
diarization `speaker_label`; `speaker_name` is the matched voiceprint's name
(two labels matched to one name show as "Alice" and "Alice (2)") or the label.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

from speechcore.formats import to_srt, to_vtt
from speechcore.pipelines.diarization import Dialogue
from speechcore.schemas import Segment

JOB_ID = r"^tr_[A-Za-z0-9_-]{1,64}$"
VOICEPRINT_ID = r"^spk_[A-Za-z0-9_-]{1,64}$"
LABEL = r"^[A-Za-z0-9_-]{1,64}$"
EXPORT_FORMATS = ("srt", "txt", "json", "vtt")


def display_names(speaker_map: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Label -> display name: the matched name, "Name (2)" for a second label with that name, else the label."""
    names: dict[str, str] = {}
    seen: dict[str, int] = {}
    for lbl in sorted(speaker_map):
        name = speaker_map[lbl].get("matched_name") or lbl
        seen[name] = seen.get(name, 0) + 1
        names[lbl] = name if seen[name] == 1 else f"{name} ({seen[name]})"
    return names


def unique_speakers(segments: Sequence[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for s in segments:
        if s["speaker_name"] not in out:
            out.append(s["speaker_name"])
    return out


def segments_from(dialogues: Sequence[Dialogue], speaker_map: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Result segments (ids from 0) from diarized dialogues and the voiceprint matches."""
    names = display_names(speaker_map)
    out: list[dict[str, Any]] = []
    for d in dialogues:
        match = speaker_map.get(d.speaker, {})
        seg: dict[str, Any] = {
            "id": len(out), "start": round(d.start, 3), "end": round(max(d.end, d.start + 0.01), 3),
            "text": d.text, "speaker_label": d.speaker, "speaker_id": match.get("matched_id"),
            "speaker_name": names.get(d.speaker, d.speaker), "similarity": float(match.get("similarity", 0.0))}
        if d.words:
            seg["words"] = [{"word": w.word.strip(), "start": round(w.start, 3), "end": round(w.end, 3),
                             "score": round(w.probability, 4)} for w in d.words]
        out.append(seg)
    return out


def set_segment_speaker(result: dict[str, Any], seg_id: int, name: str, speaker_id: str | None) -> bool:
    """Reassign one segment (speaker_map unchanged, unique_speakers recomputed); False: no such segment."""
    for seg in result.get("segments", []):
        if seg.get("id") == seg_id:
            seg["speaker_name"] = name
            seg["speaker_id"] = speaker_id
            result["unique_speakers"] = unique_speakers(result["segments"])
            return True
    return False


def summary(result: dict[str, Any]) -> dict[str, Any]:
    segments = result.get("segments", [])
    return {"id": result["id"], "filename": result.get("filename", ""), "created_at": result.get("created_at"),
            "segment_count": len(segments), "speaker_count": len({s.get("speaker_label") for s in segments})}


# --- exports ----------------------------------------------------------------------------------

def export(result: dict[str, Any], fmt: str) -> tuple[str, str]:
    """(body, media type) of the result as srt, vtt, txt or json."""
    import json

    segments = result.get("segments", [])
    if fmt == "json":
        return json.dumps(result, ensure_ascii=False, indent=2), "application/json"
    if fmt == "txt":
        lines = [f"[{_mmss(s['start'])}] {s['speaker_name']}: {s['text']}" for s in segments]
        return "\n".join(lines) + ("\n" if lines else ""), "text/plain; charset=utf-8"
    cues = [Segment(s["id"], s["start"], s["end"], f"[{s['speaker_name']}] {s['text']}") for s in segments]
    if fmt == "vtt":
        return to_vtt(cues), "text/vtt; charset=utf-8"
    return to_srt(cues), "application/x-subrip; charset=utf-8"


def _mmss(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60:02d}:{s % 60:02d}"


# --- text clean-up ----------------------------------------------------------------------------

def collapse_repeats(words: list[str], size: int, longest: int = 4) -> list[int]:
    """Indices of the words to keep when n-grams (n <= `longest`) repeated back to back are cut to one
    occurrence ("like like like" -> "like"); `size` < 3 keeps every word (the reference's semantics)."""
    keep = list(range(len(words)))
    if size < 3:
        return keep
    norm = [re.sub(r"\W+", "", w.lower()) for w in words]
    out: list[int] = []
    i = 0
    while i < len(norm):
        for n in range(1, longest + 1):
            gram = norm[i:i + n]
            if len(gram) == n and any(gram) and norm[i + n:i + 2 * n] == gram:
                j = i + n
                while norm[j:j + n] == gram:
                    j += n
                out += keep[i:i + n]
                i = j
                break
        else:
            out.append(i)
            i += 1
    return out
