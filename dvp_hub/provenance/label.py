"""The visible mark: a small "SYNTHETIC - dvp_hub" label drawn in a corner of every generated frame (on by default
everywhere), and its detector (`dvp verify`)."""

from __future__ import annotations

import cv2
import numpy as np

LABEL = "SYNTHETIC - dvp_hub"


def _label_layout(h: int, w: int, label: str = LABEL):
    """Where the label goes on an ``h x w`` frame: (text, scale, thickness, pad, x0, y0, baseline) or None
    when the frame is too small for any label."""
    scale = max(0.25, min(w, h) / 900)
    thick = max(1, int(round(scale * 2)))
    pad = max(2, int(4 * scale))
    for text in (label, "SYNTHETIC", "AI"):  # shorter labels for small frames
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        x0, y0 = w - tw - 2 * pad, h - th - base - 2 * pad
        if x0 >= 0 and y0 >= 0:
            return text, scale, thick, pad, x0, y0, base
    return None


def label_box(h: int, w: int, label: str = LABEL) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)``: the pixels `mark_synthetic` may change on an ``h x w`` frame (None: none)."""
    layout = _label_layout(h, w, label)
    return None if layout is None else (layout[4], layout[5], w, h)


def mark_synthetic(frame: np.ndarray, label: str = LABEL) -> np.ndarray:
    """A copy of ``frame`` (H x W x 3 uint8) with a small semi-opaque label at the bottom right."""
    out = np.ascontiguousarray(frame).copy()
    h, w = out.shape[:2]
    layout = _label_layout(h, w, label)
    if layout is None:
        return out
    text, scale, thick, pad, x0, y0, base = layout
    region = out[y0:h, x0:w].astype(np.float32)
    out[y0:h, x0:w] = (region * 0.45).astype(np.uint8)
    cv2.putText(
        out, text, (x0 + pad, h - base - pad), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA
    )
    return out


def has_synthetic_mark(frame: np.ndarray) -> bool:
    """Whether ``frame`` shows the visible label where `mark_synthetic` draws it (bright text over a darkened
    box; survives re-encoding, not a crop of that corner or a resize)."""
    f = np.asarray(frame)
    h, w = f.shape[:2]
    layout = _label_layout(h, w)
    if layout is None:
        return False
    text, scale, thick, pad, x0, y0, base = layout
    mask = np.zeros((h - y0, w - x0), np.uint8)
    cv2.putText(mask, text, (pad, h - y0 - base - pad), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thick, cv2.LINE_AA)
    region = f[y0:h, x0:w].astype(np.float32)
    luma = region if region.ndim == 2 else region.mean(axis=2)
    ink, paper = mask > 200, mask == 0
    if ink.sum() < 10:
        return False
    corr = np.corrcoef(mask.ravel().astype(np.float32), luma.ravel())[0, 1]
    return bool(luma[ink].mean() > 150 and luma[ink].mean() - luma[paper].mean() > 60 and corr > 0.5)
