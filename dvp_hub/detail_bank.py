"""The target's own fine detail, moved onto a generated face: example-based detail transfer.

The generator renders the face soft; the target's real footage has the detail (skin grain, creases, lid and lip
edges). A target folder may carry a *detail bank*: the grey face window of ~150 of its training frames at the
finished crop's size, picked to differ from each other (``detail_bank.jpg``, one JPEG of tiles, and
``detail_bank.json``). For each generated crop, `DetailTransfer`:

1. picks the bank frame that looks most like it (the window at 32 x 32, mean removed; the previous pick is kept
   unless another is clearly closer, so the grain does not flicker);
2. aligns it to the generated face with dense optical flow (OpenCV's DIS) on both at half size;
3. replaces the generated face's luma band above ``SIGMA`` with the aligned real frame's, where the two agree below
   it (a confidence from their blurred difference), within the rendered face and outside its mouth and eyes.

Hand-written because no installable library transfers person-specific detail; the pieces (DIS flow, remap, blur)
are OpenCV's. Unlike a sharpening filter, the added band comes from real frames of the same person: on held-out
frames its error against the real band is lower than the plain generator's (`detail.band_error`).
"""

from __future__ import annotations

import functools
import json
import os
import shutil

import cv2
import numpy as np

from .errors import DVPError

BANK_IMAGE, BANK_INFO = "detail_bank.jpg", "detail_bank.json"
BANK_FILES = (BANK_IMAGE, BANK_INFO)
BANK_SCALE = 2  # a target without a refiner: the bank is made at this many times the generator's size
BANK_SIZE = 150  # frames kept: as close as all 919 of the demo's on held-out frames
SIGMA = 2.5  # px of the finished crop: the band above this comes from the bank
AGREE = 8.0  # grey levels: the blurred difference at which the confidence falls to 1/e
THUMB = 32  # px: the side of the thumbnails the bank frame is picked by
KEEP = 0.85  # the previous pick stays unless another is closer than this share of its squared distance
JPEG_QUALITY = 90
MIN_SIDE = 32  # px: a smaller box is left as it is (DIS flow needs ~12 px at half size)


def bank_scale(refiner) -> int:
    """How many times the generator's size a target's detail bank is made at: its refiner's scale (the refined
    crop's), `BANK_SCALE` without a refiner."""
    return int(refiner.config.scale) if refiner is not None else BANK_SCALE


def _thumbs(windows: np.ndarray) -> np.ndarray:
    """``[N, h, w]`` grey windows -> ``[N, THUMB * THUMB]`` float32 thumbnails, each with its mean removed."""
    t = np.stack(
        [cv2.resize(w, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32).ravel() for w in windows]
    )
    return t - t.mean(1, keepdims=True)


def _tile(k: int, cols: int, h: int, w: int) -> tuple[slice, slice]:
    """Where window ``k`` (``h x w``) lies in the bank's sheet of ``cols`` tiles a row."""
    return slice((k // cols) * h, (k // cols + 1) * h), slice((k % cols) * w, (k % cols + 1) * w)


def farthest_picks(thumbs: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``n`` rows of ``thumbs`` that differ most from each other (farthest-point order from row 0),
    sorted."""
    n = min(n, len(thumbs))
    picks, dist = [0], ((thumbs - thumbs[0]) ** 2).sum(1)
    for _ in range(n - 1):
        j = int(dist.argmax())
        picks.append(j)
        dist = np.minimum(dist, ((thumbs - thumbs[j]) ** 2).sum(1))
    return np.array(sorted(picks))


class DetailBank:
    """Grey face windows ``[N, h, w]`` uint8 of the target's real frames in the finished crop (``size`` px), at
    ``window`` = (x0, y0, x1, y1) of it."""

    def __init__(self, windows: np.ndarray, window, size: int):
        self.windows, self.window, self.size = windows, tuple(int(v) for v in window), int(size)
        self.folder: str | None = None  # the folder it was loaded from, if any

    @functools.cached_property
    def thumbs(self) -> np.ndarray:
        """The windows' `_thumbs`, made once per bank (every run's `DetailTransfer` picks by them)."""
        return _thumbs(self.windows)

    @classmethod
    def build(cls, crops, window, size: int, n: int = BANK_SIZE) -> DetailBank:
        """From RGB crops ``H x W x 3`` uint8 of the target's training frames at ``size`` px (an iterable): the
        ``n`` that differ most."""
        x0, y0, x1, y1 = window
        windows = np.stack([cv2.cvtColor(np.ascontiguousarray(c[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY) for c in crops])
        return cls(windows[farthest_picks(_thumbs(windows), n)], window, size)

    def save(self, folder: str) -> None:
        """``folder/detail_bank.jpg`` (the windows as tiles, ten a row) and ``folder/detail_bank.json``; a bank
        loaded from a folder is copied from it byte for byte (a JPEG encoded again would lose a little each time)."""
        if self.folder is not None and all(os.path.isfile(os.path.join(self.folder, n)) for n in BANK_FILES):
            for name in BANK_FILES:
                shutil.copyfile(os.path.join(self.folder, name), os.path.join(folder, name))
            return
        n, h, w = self.windows.shape
        cols = min(10, n)
        rows = -(-n // cols)
        sheet = np.zeros((rows * h, cols * w), np.uint8)
        for k, win in enumerate(self.windows):
            sheet[_tile(k, cols, h, w)] = win
        ok, data = cv2.imencode(".jpg", sheet, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise DVPError(f"{folder}: cannot encode the detail bank as JPEG.")
        with open(os.path.join(folder, BANK_IMAGE), "wb") as f:
            f.write(data.tobytes())
        info = {"frames": n, "columns": cols, "window": list(self.window), "size": self.size}
        with open(os.path.join(folder, BANK_INFO), "w") as f:
            json.dump(info, f, indent=1)

    @classmethod
    def load(cls, folder: str) -> DetailBank | None:
        """The bank in ``folder``, or None where it has none; DVPError for a damaged one."""
        paths = [os.path.join(folder, name) for name in BANK_FILES]
        if not all(os.path.isfile(p) for p in paths):
            return None
        try:
            with open(paths[1]) as f:
                info = json.load(f)
            sheet = cv2.imread(paths[0], cv2.IMREAD_GRAYSCALE)
            (x0, y0, x1, y1), n, cols = info["window"], int(info["frames"]), int(info["columns"])
            h, w = y1 - y0, x1 - x0
            if not (0 <= x0 < x1 <= int(info["size"]) and 0 <= y0 < y1 <= int(info["size"])):
                raise ValueError("its window is not inside its crop")
            if cols < 1 or n < 1 or sheet is None or sheet.shape != (-(-n // cols) * h, cols * w):
                raise ValueError("the tiles do not match detail_bank.json")
            windows = np.stack([sheet[_tile(k, cols, h, w)] for k in range(n)])
            bank = cls(windows, (x0, y0, x1, y1), int(info["size"]))
            bank.folder = folder  # saved again unchanged: copied, not re-encoded
            return bank
        except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError) as err:
            raise DVPError(
                f"{folder}: damaged detail bank ({err}); delete {BANK_IMAGE} and {BANK_INFO} or rebuild them."
            ) from None


class DetailTransfer:
    """Moves the bank's detail onto one run's generated crops, in order (it keeps its last pick: one per clip)."""

    def __init__(self, bank: DetailBank):
        self.bank = bank
        self.thumbs = bank.thumbs
        self.flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        h, w = bank.windows.shape[1:]
        self.grid = np.dstack(np.mgrid[0:h, 0:w][::-1]).astype(np.float32)  # [h, w, 2]: each pixel's (x, y)
        self.last = None

    def reset(self) -> None:
        """A new clip starts: the next pick is made afresh."""
        self.last = None

    def _pick(self, grey: np.ndarray) -> int:
        dist = ((self.thumbs - _thumbs(grey[None])[0]) ** 2).sum(1)
        j = int(dist.argmin())
        if self.last is not None and dist[j] > KEEP * dist[self.last]:
            j = self.last
        self.last = j
        return j

    def __call__(self, crop: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
        """One crop ``S x S x 3`` uint8 (``S`` = the bank's size) -> the same with the bank's detail, in place.
        ``weight``: ``[S, S]`` float32 in [0, 1], how much of the detail may go where (`region_weight`; None: the
        whole window, by agreement alone); only its box in the window changes."""
        if crop.shape[0] != self.bank.size:
            raise ValueError(f"a {crop.shape[0]} px crop; the detail bank was made for {self.bank.size} px")
        x0, y0, x1, y1 = self.bank.window
        part = crop[y0:y1, x0:x1]
        grey_window = cv2.cvtColor(part, cv2.COLOR_RGB2GRAY)
        real = self.bank.windows[self._pick(grey_window)].astype(np.float32)  # float: for the cubic remap
        rows, cols = slice(None), slice(None)
        if weight is not None:
            weight = weight[y0:y1, x0:x1]
            ys, xs = np.flatnonzero(weight.max(1) > 0.01), np.flatnonzero(weight.max(0) > 0.01)
            if not len(ys):
                return crop
            rows, cols = slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1)
            weight = weight[rows, cols]
        sub = part[rows, cols]
        if min(sub.shape[:2]) < MIN_SIDE:  # a face barely in the window: too little for the flow
            return crop
        grey = grey_window[rows, cols].astype(np.float32)
        small = [
            cv2.resize(cv2.GaussianBlur(x, (0, 0), 1.0), None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
            for x in (grey, real[rows, cols])
        ]
        flow = self.flow.calc(*(np.clip(s + 0.5, 0, 255).astype(np.uint8) for s in small), None)
        flow = cv2.resize(flow, (grey.shape[1], grey.shape[0]), interpolation=cv2.INTER_LINEAR)
        where = cv2.scaleAdd(flow, 2.0, np.ascontiguousarray(self.grid[rows, cols]))  # into the whole window
        warped = cv2.remap(real, where, None, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        low_w, low_g = cv2.GaussianBlur(warped, (0, 0), SIGMA), cv2.GaussianBlur(grey, (0, 0), SIGMA)
        blurred = cv2.GaussianBlur(cv2.absdiff(low_w, low_g), (0, 0), 2.0)
        agree = cv2.exp(cv2.multiply(blurred, blurred, scale=-1 / AGREE**2))  # exp(-(d / AGREE)^2)
        if weight is not None:
            agree *= weight
        delta = warped  # (warped - low_w) - (grey - low_g), weighted, in place: OpenCV's ops, one pass each
        delta -= low_w
        delta -= grey
        delta += low_g
        delta *= agree
        sub[...] = cv2.add(sub, cv2.merge([delta, delta, delta]), dtype=cv2.CV_8U)  # rounded, saturated
        return crop


def region_weight(face: np.ndarray, keep: np.ndarray | None, size: int) -> np.ndarray:
    """Where a crop of ``size`` px takes the bank's detail: ``[size, size]`` float32 in [0, 1], the rendered face
    ``[R, R]`` bool widened by ~7 px of the crop and feathered, less ``keep`` ``[R, R]`` bool (the mouth and eyes,
    `render.regions.feature_mask`, whose shape changes most from frame to frame: a bank frame's lip or lid edge there
    would move what a viewer reads) widened by ~4 px and feathered: 4 px inside them the weight is under 0.05, at
    their edge under 0.3. Made at the render's size, then enlarged."""
    s = face.shape[0] / size  # render px per crop px

    def widened(mask, px, sigma):
        k = max(1, round(2 * px * s)) | 1
        return cv2.GaussianBlur(cv2.dilate(mask.astype(np.float32), np.ones((k, k), np.float32)), (0, 0), sigma * s)

    weight = widened(face, 7, 6)
    if keep is not None and keep.any():
        weight *= 1 - widened(keep, 4, 4)
    return cv2.resize(weight, (size, size), interpolation=cv2.INTER_LINEAR)
