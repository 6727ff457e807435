"""`dvp verify FILE`: is this video (or image) marked as made by dvp_hub, and by which marks?

Four independent marks, each reported: the C2PA manifest (present, valid, what it says), the invisible
watermark (fraction of sampled frames where it is detected), the visible label and the container
metadata. A file counts as marked synthetic when any of them is found.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import VideoReadError
from ..video import SYNTHETIC_COMMENT, VideoReader, read_metadata
from .credentials import read_credentials

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
SAMPLED_FRAMES = 16
WATERMARK_MIN_FRACTION = 0.25  # of the sampled frames; a single chance detection does not mark a video


def _frames(path: str, samples: int) -> tuple[list[np.ndarray], str]:
    if path.lower().endswith(IMAGE_EXTENSIONS):
        from PIL import Image, UnidentifiedImageError  # lazy: PIL for image files only; dvp verify must start fast

        try:
            with Image.open(path) as im:
                return [np.asarray(im.convert("RGB"))], "image"
        except (OSError, UnidentifiedImageError):
            raise VideoReadError(f"{path}: not a readable image.") from None
    reader = VideoReader(path)
    n = len(reader)
    want = set(np.linspace(0, n - 1, min(samples, n)).round().astype(int).tolist())
    frames = [f.copy() for i, f in enumerate(reader) if i in want]
    return frames, "video"


def verify_file(path: str, samples: int = SAMPLED_FRAMES) -> dict:
    """The report for one file; raises `VideoReadError` when it cannot be read at all."""
    path = str(path)
    if not os.path.isfile(path):
        raise VideoReadError(f"{path}: no such file; check the path.")
    frames, kind = _frames(path, samples)
    from .label import has_synthetic_mark  # lazy: cv2 (~0.1 s), once the file is read: a refused one fails fast
    from .watermark import detect, detect_clip  # lazy

    dets = [detect(f) for f in frames]
    found = [d for d in dets if d.detected]
    wm = {
        "frames": len(dets),
        "detected": len(found),
        "fraction": round(len(found) / max(len(dets), 1), 3),
        "payload": found[0].payload if found else None,
        "median_score": round(float(np.median([d.score for d in dets])), 1) if dets else 0.0,
    }
    clip = detect_clip(frames) if len(frames) > 1 else (dets[0] if dets else None)
    wm["clip_score"] = round(clip.score, 1) if clip else 0.0
    wm["payload"] = wm["payload"] or (clip.payload if clip else None)
    wm["present"] = bool(
        (clip is not None and clip.detected)
        or wm["detected"] >= max(1, int(np.ceil(WATERMARK_MIN_FRACTION * len(dets))))
    )
    visible = sum(has_synthetic_mark(f) for f in frames)
    metadata = False
    if kind == "video":
        tags = read_metadata(path)
        metadata = any(SYNTHETIC_COMMENT in v or "dvp_hub" in v for v in tags.values())
    try:
        c2pa = read_credentials(path)
    except Exception as err:  # noqa: BLE001 - reported, never a crash
        c2pa = {"present": False, "valid": False, "error": str(err).splitlines()[0][:200]}
    report = {
        "file": path,
        "kind": kind,
        "c2pa": c2pa,
        "watermark": wm,
        "visible_mark": {"frames": len(frames), "detected": int(visible), "present": visible > 0},
        "metadata": metadata,
    }
    report["synthetic"] = bool(
        (c2pa.get("present") and c2pa.get("generator", "").startswith("dvp_hub"))
        or wm["present"]
        or visible
        or metadata
    )
    return report


def format_report(r: dict) -> str:
    c = r["c2pa"]
    if not c.get("present"):
        cred = "none"
    elif c.get("valid"):
        said = ", ".join(f"{k} {c[k]}" for k in ("generator", "digital_source_type", "target") if c.get(k))
        who = "signer trusted" if c.get("trusted") else "signer not on a trust list: integrity only, not identity"
        cred = f"present, valid ({who}): {said}"
    else:
        why = c.get("error") or ", ".join(c.get("failures", [])) or c.get("state", "")
        cred = f"present but INVALID ({why}): the file changed after signing or the manifest is damaged"
    w = r["watermark"]
    wm = f"{'DETECTED' if w['present'] else 'not detected'} ({w['payload'] or 'no payload'}): in {w['detected']} of "
    wm += f"{w['frames']} sampled frames, all frames together score {w['clip_score']:.1f} (threshold 6)"
    v = r["visible_mark"]
    verdict = "MARKED AS SYNTHETIC (made by dvp_hub)" if r["synthetic"] else "no dvp_hub mark found"
    return "\n".join(
        [
            f"{r['file']}: {verdict}",
            f"  content credentials (C2PA): {cred}",
            f"  invisible watermark:        {wm}",
            f"  visible label:              {'present' if v['present'] else 'absent'} ({v['detected']} of {v['frames']} frames)",
            f"  container metadata:         {'says synthetic' if r['metadata'] else 'none'}"
            + ("" if r["kind"] == "video" else " (image)"),
        ]
    )
