"""RGB frames -> I420 (the planar YUV 4:2:0 the video writer hands ffmpeg for H.264), whole or in part."""

from __future__ import annotations

import numpy as np

# BT.601 limited range, RGB in [0, 255] -> U, V (rows), as ffmpeg converts
_UV = np.float32([[-37.797, -74.203, 112.0, 128 * 255], [112.0, -93.786, -18.214, 128 * 255]]) / 255


def rgb_to_i420(frame: np.ndarray) -> np.ndarray:
    """An even-sized ``H x W x 3`` uint8 RGB frame -> I420 (``3H/2 x W`` uint8: Y, then U and V at half size), as
    ffmpeg converts RGB for H.264 (BT.601 limited range; chroma the mean of each 2 x 2 block): within 1 grey level in
    Y and 2 in U and V of ffmpeg's, in a third of its time. Hand-written: OpenCV's I420 conversion takes each block's
    chroma from one of its pixels (colour edges alias)."""
    import cv2  # lazy: OpenCV loads in a fraction of a second, and only writing needs it

    h, w = frame.shape[:2]
    out = cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420)  # its Y is ffmpeg's; its U and V are replaced
    uv = cv2.transform(cv2.resize(frame, (w // 2, h // 2), interpolation=cv2.INTER_AREA), _UV)
    chroma = out[h:].reshape(2, -1)  # the U plane, then the V plane, each (H/2)(W/2) samples (a view)
    chroma[0], chroma[1] = uv[..., 0].ravel(), uv[..., 1].ravel()
    return out


def i420_update(i420: np.ndarray, frame: np.ndarray, box: tuple[int, int, int, int]) -> None:
    """``i420``, `rgb_to_i420` of a frame equal to ``frame`` outside ``box`` (``x0, y0, x1, y1``), made `rgb_to_i420` of
    ``frame`` in place by converting only the box, widened to even edges (the same values: Y is per pixel, each
    chroma sample one 2 x 2 block)."""
    h, w = frame.shape[:2]
    x0, y0 = max(0, box[0] - box[0] % 2), max(0, box[1] - box[1] % 2)
    x1, y1 = min(w, box[2] + box[2] % 2), min(h, box[3] + box[3] % 2)
    if x1 <= x0 or y1 <= y0:
        return
    part = rgb_to_i420(np.ascontiguousarray(frame[y0:y1, x0:x1]))
    i420[y0:y1, x0:x1] = part[: y1 - y0]
    chroma = i420[h:].reshape(2, h // 2, w // 2)  # the U plane, then the V plane (views)
    chroma[:, y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = part[y1 - y0 :].reshape(2, (y1 - y0) // 2, (x1 - x0) // 2)
